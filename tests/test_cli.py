import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import resume_and_compare, wait_for_first_epoch

from spikeff.checkpoint import CheckpointError, load_checkpoint
from spikeff.cli import main
from spikeff.config import RunConfig, from_dict
from spikeff.experiment import load_state

TINY = ["--limit", "40", "--epochs", "1", "--readout-epochs", "1", "--channels", "4", "--trials", "2",
        "--time-bins", "4", "--batch-size", "16"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    rc = main(["train", "--dataset", "digits", "--cache-dir", str(root / "cache"), "--out", str(out), *TINY])
    assert rc == 0
    return root, out


def test_train_writes_metrics_and_checkpoint(run_dir, capsys):
    _, out = run_dir
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dataset", "test_accuracy", "control_accuracy", "epochs", "trials", "seed", "train_seconds"):
        assert key in metrics
    assert set(metrics["test_accuracy"]) == {"energy", "average", "deterministic"}
    assert metrics["dataset"] == "digits" and metrics["trials"] == 2
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["format"] == "spikeff-model"
    net, meta = load_checkpoint(out / "model.pt")
    assert meta["config"]["data"]["dataset"] == "digits"
    assert from_dict(RunConfig, metrics["config"]) == from_dict(RunConfig, meta["config"])
    assert len(net.layers) == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_eval_reproduces_training_metrics(run_dir, capsys):
    root, out = run_dir
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--cache-dir", str(root / "cache")]) == 0
    printed = capsys.readouterr().out
    acc = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert " ".join(f"{acc[m]:.4f}" for m in ("energy", "average", "deterministic")) in " ".join(printed.split())


def test_silent_layer_is_one_warning_line(run_dir, tmp_path, capsys):
    root, _ = run_dir
    argv = ["train", "--dataset", "digits", "--cache-dir", str(root / "cache"), "--out", str(tmp_path / "run"),
            *TINY, "--threshold", "50", "--no-control"]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "spikeff: warning: layer 1 is nearly silent in epoch 1: 0.0 spikes per input" in err
    assert "RuntimeWarning" not in err


def test_eval_trials_apply_to_test_and_are_kept_for_eval(run_dir, tmp_path, capsys):
    root, _ = run_dir
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--cache-dir", str(root / "cache"), "--out", str(out), *TINY,
            "--no-control"]
    assert main([*argv, "--eval-trials", "0"]) == 2
    assert "eval_trials must be >= 1" in capsys.readouterr().err
    assert main([*argv, "--eval-trials", "3"]) == 0
    assert "samples, 3 trials)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials"] == 2 and metrics["eval_trials"] == 3
    assert main(["eval", str(out / "model.pt"), "--cache-dir", str(root / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "3 trials" in printed
    assert " ".join(f"{metrics['test_accuracy'][m]:.4f}" for m in ("energy", "average")) in " ".join(printed.split())
    assert main(["eval", str(out / "model.pt"), "--cache-dir", str(root / "cache"), "--trials", "0"]) == 2
    assert "trials must be >= 1" in capsys.readouterr().err


def test_unwritable_out_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["train", "--dataset", "digits", "--out", str(blocker / "run"), *TINY])
    assert rc == 2
    assert "cannot write to --out" in capsys.readouterr().err


def test_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.ones(2)}, bogus)
    with pytest.raises(CheckpointError, match="not a spikeff model checkpoint"):
        load_checkpoint(bogus)
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    assert main(["eval", str(tmp_path / "junk.pt")]) == 2
    assert "not a readable spikeff model checkpoint" in capsys.readouterr().err


def test_trials_below_two_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--out", str(tmp_path / "r"), *TINY[:-6], "--trials", "1"])
    assert rc == 2
    assert "trials >= 2" in capsys.readouterr().err


def _train_cmd(out, cache, epochs):
    return [sys.executable, "-m", "spikeff", "train", "--dataset", "digits", "--cache-dir", str(cache),
            "--out", str(out), "--limit", "60", "--epochs", str(epochs), "--readout-epochs", "1",
            "--channels", "4,4", "--trials", "2", "--time-bins", "4", "--batch-size", "4",
            "--schedule", "greedy", "--no-control", "--scan", "eager"]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    """Kill a training process mid-run, resume it, and get the uninterrupted run's result."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cache = tmp_path / "cache"
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(ref, cache, 4), check=True, env=env, capture_output=True)

    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(run, cache, 4), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "train_state.pt"
    wait_for_first_epoch(proc, state)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.pt").exists()
    saved = load_state(state)
    assert saved["trainer"]["epoch"] >= 1  # no more than the interrupted epoch is lost

    resume_and_compare(run, ref, env, "resuming")
    assert not state.exists()


def test_resume_without_state_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no run state to resume" in capsys.readouterr().err


def test_quickstart_sets_its_sizes_and_given_options_win():
    from spikeff.cli import QUICKSTART, build_parser, new_run_config
    from spikeff.config import overrides

    argv = ["train", "--quickstart", "--epochs", "1", "--out", "x"]
    config = new_run_config(build_parser().parse_args(argv), argv)
    expected = overrides(RunConfig(), {**QUICKSTART, "train.epochs": 1})
    assert config == expected and config != RunConfig()
    plain = ["train", "--epochs", "1", "--out", "x"]
    assert new_run_config(build_parser().parse_args(plain), plain) == overrides(RunConfig(), {"train.epochs": 1})
