"""Where a number came from: the commit and the device that every result file records."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["REPO", "git_commit", "device_name"]

REPO = Path(__file__).resolve().parents[1]


def git_commit(repo: str | Path = REPO) -> dict[str, Any]:
    """Short commit hash of ``repo`` and whether tracked files differ from it.

    Parameters
    ----------
    repo : a folder in a git work tree.

    Returns
    -------
    dict : ``commit`` (``"unknown"`` without git) and ``dirty`` (``None`` when unknown).
    """

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def device_name(device: str | torch.device) -> str:
    """GPU name, or the CPU model with the core count.

    Parameters
    ----------
    device : the device a run uses.

    Returns
    -------
    str
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"
