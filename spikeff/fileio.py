"""Atomic file writes: a temp file in the same folder, then ``os.replace``; nothing half-written is left.

Files are created with the permissions the umask allows (``0o666 & ~umask``), as ``open`` would,
not ``mkstemp``'s 0600. A failed write raises ``OSError("cannot write PATH: cause")``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json", "staged", "remove_stale_temps", "temp_glob"]


def temp_glob(name: str) -> str:
    """The pattern of the temp files that :func:`atomic_write` leaves for ``name`` when killed.

    Parameters
    ----------
    name : the target file's name (no folder).

    Returns
    -------
    str, a glob pattern.
    """
    return f".{name}.*.tmp"


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _cause(exc: BaseException, folder: Path) -> str:
    """Why a write failed, in words: the OS reason, or a full disk behind a library's own message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        full = shutil.disk_usage(folder).free < 2**20
    except OSError:
        full = False
    text = f"{type(exc).__name__}: {exc}"
    return f"{os.strerror(errno.ENOSPC)} ({text})" if full else text


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; move it onto ``path`` only if the block succeeds.

    On any exception the temp file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : the target file.

    Returns
    -------
    A context manager yielding the temp path.

    Raises
    ------
    OSError : the temp file cannot be created.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _file_mode())
        os.close(fd)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(fileobj)`` into a temp file in the same folder, then rename.

    Parameters
    ----------
    path : the target file.
    write : writes the content to the open file object.
    mode : the temp file's open mode (``"wb"`` or ``"w"``).

    Raises
    ------
    OSError : ``cannot write PATH: cause``; ``path`` is left as it was.
    """
    path = Path(path)
    with staged(path) as tmp:
        try:
            with open(tmp, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError, ValueError) as e:  # torch and numpy wrap a short write in their own types
            raise OSError(f"cannot write {path}: {_cause(e, path.parent)}") from e


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temp files that interrupted writes of ``names`` left in ``folder``; return them.

    Only for folders with one writer (a run folder): another writer's temp file would go too.

    Parameters
    ----------
    folder : the folder to clean.
    names : the target files' names.

    Returns
    -------
    list of Path, the files removed.
    """
    gone = []
    for name in names:
        for stale in Path(folder).glob(temp_glob(name)):
            stale.unlink(missing_ok=True)
            gone.append(stale)
    return gone


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic, pretty-printed JSON.

    Parameters
    ----------
    path : the target file.
    obj : JSON-serialisable.

    Raises
    ------
    OSError : as :func:`atomic_write`.
    """
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=False) + "\n"), mode="w")
