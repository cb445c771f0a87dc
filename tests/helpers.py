"""Shared test helpers."""

import os
import signal
import subprocess
import time
from collections.abc import Callable
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
