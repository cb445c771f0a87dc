"""Shared test helpers."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from spikeff.checkpoint import load_checkpoint
from spikeff.experiment import load_state


def wait_for_first_epoch(proc: subprocess.Popen, state: Path, timeout: float = 120.0) -> None:
    """Block until ``proc`` has written a run state with at least one finished epoch; fail if it ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and load_state(state)["trainer"]["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted; make it longer"


def mid_pass(state: dict) -> bool:
    """A run state inside a pass, after the first epoch."""
    return state["trainer"]["epoch"] >= 1 and state["trainer"].get("position", {}).get("batches", 0) > 0


def interrupt_mid_pass(
    proc: subprocess.Popen, pids: Callable[[], list[int]], state: Path, timeout: float = 120.0
) -> dict:
    """SIGKILL the processes ``pids()`` once ``state`` holds a mid-pass position after the first epoch.

    They are frozen (SIGSTOP) first and the file is read again, so the state that the kill
    leaves is known to be mid-pass; otherwise they go on (SIGCONT). Returns that state.
    """
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and mid_pass(load_state(state)):
            frozen = pids()
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            saved = load_state(state)
            if mid_pass(saved):
                for pid in frozen:
                    os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return saved
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("the run ended before a mid-pass save could be interrupted; make it longer")


def resume_and_compare(run: Path, ref: Path, env: dict, expect: str) -> dict:
    """``spikeff train --resume run``; its model and accuracies must equal the reference run's."""
    res = subprocess.run([sys.executable, "-m", "spikeff", "train", "--resume", str(run)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert expect in res.stdout
    a, _ = load_checkpoint(ref / "model.pt")
    b, _ = load_checkpoint(run / "model.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, run))
    assert ma["test_accuracy"] == mb["test_accuracy"]
    return mb
