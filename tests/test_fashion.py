"""Tests for the ``fashion`` dataset: idx files -> simulated saccade events -> frames, and its bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from helpers import real_data_dir

import spikeff.data.fashion as fashion
from spikeff.cli import main
from spikeff.config import DataConfig
from spikeff.data import DataError, describe, load_splits
from spikeff.data.plan import make_plan, split_limits
from spikeff.data.saccade import SaccadeDVS


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` (uint8) in idx format: magic, one big-endian uint32 per dimension, the bytes."""
    magic = (0x0800 + array.ndim) if magic is None else magic
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Seeded fake Fashion-MNIST idx files (blobs of random size, labels cycling 0-9) in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (n or {"train": 40, "t10k": 20}).items():
        yy, xx = np.mgrid[:28, :28]
        r = rng.uniform(4, 12, count)[:, None, None]
        images = (255 * ((yy - 14) ** 2 + (xx - 14) ** 2 < r**2)).astype(np.uint8)
        labels = np.arange(count) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    """A data_dir holding fake ``FashionMNIST/`` files; Debian's folder pointed at nothing."""
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "no-system-copy")
    write_fashion(tmp_path / "data" / "FashionMNIST")
    return tmp_path / "data"


@pytest.fixture
def simulated(monkeypatch) -> list[int]:
    """How many images the simulator renders during the test."""
    calls: list[int] = []
    real = SaccadeDVS.simulate

    def counting(self, images, seeds):
        calls.append(len(images))
        return real(self, images, seeds)

    monkeypatch.setattr(SaccadeDVS, "simulate", counting)
    return calls


def test_t10k_is_the_test_set_and_limit_picks_each_split_its_own_size(root, tmp_path):
    s = load_splits("fashion", root, cache_dir=tmp_path / "c", limit=(20, 10))
    assert (len(s.train), len(s.test)) == (20, 10) and s.frame_shape == (2, 34, 34) and s.n_time_bins == 10
    assert all(s.counts["train"][k] == 2 and s.counts["test"][k] == 1 for k in range(10))
    assert s.limit == [20, 10] and s.manifest["rule"]["limit"] == [20, 10] and "20 train and 10 test" in s.summary()
    assert all(i.startswith("FashionMNIST/t10k:") for i in s.manifest["test"]["samples"])
    plan = make_plan("fashion", root, None, 0, 0.2, tmp_path / "c", False, (20, 10), None)
    for split, ds in (("train", s.train), ("test", s.test)):
        for row in (0, 7):
            frames, label = ds[row]
            events = plan.source.read(plan.samples[split][row])
            assert frames.shape == (10, 2, 34, 34) and frames.sum() == len(events) > 100
            assert label == plan.samples[split][row].label
    assert load_splits("fashion", root, cache_dir=tmp_path / "c", limit=10).limit == 10  # one size for both


def test_events_depend_on_split_and_index_only(root, tmp_path):
    source = make_plan("fashion", root, None, 0, 0.2, tmp_path / "c", False, None, None).source
    train, test = source.splits["train"], source.splits["test"]
    alone = source.read(train[5])
    together = [e for chunk in source.read_chunks(train[3:8]) for e in chunk]
    assert np.array_equal(alone, together[2])
    assert not np.array_equal(source.read(train[0]), source.read(test[0]))  # other image and seed
    assert alone.dtype.names == ("x", "y", "t", "p") and alone["x"].max() < 34 and set(alone["p"]) <= {0, 1}


def test_tuning_share_reads_no_t10k_sample(root, tmp_path):
    s = load_splits("fashion", root, cache_dir=tmp_path / "c", tune=True)
    assert (len(s.train), len(s.test)) == (32, 8) and "tuning share" in s.test_name
    assert all(i.startswith("FashionMNIST/train:") for i in s.manifest["test"]["samples"])


def test_frames_are_cached(root, tmp_path, simulated):
    load_splits("fashion", root, cache_dir=tmp_path / "c", limit=(12, 6))
    assert sum(simulated) == 18
    again = load_splits("fashion", root, cache_dir=tmp_path / "c", limit=(12, 6))
    assert sum(simulated) == 18 and "loaded from cache" in again.cache["train"]


def test_only_the_train_files_give_a_seeded_validation_split(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "none")
    write_fashion(tmp_path / "FashionMNIST", {"train": 30})
    s = load_splits("fashion", tmp_path, cache_dir=tmp_path / "c")
    assert (len(s.train), len(s.test)) == (24, 6) and "validation (seeded 20% of train files" in s.test_name


def test_debian_folder_is_read_when_data_dir_has_none(tmp_path, monkeypatch):
    system = write_fashion(tmp_path / "usr-share", {"t10k": 20})
    monkeypatch.setattr(fashion, "SYSTEM_DIR", system)
    s = describe("fashion", tmp_path / "empty", cache_dir=tmp_path / "c")
    assert str(system) in s and "t10k: 20 images" in s


def test_missing_files_name_both_places(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "none")
    with pytest.raises(DataError, match=r"Fashion-MNIST not found: expected .*ubyte\.gz in .*nowhere/FashionMNIST "
                                        r"or in .*none; spikeff does not download it"):
        load_splits("fashion", tmp_path / "nowhere", cache_dir=tmp_path / "c")


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-40])


def _recompress(p: Path, edit) -> None:
    p.write_bytes(gzip.compress(edit(gzip.decompress(p.read_bytes()))))


BAD_FILES = {
    "missing labels": ("train-labels-idx1-ubyte.gz", lambda p: p.unlink(),
                       r"train-labels-idx1-ubyte\.gz: missing; the train split needs both"),
    "gzip truncated": ("train-images-idx3-ubyte.gz", _truncate,
                       r"train-images-idx3-ubyte\.gz: gzip stream truncated"),
    "not gzip": ("t10k-labels-idx1-ubyte.gz", lambda p: p.write_bytes(b"not a gzip file at all"),
                 r"t10k-labels-idx1-ubyte\.gz: unreadable \(.*\); expected a gzipped idx file"),
    "wrong magic": ("train-images-idx3-ubyte.gz", lambda p: _recompress(p, lambda b: b"\x00\x00\x08\x01" + b[4:]),
                    r"train-images-idx3-ubyte\.gz: idx magic number 0x00000801, expected 0x00000803"),
    "wrong dimensions": ("t10k-images-idx3-ubyte.gz",
                         lambda p: p.write_bytes(gzip.compress(idx_bytes(np.zeros((20, 32, 32), np.uint8)))),
                         r"t10k-images-idx3-ubyte\.gz: idx dimensions 20x32x32, expected N x 28x28"),
    "payload short": ("train-images-idx3-ubyte.gz", lambda p: _recompress(p, lambda b: b[:-784]),
                      r"train-images-idx3-ubyte\.gz: 30592 bytes after gunzip, expected 31376 for the 40 items"),
    "header short": ("t10k-labels-idx1-ubyte.gz", lambda p: p.write_bytes(gzip.compress(b"\x00\x00"))),
    "wrong count": ("t10k-labels-idx1-ubyte.gz",
                    lambda p: p.write_bytes(gzip.compress(idx_bytes(np.zeros(19, np.uint8)))),
                    r"t10k-labels-idx1-ubyte\.gz: 19 labels, expected 20, one per image"),
    "label out of range": ("train-labels-idx1-ubyte.gz",
                           lambda p: p.write_bytes(gzip.compress(idx_bytes(np.full(40, 10, np.uint8)))),
                           r"train-labels-idx1-ubyte\.gz: label 10, expected 0-9"),
}
BAD_FILES["header short"] += (r"t10k-labels-idx1-ubyte\.gz: 2 bytes after gunzip, shorter than the 8-byte idx header",)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_one_line_errors_naming_the_file(case, root, tmp_path, capsys):
    name, damage, message = BAD_FILES[case]
    damage(root / "FashionMNIST" / name)
    with pytest.raises(DataError, match=message):
        load_splits("fashion", root, cache_dir=tmp_path / "c")
    assert main(["data", "info", "--dataset", "fashion", "--data-dir", str(root), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and name in err


def test_data_info_and_limits(root, tmp_path, capsys):
    assert main(["data", "info", "--dataset", "fashion", "--data-dir", str(root), "--limit", "20,10",
                 "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "frames (T=10, 2, 34, 34)" in out and "train files: 20 files" in out and "test: 10 files" in out
    assert split_limits(None) == (None, None) and split_limits(5) == (5, 5) and split_limits((5, 2)) == (5, 2)
    for bad in ((5, 2, 1), (0,), ()):
        with pytest.raises(DataError, match="limit must be"):
            split_limits(bad)
    assert DataConfig(limit=7).limit == (7,)  # one size for both, as configs of earlier runs hold it
    with pytest.raises(ValueError, match="limit must be"):
        DataConfig(limit=(1, 2, 3))


def test_real_fashion_files(tmp_path):
    root = real_data_dir()
    if not (root / "FashionMNIST" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST idx files under {root}/FashionMNIST "
                    "(set SPIKEFF_DATA to the shared data folder)")
    plan = make_plan("fashion", root, None, 0, 0.2, tmp_path, False, (10, 5), None)
    found = plan.source.splits
    assert (len(found["train"]), len(found["test"])) == (60000, 10000)
    assert np.bincount([x.label for x in found["test"]]).tolist() == [1000] * 10
    assert (len(plan.samples["train"]), len(plan.samples["test"])) == (10, 5)
    to_frames = plan.spec.to_frames(plan.n_time_bins)
    for sample in plan.samples["test"]:
        events = plan.source.read(sample)
        assert 1000 < len(events) < 30000 and events["x"].max() < 34 and events["y"].max() < 34
        frames = to_frames(plan.spec.preprocess()(events))
        assert frames.shape == (10, 2, 34, 34) and frames.sum() == len(events)
