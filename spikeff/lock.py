"""One writer per run folder: an advisory lock file that holds the owner's process id.

``spikeff train`` (new or ``--resume``) and ``spikeff-bench`` hold :data:`LOCK_NAME` in their output
folder while they run. A second writer is refused with a one-line ``FolderLocked`` naming the
holder; a lock left by a process that no longer runs (a kill, a crash) is taken over with a warning.
The lock is advisory: it guards spikeff's own commands, not other programs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["LOCK_NAME", "FolderLocked", "folder_lock"]

LOCK_NAME = ".spikeff.lock"


class FolderLocked(ValueError):
    """Another running process holds the folder's lock."""


def _holder(path: Path) -> int | None:
    """The pid written in the lock file, ``None`` if the file is gone, ``-1`` if it is unreadable."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    return int(text) if text.isdigit() else -1


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _create(path: Path) -> bool:
    """Create the lock file holding this pid; ``False`` if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return True


@contextmanager
def folder_lock(folder: str | Path, what: str = "--out") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (the folder is created if missing, and removed again if
    the block leaves it empty).

    Parameters
    ----------
    folder : the output folder.
    what : how an unwritable folder is named, e.g. ``"--out"``.

    Returns
    -------
    A context manager yielding the lock file's path.

    Raises
    ------
    FolderLocked : another running process holds the lock.
    OSError : the folder or the lock file cannot be written.
    """
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot write to {what} {folder}: {e.strerror or e}") from None
    path = folder / LOCK_NAME
    for _ in range(3):  # a stale lock is removed, then created again; another process may win that race
        try:
            if _create(path):
                break
        except OSError as e:
            raise OSError(f"cannot write to {what} {folder}: {e.strerror or e}") from None
        pid = _holder(path)
        if pid is not None and _alive(pid):
            raise FolderLocked(f"{folder} is in use by another spikeff process (pid {pid}, lock {path}); wait for "
                               f"it to finish or stop it, or choose another folder")
        warnings.warn(f"{path}: taking over the lock of process {pid if pid and pid > 0 else '?'}, which no longer "
                      "runs", stacklevel=3)
        path.unlink(missing_ok=True)
    else:
        raise FolderLocked(f"{folder} is in use by another spikeff process (lock {path})")
    try:
        yield path
    finally:
        if _holder(path) == os.getpid():
            path.unlink(missing_ok=True)
        if created:
            with suppress(OSError):  # only an empty folder goes
                folder.rmdir()
