"""Shared test helpers (fixtures are in conftest.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def real_data_dir() -> Path:
    """The shared real data: ``$SPIKEFF_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SPIKEFF_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def nmnist_bytes(x, y, t, p) -> bytes:
    """Encode events in N-MNIST's 5-byte format (x, y, p|t[22:16], t[15:8], t[7:0])."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255], axis=1)
    return raw.astype(np.uint8).tobytes()


def write_nmnist(root: Path, n_per_class: int = 21, classes=(0, 1), split: str = "Train", seed: int = 0) -> Path:
    """Seeded fake N-MNIST files in tonic's layout under ``root``."""
    rng = np.random.default_rng(seed)
    for c in classes:
        d = root / "NMNIST" / split / str(c)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            n = int(rng.integers(20, 60))
            t = np.sort(rng.integers(0, 300_000, n))
            (d / f"{c}{i:04d}.bin").write_bytes(
                nmnist_bytes(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))
            )
    return root


def toy_batches(n_batches: int = 4, b: int = 8, t: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded two-class event batches ``(T, B, 2, 8, 8)``: class 0 fires in the left half, class 1 in the right."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.arange(b) % 2
        x = (torch.rand(t, b, 2, 8, 8, generator=g) < 0.5).float()
        mask = torch.zeros(b, 1, 1, 8)
        mask[y == 0, ..., :4] = 1
        mask[y == 1, ..., 4:] = 1
        out.append((x * mask, y))
    return out
