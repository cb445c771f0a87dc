"""Shared test helpers."""

import subprocess
import time
from pathlib import Path

from spikeff.experiment import load_state


def wait_for_first_epoch(proc: subprocess.Popen, state: Path, timeout: float = 120.0) -> None:
    """Block until ``proc`` has written a run state with at least one finished epoch; fail if it ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and load_state(state)["trainer"]["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted; make it longer"
