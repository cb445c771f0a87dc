"""Timed mid-epoch run states: a run stopped inside a pass resumes at the next batch, exactly."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import interrupt_mid_pass, mid_pass, resume_and_compare
from test_network_trainer import tiny_batches, tiny_net

from spikeff.cli import main
from spikeff.config import EvalConfig, RunConfig, RuntimeConfig
from spikeff.data import load_splits
from spikeff.experiment import STATE_FORMAT, STATE_VERSION, load_state, train_and_evaluate
from spikeff.network import NetworkConfig
from spikeff.trainer import LayerTrainer, TrainConfig, TrainingError


class Stop(Exception):
    """Stands in for a kill."""


class FakeClock:
    """One second per reading. With ``stop_at`` it stops the run at the first reading after a
    save that left a mid-pass state in ``stop_at`` (after the first epoch), as a kill would."""

    def __init__(self, stop_at: Path | None = None) -> None:
        self.t, self.stop_at = 0, stop_at

    def __call__(self) -> float:
        if self.stop_at is not None and self.stop_at.exists() and mid_pass(load_state(self.stop_at)):
            raise Stop
        self.t += 1
        return float(self.t)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {augment: load_splits("digits", cache_dir=cache, time_bins=4, limit=40, augment=augment)
            for augment in (False, True)}


def _run(splits, schedule, num_workers=0, checkpoint_seconds=0.0, **kw):
    cfg = RunConfig(
        network=NetworkConfig(conv_channels=(4,), hidden=(6,)),
        train=TrainConfig(epochs=2, trials=2, schedule=schedule, batch_size=8),
        eval=EvalConfig(readout_epochs=1, control=False), seed=1,
        runtime=RuntimeConfig(num_workers=num_workers, checkpoint_minutes=checkpoint_seconds / 60))
    return train_and_evaluate(splits, cfg, **kw)


# Augmented data: an epoch-aware sampler; workers: persistent, seeded once from the loader's generator.
@pytest.mark.parametrize("schedule,augment,workers", [("greedy", False, 0), ("simultaneous", True, 1)])
def test_mid_pass_state_resumes_exactly(digits, tmp_path, schedule, augment, workers):
    splits = digits[augment]
    ref = _run(splits, schedule, workers)  # no state file, no timed saves
    state_path = tmp_path / "state.pt"
    with pytest.raises(Stop):  # a save after every 3rd batch (5 batches a pass)
        _run(splits, schedule, workers, state_path=state_path, checkpoint_seconds=2.5,
             clock=FakeClock(stop_at=state_path))
    state = load_state(state_path)
    assert state["version"] == STATE_VERSION and state["phase"] == "layers"
    position = state["trainer"]["position"]
    assert position["batches"] == 3 and position["sums"] and state["trainer"]["epoch"] == 1

    res = _run(splits, schedule, workers, state_path=state_path, resume=state, checkpoint_seconds=2.5,
               clock=FakeClock())
    assert res.metrics["test_accuracy"] == ref.metrics["test_accuracy"]
    assert res.metrics["layer_rates"] == ref.metrics["layer_rates"]
    for a, b in zip(ref.net.state_dict().values(), res.net.state_dict().values()):
        assert torch.equal(a, b)
    strip = [[replace(rec, seconds=0.0) for rec in h] for h in (ref.history, res.history)]
    assert strip[0] == strip[1]  # per-epoch means include the batches done before the stop


def test_timed_saves_do_not_change_the_run(digits, tmp_path):
    ref = _run(digits[False], "greedy")
    res = _run(digits[False], "greedy", state_path=tmp_path / "s.pt", checkpoint_seconds=1e-9)
    assert res.metrics["test_accuracy"] == ref.metrics["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(ref.net.state_dict().values(), res.net.state_dict().values()))


def test_resume_after_the_readout_reads_the_same_features(digits, tmp_path):
    # The state saved before the control holds the trained net's features, so the label-efficient
    # readouts of a run resumed there are those of the uninterrupted run.
    cfg = RunConfig(network=NetworkConfig(conv_channels=(4,)), train=TrainConfig(epochs=1, trials=2, batch_size=8),
                    eval=EvalConfig(readout_epochs=1, label_draws=2), seed=1)
    ref = train_and_evaluate(digits[False], cfg, state_path=tmp_path / "s.pt")
    state = load_state(tmp_path / "s.pt")
    assert state["phase"] == "control" and len(state["result"]["features"]) == 2
    res = train_and_evaluate(digits[False], cfg, resume=state)

    def strip(le):
        return json.dumps({**le, "seconds": 0}, sort_keys=True)
    assert strip(res.metrics["label_efficiency"]) == strip(ref.metrics["label_efficiency"])
    assert res.metrics["control_accuracy"] == ref.metrics["control_accuracy"]


def test_negative_interval_is_refused(digits):
    with pytest.raises(ValueError, match="checkpoint_minutes must be >= 0"):
        _run(digits[False], "greedy", checkpoint_seconds=-1.0)


def test_trainer_position_round_trip_and_short_data():
    net = tiny_net()
    trainer = LayerTrainer(net, TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(0))
    seen = []
    trainer.fit(tiny_batches(3), on_batch=lambda: seen.append(trainer.state_dict()["position"]["batches"]))
    assert seen == [1, 2, 3] and trainer.batches_done == 0
    state = trainer.state_dict()
    state["position"] = {"batches": 5, "sums": {"head/loss": 1.0}, "seconds": 0.0}
    state["epoch"] = 0
    trainer.load_state_dict(state)
    assert trainer.batches_done == 5
    with pytest.raises(TrainingError, match="at batch 5 of a pass.*only 3 batches"):
        trainer.fit(tiny_batches(3))


def test_newer_state_version_is_refused(tmp_path):
    torch.save({"format": STATE_FORMAT, "version": 99}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="newer spikeff"):
        load_state(tmp_path / "s.pt")


def test_negative_checkpoint_minutes_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--checkpoint-minutes", "-1"]) == 2
    assert "checkpoint_minutes must be >= 0" in capsys.readouterr().err


def _train_cmd(out, cache, *extra):
    return [sys.executable, "-m", "spikeff", "train", "--dataset", "digits", "--cache-dir", str(cache),
            "--out", str(out), "--limit", "60", "--epochs", "3", "--readout-epochs", "1",
            "--channels", "4,4", "--trials", "2", "--time-bins", "4", "--batch-size", "4",
            "--schedule", "greedy", "--no-control", "--scan", "eager", *extra]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL right after a mid-epoch save; the resumed run ends with the uninterrupted run's numbers."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cache, ref, run = tmp_path / "cache", tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_cmd(ref, cache), check=True, env=env, capture_output=True)

    # A save after every batch (0.0001 min = 6 ms); the default (10 min) never fires in the reference run.
    proc = subprocess.Popen(_train_cmd(run, cache, "--checkpoint-minutes", "0.0001"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "train_state.pt"
    saved = interrupt_mid_pass(proc, lambda: [proc.pid], state)
    assert saved["trainer"]["position"]["batches"] > 0
    assert not (run / "model.pt").exists()

    mb = resume_and_compare(run, ref, env, "batches into pass")
    ma = json.loads((ref / "metrics.json").read_text())
    assert [h["layer2/ed_consistency"] for h in ma["history"]] == [h["layer2/ed_consistency"] for h in mb["history"]]
    assert not state.exists() and not list(run.glob(".*.tmp"))

    ev = subprocess.run([sys.executable, "-m", "spikeff", "eval", str(run / "model.pt"), "--cache-dir", str(cache)],
                        env=env, capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr
    acc = mb["test_accuracy"]
    assert " ".join(f"{acc[m]:.4f}" for m in ("energy", "average", "deterministic")) in " ".join(ev.stdout.split())
