"""Atomic file writes: a temp file in the same folder, then ``os.replace``; nothing half-written is left."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(fileobj)`` into a temp file in the same folder, then rename."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic, pretty-printed JSON."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=False) + "\n"), mode="w")
