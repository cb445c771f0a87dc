"""Tests for spikeff.data: the digits simulator, the one pipeline, caching and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch
from helpers import nmnist_bytes, real_data_dir, write_nmnist

import spikeff.data.cache as cache_mod
from spikeff.data import (
    DATASETS,
    DataError,
    DatasetSpec,
    Splits,
    ToFrameBins,
    balanced_subset,
    describe,
    load_splits,
    make_digit_events,
    make_loader,
    stratified_split,
    time_first_collate,
)
from spikeff.data.digits import DigitsSource
from spikeff.data.manifest import sample_digest

NMNIST_DTYPE = tonic.datasets.NMNIST.dtype
REAL_COUNTS = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]


# ----------------------------------------------------------------------------- digits


def test_digits_events_match_nmnist_format_and_are_deterministic():
    events, labels = make_digit_events(seed=3, indices=[0, 1, 2, 500, 1796])
    again, _ = make_digit_events(seed=3, indices=[1796, 0])
    other, _ = make_digit_events(seed=4, indices=[0])
    from sklearn.datasets import load_digits

    assert labels.tolist() == load_digits().target[[0, 1, 2, 500, 1796]].tolist()
    for ev in events:
        assert ev.dtype == NMNIST_DTYPE
        assert 1000 < len(ev) < 10000
        assert ev["x"].min() >= 0 and ev["x"].max() < 34 and ev["y"].min() >= 0 and ev["y"].max() < 34
        assert set(np.unique(ev["p"])) == {0, 1}
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= 0 and ev["t"].max() <= 300_000
    np.testing.assert_array_equal(again[0], events[4])  # independent of which subset is generated
    np.testing.assert_array_equal(again[1], events[0])
    assert not np.array_equal(other[0], events[0])


def test_digits_fixed_split_sizes_and_classes():
    src = DigitsSource(DATASETS["digits"], Path("."), False)
    train, test = src.splits["train"], src.splits["test"]
    assert (len(train), len(test)) == (1438, 359)
    assert {s.index for s in train}.isdisjoint({s.index for s in test})
    assert {s.label for s in test} == set(range(10)) == {s.label for s in train}
    again = DigitsSource(DATASETS["digits"], Path("."), False)
    assert [s.index for s in again.splits["test"]] == [s.index for s in test]


def test_digits_pipeline_frames_sum_to_event_count(cache):
    splits = load_splits("digits", cache_dir=cache, time_bins=6, limit=20)
    assert isinstance(splits, Splits) and isinstance(splits.spec, DatasetSpec)
    assert (len(splits.train), len(splits.test)) == (20, 20)
    assert splits.test_name == "test" and splits.n_classes == 10 and splits.frame_shape == (2, 34, 34)
    assert all(n == 2 for n in splits.counts["train"].values())
    frames, label = splits.test[0]
    assert frames.shape == (6, 2, 34, 34) and frames.dtype == torch.float32 and isinstance(label, int)
    assert frames.sum() > 1000
    events, _ = make_digit_events(0, [0])
    assert DATASETS["digits"].to_frames(6)(events[0]).sum() == len(events[0])


# ----------------------------------------------------------------------------- framing, batching


def test_to_frame_bins_counts_every_event_and_handles_empty():
    ev = np.zeros(7, dtype=NMNIST_DTYPE)
    ev["t"] = [0, 0, 10, 10, 50, 99, 99]
    ev["x"] = [0, 1, 2, 3, 4, 5, 33]
    frames = ToFrameBins((34, 34, 2), 4)(ev)
    assert frames.shape == (4, 2, 34, 34) and frames.sum() == 7 and frames[-1].sum() == 2
    same_t = ev.copy()
    same_t["t"] = 5
    assert ToFrameBins((34, 34, 2), 3)(same_t).sum() == 7
    assert not ToFrameBins((34, 34, 2), 3)(ev[:0]).any()
    assert ToFrameBins((34, 34, 2), 3)(ev[:0]).shape == (3, 2, 34, 34)


def test_time_first_collate_and_loader_shapes():
    batch = [(torch.ones(5, 2, 4, 3) * i, i) for i in range(3)]
    frames, labels = time_first_collate(batch)
    assert frames.shape == (5, 3, 2, 4, 3) and frames.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2]
    assert torch.equal(frames[:, 2], batch[2][0])
    data = [(torch.full((5, 2, 4, 3), float(i)), i % 2) for i in range(10)]
    a = [y.tolist() for _, y in make_loader(data, 4, shuffle=True, seed=1)]
    b = [y.tolist() for _, y in make_loader(data, 4, shuffle=True, seed=1)]
    assert a == b and [len(x) for x in a] == [4, 4, 2]
    assert len(list(make_loader(data, 4, shuffle=False, seed=1, drop_last=True))) == 2


# ----------------------------------------------------------------------------- splits and selection


def test_stratified_split_and_balanced_subset_are_seeded():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    keep, held = stratified_split(labels, 0.2, np.random.default_rng(0))
    _, held2 = stratified_split(labels, 0.2, np.random.default_rng(0))
    _, held3 = stratified_split(labels, 0.2, np.random.default_rng(1))
    assert np.array_equal(held, held2) and not np.array_equal(held, held3)
    assert len(held) == 7 and np.bincount(labels[held]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(35))
    one_each = np.arange(10)
    assert len(stratified_split(one_each, 0.2, np.random.default_rng(0))[1]) == 2
    sub = balanced_subset(labels, 9, np.random.default_rng(0))
    assert np.bincount(labels[sub]).tolist() == [3, 3, 3]
    assert np.array_equal(sub, balanced_subset(labels, 9, np.random.default_rng(0)))


def test_nmnist_partial_copy_gets_seeded_validation_split(fake_nmnist, cache):
    s = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=4)
    assert (len(s.train), len(s.test)) == (34, 8)
    assert s.test_name == "validation (seeded 20% of Train, seed 0)"
    assert s.counts == {
        "train": {**{k: 0 for k in range(10)}, 0: 17, 1: 17},
        "test": {**{k: 0 for k in range(10)}, 0: 4, 1: 4},
    }
    assert "validation" in str(s.counts) and "Train" in s.summary()
    frames, labels = next(iter(make_loader(s.train, 5, shuffle=True, seed=0)))
    assert frames.shape == (4, 5, 2, 34, 34) and labels.shape == (5,)
    s1 = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=4, split_seed=1)
    assert s1.test_name.endswith("seed 1)")


def test_tuning_share_is_carved_from_the_training_set_only(fake_nmnist, cache):
    full = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=4)
    tuned = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=4, tune=True)
    train = set(full.manifest["train"]["digests"])
    held = {sample_digest(i) for i in tuned.manifest["test"]["samples"]}
    assert held and held <= train and not held & set(tuned.manifest["train"]["digests"])
    assert held | set(tuned.manifest["train"]["digests"]) == train  # every training sample, and nothing else
    assert not held & {sample_digest(i) for i in full.manifest["test"]["samples"]}
    assert tuned.test_name.startswith("tuning share") and "validation" in tuned.test_name
    assert "tuning" in str(tuned.counts).splitlines()[0]
    assert tuned.manifest["rule"]["tune"] is True


def test_nmnist_real_test_split_is_the_test_set(fake_nmnist, cache):
    write_nmnist(fake_nmnist, n_per_class=3, split="Test", seed=1)
    s = load_splits("nmnist", fake_nmnist, cache_dir=cache)
    assert s.test_name == "test" and (len(s.train), len(s.test)) == (42, 6)
    assert s.n_time_bins == 10


def test_decoding_in_dataloader_workers_gives_same_frames(fake_nmnist, tmp_path):
    a = load_splits("nmnist", fake_nmnist, cache_dir=tmp_path / "a", time_bins=3)
    b = load_splits("nmnist", fake_nmnist, cache_dir=tmp_path / "b", time_bins=3, num_workers=2)
    assert all(torch.equal(a.train[i][0], b.train[i][0]) for i in range(len(a.train)))


def test_single_sample_cannot_be_split(tmp_path, cache):
    write_nmnist(tmp_path, n_per_class=1, classes=(3,))
    with pytest.raises(DataError, match="test split is empty"):
        load_splits("nmnist", tmp_path, cache_dir=cache)


def test_limit_is_class_balanced(fake_nmnist, cache):
    s = load_splits("nmnist", fake_nmnist, cache_dir=cache, limit=6)
    assert (len(s.train), len(s.test)) == (6, 6)
    assert s.counts["train"][0] == s.counts["train"][1] == 3


# ----------------------------------------------------------------------------- bad input


def test_missing_directory_names_layout_and_download(tmp_path, cache):
    with pytest.raises(DataError, match=r"NMNIST/Train/<digit>/\*\.bin.*download=True"):
        load_splits("nmnist", tmp_path / "nowhere", cache_dir=cache)
    with pytest.raises(DataError, match=r"ibmGestureTest.*download=True"):
        load_splits("dvsgesture", tmp_path / "nowhere", cache_dir=cache)
    with pytest.raises(DataError, match="unknown dataset"):
        load_splits("cifar", tmp_path, cache_dir=cache)


def test_download_goes_through_tonic_and_its_failure_is_a_clear_error(tmp_path, cache, monkeypatch, capsys):
    calls = []

    class FakeNMNIST:  # stands in for tonic's class: "downloads" by writing its layout, or fails offline
        dtype = tonic.datasets.NMNIST.dtype
        online = False

        def __init__(self, save_to, train):
            if not self.online:
                raise ConnectionError("no route to host")
            calls.append(train)
            write_nmnist(Path(save_to), n_per_class=3, split="Train" if train else "Test")

    monkeypatch.setattr(tonic.datasets, "NMNIST", FakeNMNIST)
    with pytest.raises(DataError, match=r"downloading N-MNIST into .*NMNIST failed: ConnectionError"):
        load_splits("nmnist", tmp_path / "empty", cache_dir=cache, download=True)
    FakeNMNIST.online = True
    s = load_splits("nmnist", tmp_path / "fresh", cache_dir=cache, download=True)
    assert calls == [True, False] and (len(s.train), len(s.test)) == (6, 6)
    assert "downloading N-MNIST with tonic" in capsys.readouterr().err


def test_empty_and_truncated_files_are_skipped_with_warning_and_counted(fake_nmnist, cache):
    d = fake_nmnist / "NMNIST" / "Train" / "0"
    (d / "empty.bin").write_bytes(b"")
    (d / "trunc.bin").write_bytes(b"\x01" * 12)
    with pytest.warns(UserWarning) as rec:
        s = load_splits("nmnist", fake_nmnist, cache_dir=cache, val_fraction=0.5)
    messages = " ".join(str(w.message) for w in rec)
    assert "empty.bin" in messages and "trunc.bin" in messages and "multiple of 5" in messages
    assert len(s.skipped) == 2 and len(s.train) + len(s.test) == 42
    assert "skipped   2 unreadable files" in s.summary()
    with pytest.warns(UserWarning, match="2 unreadable files skipped"):  # cache hit still reports them
        again = load_splits("nmnist", fake_nmnist, cache_dir=cache, val_fraction=0.5)
    assert len(again.skipped) == 2


def test_unreadable_file_is_skipped(fake_nmnist, cache, monkeypatch):
    real = tonic.io.read_mnist_file

    def flaky(path, *a, **k):
        if path.endswith("10003.bin"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, *a, **k)

    monkeypatch.setattr(tonic.io, "read_mnist_file", flaky)
    with pytest.warns(UserWarning, match="10003.bin.*unreadable"):
        s = load_splits("nmnist", fake_nmnist, cache_dir=cache)
    assert len(s.train) + len(s.test) == 41


def test_too_many_bad_files_fail(fake_nmnist, cache):
    for i in range(3):
        (fake_nmnist / "NMNIST" / "Train" / "1" / f"bad{i}.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(DataError, match=r"unreadable \(more than 5%\)"), pytest.warns(UserWarning):
        load_splits("nmnist", fake_nmnist, cache_dir=cache, val_fraction=0.5)


def test_events_outside_sensor_name_the_file(fake_nmnist, cache):
    bad = fake_nmnist / "NMNIST" / "Train" / "1" / "outside.bin"
    bad.write_bytes(nmnist_bytes([3, 40], [3, 3], [10, 20], [1, 0]))
    with pytest.raises(DataError, match=r"outside\.bin.*outside the 34x34x2 sensor"):
        load_splits("nmnist", fake_nmnist, cache_dir=cache, val_fraction=0.5)


def test_zero_event_sample_gives_zero_frame(fake_nmnist, cache):
    (fake_nmnist / "NMNIST" / "Train" / "1" / "zzz.bin").write_bytes(nmnist_bytes([0], [240], [0], [0]))
    s = load_splits("nmnist", fake_nmnist, cache_dir=cache, val_fraction=0.5, time_bins=3)
    frames = [f for ds in (s.train, s.test) for f, _ in ds]
    assert len(frames) == 43 and sum(int(f.sum() == 0) for f in frames) == 1
    assert all(f.shape == (3, 2, 34, 34) for f in frames)


def test_non_digit_label_folder_is_an_error(fake_nmnist, cache):
    (fake_nmnist / "NMNIST" / "Train" / "seven").mkdir()
    (fake_nmnist / "NMNIST" / "Train" / ".hidden").mkdir()  # hidden folders are ignored
    with pytest.raises(DataError, match=r"Train/seven: unexpected folder"):
        load_splits("nmnist", fake_nmnist, cache_dir=cache)


def test_dvsgesture_bad_input(tmp_path, cache):
    user = tmp_path / "DVSGesture" / "ibmGestureTest" / "user01_led"
    user.mkdir(parents=True)
    for label in range(3):
        np.save(
            user / f"{label}.npy", np.array([[1, 2, 1, 0], [5, 6, 0, 700], [127, 127, 1, 1600]], np.int32)
        )
    s = load_splits("dvsgesture", tmp_path, cache_dir=cache, time_bins=3, resolution=64)
    f, _ = s.train[0]
    assert f.shape == (3, 2, 64, 64) and f.sum() <= 1  # Denoise drops isolated events (after 10 ms)
    np.save(user / "3.npy", np.array([[1, 200, 1, 0]], np.int32))
    with pytest.raises(DataError, match=r"3\.npy.*outside the 128x128x2 sensor"):
        load_splits("dvsgesture", tmp_path, cache_dir=cache)
    (user / "3.npy").unlink()
    (user.parent / "bob").mkdir()
    with pytest.raises(DataError, match=r"bob: unexpected folder"):
        load_splits("dvsgesture", tmp_path, cache_dir=cache)
    with pytest.raises(DataError, match="resolution"):
        load_splits("dvsgesture", tmp_path, cache_dir=cache, resolution=48)


# ----------------------------------------------------------------------------- cache


def test_second_load_comes_from_cache(fake_nmnist, cache, count_decodes):
    first = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=5)
    assert len(count_decodes) == 42
    count_decodes.clear()
    second = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=5)
    assert count_decodes == []
    assert all("loaded from cache" in v for v in second.cache.values())
    assert torch.equal(first.train[3][0], second.train[3][0])
    assert "cached (" in describe("nmnist", fake_nmnist, cache_dir=cache, time_bins=5)
    assert "not cached yet" in describe("nmnist", fake_nmnist, cache_dir=cache, time_bins=6)


def test_changed_time_bins_does_not_read_stale_cache(fake_nmnist, cache, count_decodes):
    load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=5)
    count_decodes.clear()
    s = load_splits("nmnist", fake_nmnist, cache_dir=cache, time_bins=7)
    assert len(count_decodes) == 42 and s.train[0][0].shape[0] == 7


def test_cache_from_older_version_is_rebuilt(fake_nmnist, cache, count_decodes, monkeypatch):
    load_splits("nmnist", fake_nmnist, cache_dir=cache)
    # same file names, metadata claiming an older format: must not be reused
    for meta in (cache / "nmnist").glob("*.json"):
        m = json.loads(meta.read_text())
        m["format_version"] = 0
        meta.write_text(json.dumps(m))
    count_decodes.clear()
    with pytest.warns(UserWarning, match="another version or parameters"):
        load_splits("nmnist", fake_nmnist, cache_dir=cache)
    assert len(count_decodes) == 42
    count_decodes.clear()
    monkeypatch.setattr(cache_mod, "CACHE_FORMAT_VERSION", cache_mod.CACHE_FORMAT_VERSION + 1)
    load_splits("nmnist", fake_nmnist, cache_dir=cache)
    assert len(count_decodes) == 42


def test_changed_file_invalidates_cache(fake_nmnist, cache, count_decodes):
    load_splits("nmnist", fake_nmnist, cache_dir=cache)
    f = next((fake_nmnist / "NMNIST" / "Train" / "0").glob("*.bin"))
    f.write_bytes(nmnist_bytes([1, 2], [1, 2], [0, 5], [0, 1]))
    count_decodes.clear()
    load_splits("nmnist", fake_nmnist, cache_dir=cache)
    assert len(count_decodes) > 0


def test_unwritable_cache_dir_falls_back_to_memory(fake_nmnist, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="not writable.*in memory only"):
        s = load_splits("nmnist", fake_nmnist, cache_dir=blocker / "cache")
    assert len(s.train) == 34 and "in memory only" in s.summary()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_dir_falls_back_to_memory(fake_nmnist, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.warns(UserWarning, match="not writable"):
            s = load_splits("nmnist", fake_nmnist, cache_dir=ro)
        assert len(s.test) == 8
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- augmentation


def test_augmentation_is_seeded_per_epoch_and_train_only(fake_nmnist, cache):
    a = load_splits("nmnist", fake_nmnist, cache_dir=cache, augment=True, time_bins=4, split_seed=5)
    b = load_splits("nmnist", fake_nmnist, cache_dir=cache, augment=True, time_bins=4, split_seed=5)
    assert "events" in a.cache["train"] and "frames" in a.cache["test"]
    assert torch.equal(a.train[(0, 3)][0], b.train[(0, 3)][0])
    assert torch.equal(a.train[(2, 3)][0], b.train[(2, 3)][0])
    assert any(not torch.equal(a.train[(0, i)][0], a.train[(1, i)][0]) for i in range(5))
    assert a.train[0][0].shape == (4, 2, 34, 34)
    la = make_loader(a.train, 8, shuffle=True, seed=2)
    lb = make_loader(b.train, 8, shuffle=True, seed=2)
    for _ in range(2):  # two epochs, identical across runs
        for (fa, ya), (fb, yb) in zip(la, lb):
            assert torch.equal(fa, fb) and torch.equal(ya, yb)
    state = np.random.get_state()[1].copy()
    a.train[(0, 1)]
    assert np.array_equal(state, np.random.get_state()[1])  # tonic's global RNG use does not leak


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_root() -> Path:
    root = real_data_dir()
    if not (root / "NMNIST" / "Train").is_dir():
        pytest.skip(f"real data not found at {root} (set SPIKEFF_DATA to the shared data folder)")
    return root


def test_real_nmnist_1000_samples(real_root, tmp_path):
    s = load_splits("nmnist", real_root, cache_dir=tmp_path)
    total = [s.counts["train"][k] + s.counts["test"][k] for k in range(10)]
    assert total == REAL_COUNTS and len(s.train) + len(s.test) == 1000 and not s.skipped
    files = sorted((real_root / "NMNIST" / "Train").glob("*/*.bin"))
    assert len(files) == 1000
    for f in files[::50]:
        ev = tonic.io.read_mnist_file(str(f), dtype=NMNIST_DTYPE)
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and ev["x"].min() >= 0
    from spikeff.data.plan import make_plan  # the planned sample list, to compare frames with raw events

    plan = make_plan("nmnist", real_root, None, 0, 0.2, tmp_path, False, None, None)
    for row in range(0, len(s.test), 40):
        ev = tonic.io.read_mnist_file(str(plan.samples["test"][row].path), dtype=NMNIST_DTYPE)
        frames, label = s.test[row]
        assert frames.sum() == len(ev) and label == plan.samples["test"][row].label


def test_real_dvsgesture_clips(real_root, tmp_path):
    if not (real_root / "DVSGesture" / "ibmGestureTest").is_dir():
        pytest.skip(f"no DVSGesture/ibmGestureTest under {real_root}")
    s = load_splits("dvsgesture", real_root, cache_dir=tmp_path)
    assert len(s.train) + len(s.test) == 10 and s.frame_shape == (2, 32, 32) and s.n_time_bins == 16
    assert "ibmGestureTest" in s.test_name
    for ds in (s.train, s.test):
        for frames, label in ds:
            assert frames.shape == (16, 2, 32, 32) and frames.sum() > 1000 and 0 <= label < 10
