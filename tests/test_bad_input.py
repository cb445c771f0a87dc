"""Issue 14: no run that exits 0 with wrong numbers, no good result lost, one error line per mistake.

Each test names the issue's case it covers. Every one asserts the exit status, the one line the
user sees and, where a good file could be lost, that it did not change.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import wait_for_first_epoch, write_nmnist

import spikeff.cli as cli
import spikeff.fileio as fileio
from spikeff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikeff.cli import main
from spikeff.config import RunConfig, flags, from_dict
from spikeff.data import load_splits
from spikeff.nir import NIRExportError, NIRImportError, export_nir, from_nir, to_nir_graph

TINY = ["--epochs", "1", "--readout-epochs", "1", "--channels", "4", "--trials", "2", "--time-bins", "4",
        "--batch-size", "8", "--no-control"]


def error_line(err: str) -> str:
    """The one error line: the last line, the only ``error:`` line, and no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and sum("error:" in line for line in lines) == 1, err
    return lines[-1]


def train(out: Path, data: Path, cache: Path, *extra: str) -> int:
    return main(["train", "--dataset", "nmnist", "--data-dir", str(data), "--cache-dir", str(cache),
                 "--out", str(out), *TINY, *extra])


def interrupt_after_first_epoch(monkeypatch) -> None:
    """Ctrl-C right after the first epoch's run state was written."""
    real = cli.train_and_evaluate

    def stop(record):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train_and_evaluate", lambda *a, **k: real(*a, **{**k, "on_epoch": stop}))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_nmnist(tmp_path / "data", n_per_class=10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A finished tiny run on 20 fake N-MNIST files: (data, cache, run folder)."""
    root = tmp_path_factory.mktemp("finished")
    data, cache, out = write_nmnist(root / "data", n_per_class=10), root / "cache", root / "run"
    assert train(out, data, cache) == 0
    return data, cache, out


def interrupted(tmp_path: Path, data: Path, monkeypatch, capsys, *extra: str) -> Path:
    out = tmp_path / "run"
    interrupt_after_first_epoch(monkeypatch)
    assert train(out, data, tmp_path / "cache", "--epochs", "2", *extra) == 130
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: interrupted; resume with: spikeff train --resume {out}")
    monkeypatch.undo()
    assert (out / "train_state.pt").exists() and not (out / "model.pt").exists()
    return out


# ----------------------------------------------------------------------------- 1, 2: data identity


def test_1_resume_refuses_changed_data(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys)
    state = (out / "train_state.pt").read_bytes()
    meta = torch.load(out / "train_state.pt", weights_only=True)["meta"]
    assert meta["data"]["train"]["n"] == 16 and len(meta["data"]["test"]["samples"]) == 4
    gone = tmp_path / "gone"
    gone.mkdir()
    for f in sorted((data / "NMNIST" / "Train" / "1").glob("*.bin"))[:2]:
        shutil.move(f, gone / f.name)
    assert main(["train", "--resume", str(out)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"spikeff: error: the data changed since {out} was started: train split")
    assert "resuming would mix held-out and training samples" in line
    assert (out / "train_state.pt").read_bytes() == state and not (out / "model.pt").exists()
    for f in gone.iterdir():  # the same data again: the run goes on
        shutil.move(f, data / "NMNIST" / "Train" / "1" / f.name)
    assert main(["train", "--resume", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["test"]["samples"] == meta["data"]["test"]["samples"]
    assert "digests" not in metrics["data"]["train"] and metrics["data"]["rule"]["split_seed"] == 0


def test_2_eval_scores_the_recorded_test_split_on_another_copy(finished, tmp_path, capsys):
    data, cache, out = finished
    big = tmp_path / "big"
    shutil.copytree(data, big)
    extra = write_nmnist(tmp_path / "extra", n_per_class=40, classes=(0, 1, 2), seed=7)
    for f in extra.glob("NMNIST/Train/*/*.bin"):  # more files, under other names: a larger copy
        target = big / f.relative_to(extra).with_name(f"x{f.name}")
        target.parent.mkdir(exist_ok=True)
        shutil.copy(f, target)
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--data-dir", str(big), "--cache-dir", str(cache)]) == 0
    printed = capsys.readouterr().out
    assert "validation (seeded 20% of Train, seed 0), 4 samples" in printed
    acc = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert " ".join(f"{acc[m]:.4f}" for m in ("energy", "average", "deterministic")) in " ".join(printed.split())


def test_2_eval_refuses_missing_test_samples_and_overlap(finished, tmp_path, capsys):
    data, cache, out = finished
    meta = load_checkpoint(out / "model.pt")[1]
    first = meta["data"]["test"]["samples"][0]
    partial = tmp_path / "partial"
    shutil.copytree(data, partial)
    (partial / first.split(":")[0]).unlink()
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--data-dir", str(partial), "--cache-dir", str(cache)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: 1 of the 4 test samples the model was evaluated on are missing or changed in nmnist "
        f"({partial / 'NMNIST'} (local tonic layout; Train: 19 .bin files)) (first: {first}, as path:size); "
        "evaluate on the data it was trained with")

    payload = torch.load(out / "model.pt", weights_only=True)
    payload["meta"]["data"]["train"]["digests"].append(hashlib.sha256(first.encode()).hexdigest()[:16])
    torch.save(payload, tmp_path / "leaky.pt")
    assert main(["eval", str(tmp_path / "leaky.pt"), "--data-dir", str(data), "--cache-dir", str(cache)]) == 2
    assert error_line(capsys.readouterr().err) == (
        "spikeff: error: 1 of the 4 recorded test samples were also training samples; "
        "no held-out accuracy can be given")


def test_2_checkpoint_without_manifest_is_evaluated_with_a_warning(finished, tmp_path, capsys):
    data, cache, out = finished
    payload = torch.load(out / "model.pt", weights_only=True)
    del payload["meta"]["data"]
    torch.save(payload, tmp_path / "old.pt")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "old.pt"), "--data-dir", str(data), "--cache-dir", str(cache)]) == 0
    assert (f"spikeff: warning: {tmp_path / 'old.pt'} records no data manifest (an older spikeff): its held-out "
            "split is drawn again from the data found, and cannot be checked against its training samples"
            ) in capsys.readouterr().err.splitlines()


# ----------------------------------------------------------------------------- 3: frame cache


@pytest.mark.parametrize("tamper", ["bytes", "zeros", "float64", "shape"])
def test_3_tampered_cache_is_rebuilt(data, tmp_path, tamper, count_decodes):
    cache = tmp_path / "cache"
    first = load_splits("nmnist", data, cache_dir=cache, time_bins=3)
    (npy,) = (cache / "nmnist").glob("train-frames-*.frames.npy")
    good = np.load(npy)
    if tamper == "bytes":
        raw = bytearray(npy.read_bytes())
        raw[-50:] = b"\x07" * 50
        npy.write_bytes(bytes(raw))
    else:
        bad = {"zeros": np.zeros_like(good), "float64": good.astype(np.float64), "shape": good[:, :2]}[tamper]
        np.save(npy, bad)
    count_decodes.clear()
    with pytest.warns(UserWarning, match=r"frames\.npy: cache does not match its record .*; rebuilding") as rec:
        again = load_splits("nmnist", data, cache_dir=cache, time_bins=3)
    why = {"bytes": "checksum differs", "zeros": "checksum differs", "float64": "dtype <f8, recorded <i2",
           "shape": "shape (16, 2, 2, 34, 34), recorded (16, 3, 2, 34, 34)"}[tamper]
    assert why in str(rec[0].message)
    assert len(count_decodes) == 16  # the train split was decoded again
    assert all(torch.equal(first.train[i][0], again.train[i][0]) for i in range(len(first.train)))
    assert np.array_equal(np.load(npy), good)


# ----------------------------------------------------------------------------- 4: non-finite


@pytest.mark.parametrize("flag,value", [("--delta", "nan"), ("--sigma", "nan"), ("--threshold", "inf"),
                                        ("--lr", "-inf"), ("--val-fraction", "nan"), ("--checkpoint-minutes", "nan")])
def test_4_non_finite_settings_are_refused_when_read(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "run"), f"{flag}={value}"])
    assert exit_.value.code == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff train: error: argument {flag}: expected a finite number, got {value!r} (see spikeff train -h)")
    assert not (tmp_path / "run").exists()


def test_4_non_finite_weights_are_neither_loaded_nor_exported_nor_imported(finished, tmp_path, capsys):
    _, cache, out = finished
    payload = torch.load(out / "model.pt", weights_only=True)
    payload["state_dict"]["layers.0.synapse.weight"].view(-1)[3] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "nan.pt"), "--cache-dir", str(cache)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: {tmp_path / 'nan.pt'}: tensor 'layers.0.synapse.weight' has 1 non-finite value(s) of 72; "
        "the checkpoint is unusable")
    good = tmp_path / "good.nir"
    assert main(["export", str(out / "model.pt"), "--out", str(good)]) == 0
    before = good.read_bytes()
    assert main(["export", str(tmp_path / "nan.pt"), "--out", str(good)]) == 2
    assert "non-finite value(s)" in error_line(capsys.readouterr().err) and good.read_bytes() == before

    net, meta = load_checkpoint(out / "model.pt")
    with torch.no_grad():
        net.head.fc.bias[0] = float("inf")
    with pytest.raises(CheckpointError, match=r"not writing .*x\.pt: tensor 'head\.fc\.bias' has 1 non-finite"):
        save_checkpoint(tmp_path / "x.pt", net, meta)
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(NIRExportError, match="non-finite parameters: tensor 'head.fc.bias'"):
        export_nir(net, tmp_path / "x.nir")
    good_net, _ = load_checkpoint(out / "model.pt")
    graph = to_nir_graph(good_net, dt=1e-3)
    graph.nodes["readout"].weight[0, 0] = np.nan
    with pytest.raises(NIRImportError, match="non-finite parameters: tensor 'head.fc.weight'"):
        from_nir(graph)


def test_4_run_state_with_non_finite_weights_is_not_resumed(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys)
    state = torch.load(out / "train_state.pt", weights_only=True)
    state["model"]["layers.0.synapse.bias"][1] = float("inf")
    torch.save(state, out / "train_state.pt")
    before = (out / "train_state.pt").read_bytes()
    assert main(["train", "--resume", str(out)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: {out / 'train_state.pt'}: tensor 'layers.0.synapse.bias' has 1 non-finite value(s) of 4; "
        "the run diverged before this save and cannot be resumed")
    assert (out / "train_state.pt").read_bytes() == before and not (out / "model.pt").exists()


# ----------------------------------------------------------------------------- 5, 6: warnings


def test_5_one_class_split_warns(tmp_path, capsys):
    data = write_nmnist(tmp_path / "data", n_per_class=10, classes=(3,))
    assert train(tmp_path / "run", data, tmp_path / "cache") == 0
    err = capsys.readouterr().err
    for split, n in (("train", 8), ("test", 2)):
        assert (f"spikeff: warning: nmnist: the {split} split holds one class only (3 - three, {n} samples); "
                "its accuracy says nothing (a class folder missing?)") in err.splitlines()


@pytest.mark.parametrize("times,why", [
    ([0, -5, 10], "1 events with negative timestamps (min -5 ms)"),
    ([0, 5, 2**31 - 1], "timestamps up to 2147483647 ms (over an hour in a clip)"),
    ([1600, 1700, 1800], "no event in the 1.5 s window (timestamps 1600-1800 ms)"),
])
def test_6_dvs_timestamps_that_cannot_be_right_skip_the_clip(tmp_path, times, why):
    split = tmp_path / "DVSGesture" / "ibmGestureTrain"
    for user in range(3):
        for label in range(10):
            d = split / f"user{user:02d}_led"
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{label}.npy", np.array([[1, 2, 1, 0], [1, 3, 0, 5], [2, 2, 1, 9]], np.int32))
    bad = split / "user00_led" / "10.npy"
    np.save(bad, np.array([[1, 2, 1, t] for t in times], np.int32))
    with pytest.warns(UserWarning, match=re.escape(f"10.npy: skipped, {why}")):
        s = load_splits("dvsgesture", tmp_path, cache_dir=tmp_path / "cache", time_bins=2)
    assert s.skipped == ((str(bad), s.skipped[0][1]),) and len(s.train) + len(s.test) == 30


# ----------------------------------------------------------------------------- 7, 8: run folders


def test_7_existing_run_folder_is_not_replaced(finished, tmp_path, capsys):
    data, cache, done = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert train(out, data, cache) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: {out} already holds a finished run (model.pt); pass --overwrite to replace it, "
        "or choose another --out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    stale = out / ".model.pt.abc123.tmp"  # case 12: a write cut short by a kill
    stale.write_bytes(b"partial")
    assert train(out, data, cache, "--overwrite", "--seed", "1") == 0
    assert (out / "model.pt").read_bytes() != before["model.pt"] and not stale.exists()


def test_7_interrupted_run_state_is_never_deleted_by_a_new_run(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys)
    state = (out / "train_state.pt").read_bytes()
    for extra in ((), ("--overwrite",)):
        assert train(out, data, tmp_path / "cache", *extra) == 2
        assert error_line(capsys.readouterr().err) == (
            f"spikeff: error: {out} holds an interrupted run (train_state.pt); continue it with "
            f"`spikeff train --resume {out}`, or delete {out / 'train_state.pt'} to start over")
        assert (out / "train_state.pt").read_bytes() == state


def test_8_resume_uses_dir_from_anywhere_and_refuses_other_flags(tmp_path, data, monkeypatch, capsys):
    start, elsewhere = tmp_path / "a", tmp_path / "c"
    start.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(start)  # relative --out, --data-dir and --cache-dir
    interrupt_after_first_epoch(monkeypatch)
    assert main(["train", "--dataset", "nmnist", "--data-dir", "../data", "--cache-dir", "cache", "--out", "run",
                 *TINY, "--epochs", "2"]) == 130
    assert error_line(capsys.readouterr().err) == "spikeff: error: interrupted; resume with: spikeff train --resume run"
    monkeypatch.undo()
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(start / "run", moved)
    state = (moved / "train_state.pt").read_bytes()
    monkeypatch.chdir(elsewhere)

    assert main(["train", "--resume", str(moved), "--epochs", "5", "--lr", "1"]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: --resume continues {moved} with the settings it was started with; --epochs, --lr cannot "
        "be given beside it (allowed: --device, --num-workers, --checkpoint-minutes, --data-dir, --cache-dir); "
        "start a new run with --out to change them")
    assert (moved / "train_state.pt").read_bytes() == state

    assert main(["train", "--resume", str(moved), "--dev", "cpu"]) == 0  # a safe flag, applied with a notice
    printed = capsys.readouterr().out
    assert "resume: --device cpu (the run had cpu)" in printed and f"resuming {moved} at epoch 1" in printed
    assert (moved / "model.pt").exists() and not (moved / "train_state.pt").exists()
    assert not (start / "run").exists() and list(elsewhere.iterdir()) == []


def test_8_resume_keeps_the_saved_config_when_defaults_change(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys)
    changed = {"--lr": 0.5, "--epochs": 7, "--trials": 3}  # as if a newer spikeff changed these defaults
    monkeypatch.setattr(cli, "flags", lambda: [replace(f, default=changed.get(f.name, f.default)) for f in flags()])
    new_default = cli.from_args(cli.build_parser().parse_args(["train"]))
    assert (new_default.train.lr, new_default.train.epochs, new_default.train.trials) == (0.5, 7, 3)
    assert main(["train", "--resume", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    saved = from_dict(RunConfig, metrics["config"])
    assert (saved.train.lr, saved.train.epochs, saved.train.trials) == (1e-3, 2, 2)
    assert len(metrics["history"]) == 2 and metrics["trials"] == 2
    _, meta = load_checkpoint(out / "model.pt")
    assert from_dict(RunConfig, meta["config"]) == saved


def test_8_a_run_state_of_0_1_resumes_and_a_pre_0_1_one_is_refused(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys)
    state = torch.load(out / "train_state.pt", weights_only=True)
    config = state["meta"]["config"]
    # 0.1 kept the seed, the readout and the evaluation settings under "train"
    old = {k: v for k, v in config.items() if k not in ("seed", "eval")}
    old["train"] = {**config["train"], "seed": config["seed"], **config["eval"]}
    pre = {k: v for k, v in state["meta"].items() if k != "config"}  # before 0.1: the argv
    torch.save({**state, "meta": {**pre, "argv": ["train"]}}, out / "train_state.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: {out / 'train_state.pt'} records no run config: it was written by a pre-0.1 spikeff "
        "(retrain), or not by `spikeff train`")
    torch.save({**state, "meta": {**pre, "config": old}}, out / "train_state.pt")
    assert main(["train", "--resume", str(out)]) == 0
    saved = from_dict(RunConfig, json.loads((out / "metrics.json").read_text())["config"])
    assert saved == from_dict(RunConfig, config) and saved.train.epochs == 2 and saved.network.conv_channels == (4,)


# ----------------------------------------------------------------------------- 9: export --verify


def test_9_failed_verify_keeps_the_previous_nir(finished, tmp_path, monkeypatch, capsys):
    _, _, out = finished
    target = tmp_path / "model.nir"
    assert main(["export", str(out / "model.pt"), "--out", str(target), "--verify", "--verify-samples", "1"]) == 0
    good = target.read_bytes()
    real = cli.verify_nir

    def disagree(*a, **k):
        res = real(*a, **k)
        res["snntorch"]["layers"][0] = 3
        return res

    monkeypatch.setattr(cli, "verify_nir", disagree)
    capsys.readouterr()
    assert main(["export", str(out / "model.pt"), "--out", str(target), "--verify", "--verify-samples", "1",
                 "--dt", "2e-3", "--overwrite"]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: the exported graph does not reproduce spikeff's spikes; {target} was not written "
        "(a previous file there is unchanged)")
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]


# ----------------------------------------------------------------------------- 10: one error line


@pytest.mark.parametrize("command", ["train", "eval"])
def test_10_unknown_device_is_one_line(command, finished, tmp_path, capsys):
    _, _, out = finished
    argv = ["train", "--out", str(tmp_path / "run")] if command == "train" else ["eval", str(out / "model.pt")]
    assert main([*argv, "--device", "tpu"]) == 2
    assert error_line(capsys.readouterr().err) == (
        "spikeff: error: --device tpu: not a device name (expected cpu, cuda or cuda:N)")


class FullDisk:
    """A file whose writes fail as on a full disk (``message`` without errno: numpy's short-write text)."""

    def __init__(self, f, message: str | None = None) -> None:
        self.f, self.message = f, message

    def write(self, data):
        if self.message:
            raise OSError(self.message)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, names: str, message: str | None = None) -> None:
    """Writes of temp files whose name contains ``names`` fail for want of space."""
    def fake_open(path, mode="r", *a, **k):
        f = open(path, mode, *a, **k)
        return FullDisk(f, message) if names in Path(path).name else f

    monkeypatch.setattr(fileio, "open", fake_open, raising=False)


def test_10_full_disk_while_writing_the_run_state(tmp_path, data, monkeypatch, capsys):
    out = interrupted(tmp_path, data, monkeypatch, capsys, "--epochs", "3")
    state = (out / "train_state.pt").read_bytes()
    fill_disk(monkeypatch, ".train_state.pt.")
    assert main(["train", "--resume", str(out)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: cannot write {out / 'train_state.pt'}: No space left on device")
    assert (out / "train_state.pt").read_bytes() == state
    assert sorted(p.name for p in out.iterdir()) == ["train_state.pt"]


def test_10_ctrl_c_is_one_line_and_resumable(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikeff", "train", "--dataset", "digits", "--cache-dir", str(tmp_path / "cache"),
         "--out", str(out), "--limit", "40", *TINY, "--epochs", "200", "--scan", "eager"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # a terminal's Ctrl-C, even where the suite runs as a background job (which starts with SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_first_epoch(proc, out / "train_state.pt")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert error_line(err) == f"spikeff: error: interrupted; resume with: spikeff train --resume {out}"
    assert (out / "train_state.pt").exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop this test makes
def test_10_a_stop_signal_dropped_by_a_finalizer_is_raised_after_the_epoch():
    """Python prints and drops an exception raised inside ``__del__``: a Ctrl-C landing there must not be lost."""
    for sig, kind in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, cli.Terminated)):
        stops = cli._StopSignals()

        class Finalized:
            def __init__(self, stops: cli._StopSignals, sig: int) -> None:
                self.stops, self.sig = stops, sig

            def __del__(self):
                self.stops(self.sig, None)

        Finalized(stops, sig)  # the handler's exception is dropped here
        with pytest.raises(kind):
            stops.check()
    cli._StopSignals().check()  # nothing received: no exception


# ----------------------------------------------------------------------------- 11, 12: cache and files


@pytest.mark.parametrize("message", [None, "1109760 requested and 20416 written"])
def test_11_full_disk_while_caching_falls_back_to_memory(data, tmp_path, monkeypatch, message):
    cache = tmp_path / "cache"
    fill_disk(monkeypatch, ".frames.npy.", message)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.warns(UserWarning) as rec:
        s = load_splits("nmnist", data, cache_dir=cache, time_bins=3)
    cause = re.escape("No space left on device" + (f" (OSError: {message})" if message else ""))
    for split, warning in zip(("train", "test"), rec):
        assert re.fullmatch(
            f"cannot write {cache / 'nmnist'}/{split}-frames-[0-9a-f]{{16}}\\.frames\\.npy: {cause}; "
            f"keeping nmnist {split} in memory only .*", str(warning.message))
    assert "in memory only" in s.summary() and len(s.train) == 16
    assert list((cache / "nmnist").iterdir()) == []


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_12_outputs_honour_the_umask(umask, mode, finished, tmp_path):
    _, _, out = finished
    old = os.umask(umask)
    try:
        fileio.write_json(tmp_path / "m.json", {"a": 1})
        assert main(["export", str(out / "model.pt"), "--out", str(tmp_path / "m.nir"), "--verify",
                     "--verify-samples", "1"]) == 0
        load_splits("digits", cache_dir=tmp_path / "cache", time_bins=2, limit=10)
    finally:
        os.umask(old)
    files = [tmp_path / "m.json", tmp_path / "m.nir", *(tmp_path / "cache" / "digits").iterdir()]
    assert len(files) == 6 and {f.stat().st_mode & 0o777 for f in files} == {mode}


# ----------------------------------------------------------------------------- 13: data info --check


def test_13_data_info_check_decodes_every_file(data, tmp_path, capsys):
    d = data / "NMNIST" / "Train" / "0"
    (d / "empty.bin").write_bytes(b"")
    (d / "trunc.bin").write_bytes(b"\x01" * 12)
    argv = ["data", "info", "--dataset", "nmnist", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    assert "bad" not in capsys.readouterr().out
    assert main([*argv, "--check"]) == 1
    out = capsys.readouterr().out.splitlines()
    i = out.index("check     decoded 22 files: 2 bad")
    assert out[i + 1:] == [f"  {d / 'empty.bin'}: empty file",
                           f"  {d / 'trunc.bin'}: truncated: 12 bytes is not a multiple of 5 "
                           "(N-MNIST events are 5 bytes)"]
    (d / "empty.bin").unlink()
    (d / "trunc.bin").unlink()
    assert main([*argv, "--check"]) == 0
    assert "check     decoded 20 files: 0 bad" in capsys.readouterr().out


# ----------------------------------------------------------------------------- issue 26: round two


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DIGITS = ["--dataset", "digits", "--limit", "40", *TINY]


def digits_train(out: Path, cache: Path, *extra: str) -> int:
    return main(["train", *DIGITS, "--cache-dir", str(cache), "--out", str(out), *extra])


def bench(out: Path, cache: Path, *extra: str) -> int:
    from spikeff.bench import main as bench_main

    return bench_main(["--dataset", "digits", "--limit", "60", "--methods", "linear", "--seeds", "1",
                       "--time-bins", "3", "--cache-dir", str(cache), "--out", str(out), *extra])


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock until its stdin closes."""
    code = ("import sys; from spikeff.lock import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(finished, tmp_path, data, monkeypatch,
                                                                      capsys):
    from spikeff.lock import LOCK_NAME

    _, cache, done = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    holder = hold_lock(out)
    try:
        expected = (f"spikeff: error: {out} is in use by another spikeff process (pid {holder.pid}, lock "
                    f"{out / LOCK_NAME}); wait for it to finish or stop it, or choose another folder")
        assert train(out, data, cache, "--overwrite") == 2  # train
        assert error_line(capsys.readouterr().err) == expected
        assert bench(out, tmp_path / "c") == 2  # the bench
        assert error_line(capsys.readouterr().err) == expected.replace("spikeff:", "spikeff-bench:", 1)
    finally:
        release(holder)
    assert {p.name: sha256(p) for p in out.iterdir()} == before  # the lock went with its holder
    run = interrupted(tmp_path / "i", data, monkeypatch, capsys)  # --resume of a run that is still going
    state = sha256(run / "train_state.pt")
    holder = hold_lock(run)
    try:
        assert main(["train", "--resume", str(run)]) == 2
        assert f"{run} is in use by another spikeff process (pid {holder.pid}" in error_line(capsys.readouterr().err)
    finally:
        release(holder)
    assert sha256(run / "train_state.pt") == state and sorted(p.name for p in run.iterdir()) == ["train_state.pt"]


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
    from spikeff.lock import LOCK_NAME

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid}\n")
    assert digits_train(out, tmp_path / "cache") == 0
    err = capsys.readouterr().err
    assert (f"spikeff: warning: {out / LOCK_NAME}: taking over the lock of process {dead.pid}, which no longer runs"
            in err.splitlines())
    assert (out / "model.pt").exists() and not (out / LOCK_NAME).exists()


def test_bench_resume_refuses_results_of_other_settings_naming_them(tmp_path, capsys):
    out, cache = tmp_path / "b", tmp_path / "c"
    assert bench(out, cache) == 0
    before = {p.name: sha256(p) for p in out.iterdir()}
    capsys.readouterr()
    assert bench(out, cache, "--channels", "4,4", "--time-bins", "2", "--resume") == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff-bench: error: {out / 'raw_linear.json'} was made with other settings: --time-bins 3 (now 2), "
        "--channels [64, 128] (now [4, 4]); --resume reuses results of the same settings only (pass --overwrite "
        "to replace them, or choose another --out)")
    assert {p.name: sha256(p) for p in out.iterdir()} == before
    assert bench(out, cache, "--resume") == 0  # the same settings: reused
    assert bench(out, cache, "--time-bins", "2", "--resume", "--overwrite") == 0
    assert json.loads((out / "report.json").read_text())["data"]["time_bins"] == 2


def test_export_refuses_an_existing_file_unless_overwrite(finished, tmp_path, capsys):
    _, _, run = finished
    target = tmp_path / "g.nir"
    assert main(["export", str(run / "model.pt"), "--out", str(target)]) == 0
    good = sha256(target)
    capsys.readouterr()
    assert main(["export", str(run / "model.pt"), "--out", str(target), "--dt", "2e-3"]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: {target} already exists; pass --overwrite to replace it, or choose another --out")
    assert sha256(target) == good
    assert main(["export", str(run / "model.pt"), "--out", str(target), "--dt", "2e-3", "--overwrite"]) == 0
    assert sha256(target) != good and sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]


def test_zero_epochs_is_refused_not_labelled_trained(tmp_path, capsys):
    out = tmp_path / "run"
    assert digits_train(out, tmp_path / "cache", "--epochs", "0") == 2
    assert error_line(capsys.readouterr().err) == (
        "spikeff: error: --epochs must be >= 1, got 0: with no layer epoch the network stays untrained (its "
        "untrained accuracy is the control row, reported by default)")
    assert not out.exists()


def test_data_info_check_flags_wrapped_dvs_timestamps(tmp_path, capsys):
    d = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    d.mkdir(parents=True)
    for label in range(3):
        np.save(d / f"{label}.npy", np.array([[1, 2, 1, 0], [1, 3, 0, 5], [2, 2, 1, 9]], np.int32))
    t = np.arange(0, 600, 20)  # 0..580 ms saved as uint8: wraps at 256
    wrapped = np.stack([t % 100, t % 90, t % 2, t], axis=1).astype(np.uint8)
    np.save(d / "3.npy", wrapped)
    argv = ["data", "info", "--dataset", "dvsgesture", "--data-dir", str(tmp_path), "--cache-dir",
            str(tmp_path / "cache"), "--check"]
    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    i = out.index("check     decoded 4 files: 1 bad")
    assert out[i + 1:] == [f"  {d / '3.npy'}: timestamps go backwards at 2 events (first: event 13, 240 -> 4 ms; "
                           "uint8 timestamps); a wrapped or unsorted time counter"]


def test_eval_says_when_data_dir_does_not_hold_the_models_dataset(finished, tmp_path, capsys):
    from spikeff.network import NetworkConfig, SpikingNet

    _, cache, run = finished
    other = tmp_path / "other"
    (other / "DVSGesture").mkdir(parents=True)
    assert main(["eval", str(run / "model.pt"), "--data-dir", str(other), "--cache-dir", str(cache)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: --data-dir {other} holds no NMNIST/ folder; {run / 'model.pt'} was trained on nmnist "
        f"(expected {other / 'NMNIST'})")
    digits = tmp_path / "digits.pt"
    save_checkpoint(digits, SpikingNet(NetworkConfig(input_shape=(2, 34, 34), n_classes=10, conv_channels=(2,))),
                    {"config": {"data": {"dataset": "digits", "time_bins": 2}}})
    assert main(["eval", str(digits), "--data-dir", str(other)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"spikeff: error: --data-dir {other}: {digits} was trained on digits, which is built in and read from no "
        "data folder; drop --data-dir")


def test_frames_too_large_for_memory_are_refused_before_decoding(tmp_path, capsys):
    from spikeff.data.frames import check_frame_memory

    out = tmp_path / "run"
    assert digits_train(out, tmp_path / "cache", "--time-bins", "100000000") == 2
    line = error_line(capsys.readouterr().err)
    assert re.fullmatch(r"spikeff: error: digits train: frames of \d+ samples x 100000000 x 2 x 34 x 34 \(int16\) "
                        r"need about [0-9.e+]+ GiB to decode, more than the [0-9.e+]+ GiB of memory available; "
                        r"use fewer --time-bins \(or --limit\)", line), line
    assert not out.exists()
    assert check_frame_memory("x", 10, (4, 2, 8, 8), available=2 * 10 * 512 * 2) == 20480  # just fits
    with pytest.raises(Exception, match="need about"):
        check_frame_memory("x", 10, (4, 2, 8, 8), available=20479)


@pytest.mark.parametrize("content,why", [
    (os.urandom(256), "not a PyTorch file (unrecognised content)"),
    (b'{"format": "spikeff-model"}', "JSON or other text, not a PyTorch file"),
    (None, "a PyTorch archive cut short (truncated or corrupt)"),
    (b"", "empty file"),
])
def test_unreadable_model_and_state_files_are_named_in_one_line_of_our_own(content, why, finished, tmp_path,
                                                                         capsys):
    _, _, run = finished
    if content is None:
        content = (run / "model.pt").read_bytes()[:1000]
    model = tmp_path / "model.pt"
    model.write_bytes(content)
    assert main(["eval", str(model)]) == 2
    err = capsys.readouterr().err
    assert error_line(err) == f"spikeff: error: {model} is not a readable spikeff model checkpoint: {why}"
    assert "weights_only" not in err
    state = tmp_path / "r" / "train_state.pt"
    state.parent.mkdir()
    state.write_bytes(content)
    kept = sha256(state)
    assert main(["train", "--resume", str(state.parent)]) == 2
    err = capsys.readouterr().err
    assert error_line(err) == f"spikeff: error: {state} is not a readable spikeff run state: {why}"
    assert "weights_only" not in err and sha256(state) == kept


def test_sigterm_during_train_is_one_line_keeps_the_state_and_exits_143(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikeff", "train", *DIGITS, "--cache-dir", str(tmp_path / "cache"),
         "--out", str(out), "--epochs", "200"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_first_epoch(proc, out / "train_state.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert error_line(err) == (
        f"spikeff: error: terminated (SIGTERM); the run state is kept; resume with: spikeff train --resume {out}")
    assert sorted(p.name for p in out.iterdir()) == ["train_state.pt"]  # the lock released


def test_bench_refuses_a_split_too_small_for_the_probe_cross_validation(tmp_path, capsys):
    from spikeff.bench import main as bench_main

    out = tmp_path / "b"
    assert bench_main(["--dataset", "digits", "--limit", "20", "--quick", "--methods", "spikeff", "--no-isolate",
                       "--cache-dir", str(tmp_path / "c"), "--out", str(out)]) == 2
    assert error_line(capsys.readouterr().err) == (
        "spikeff-bench: error: the training split is too small for spikeff's layer probes: their 3-fold "
        "cross-validation needs 3 training samples of a class, and no class has more than 2 (20 training samples "
        "for 10 classes); raise --limit")
    assert not out.exists()
