"""On-disk cache of per-split arrays (frames or preprocessed events), one set of .npy per split.

A cache entry is ``<cache_dir>/<dataset>/<split>-<kind>-<key16>.json`` plus its ``.npy`` arrays.
The key hashes the cache format version, the dataset, every transform's parameters, T and the
identity (path, size, mtime) of every sample, so changed parameters or data never hit a stale
entry; the JSON (written last, atomically) repeats version and full key and is checked on load,
so an entry from an older version or a different build is rebuilt, never reused. It also records
each array's dtype, shape and SHA-256: an array that no longer matches (overwritten bytes, another
dtype or shape behind a valid header) is rebuilt with a warning, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write

CACHE_FORMAT_VERSION = 2  # 2: dtype, shape and checksum of every array
IN_MEMORY_LIMIT_BYTES = 2 * 2**30  # larger caches are memory-mapped instead of read into RAM


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$SPIKEFF_CACHE``, else ``~/.cache/spikeff``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPIKEFF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spikeff"


def unwritable_reason(directory: Path) -> str | None:
    """``None`` if files can be created in ``directory`` (created if needed), else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class CacheEntry:
    directory: Path
    stem: str
    key: str

    @classmethod
    def create(cls, root: Path, dataset: str, split: str, kind: str, payload: dict[str, Any]) -> CacheEntry:
        payload = {"format_version": CACHE_FORMAT_VERSION, **payload}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return cls(directory=root / dataset, stem=f"{split}-{kind}-{key[:16]}", key=key)

    @property
    def meta_path(self) -> Path:
        return self.directory / f"{self.stem}.json"

    def array_path(self, name: str) -> Path:
        return self.directory / f"{self.stem}.{name}.npy"

    def is_valid(self) -> bool:
        return self._read_meta() is not None

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format_version") != CACHE_FORMAT_VERSION or meta.get("key") != self.key:
            return None
        return meta

    def load(self, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and metadata, or ``None`` when absent, stale or unreadable (then rebuild)."""
        if not self.meta_path.exists():
            return None
        meta = self._read_meta()
        if meta is None:
            warnings.warn(
                f"{self.meta_path}: cache from another version or parameters; rebuilding", stacklevel=3
            )
            return None
        try:
            arrays = {n: np.load(self.array_path(n), mmap_mode="r") for n in names}
            if sum(a.nbytes for a in arrays.values()) <= IN_MEMORY_LIMIT_BYTES:
                arrays = {n: np.array(a) for n, a in arrays.items()}
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"{self.directory / self.stem}.*: unreadable cache ({exc}); rebuilding", stacklevel=3
            )
            return None
        for n, a in arrays.items():
            why = _mismatch(a, meta.get("arrays", {}).get(n))
            if why is not None:
                warnings.warn(f"{self.array_path(n)}: cache does not match its record ({why}); rebuilding",
                              stacklevel=3)
                return None
        return arrays, meta

    def save(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write every array, then the metadata, each via a temp file + ``os.replace``.

        On failure (``OSError`` naming the file and cause) the arrays written so far are removed.
        """
        try:
            for name, arr in arrays.items():
                atomic_write(self.array_path(name), lambda f, a=arr: np.save(f, a, allow_pickle=False))
            record = {n: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
                      for n, a in arrays.items()}
            meta = {**meta, "format_version": CACHE_FORMAT_VERSION, "key": self.key, "arrays": record}
            atomic_write(self.meta_path, lambda f: f.write(json.dumps(meta).encode()))
        except OSError:
            for name in arrays:
                self.array_path(name).unlink(missing_ok=True)
            raise


def _digest(a: np.ndarray) -> str:
    """SHA-256 of an array's bytes (C order), read in place (a memory-mapped array is not copied)."""
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


def _mismatch(a: np.ndarray, record: dict[str, Any] | None) -> str | None:
    """Why ``a`` is not the array that ``record`` describes, or ``None`` when it is."""
    if record is None:
        return "no record of this array"
    if a.dtype.str != record["dtype"]:
        return f"dtype {a.dtype.str}, recorded {record['dtype']}"
    if list(a.shape) != list(record["shape"]):
        return f"shape {tuple(a.shape)}, recorded {tuple(record['shape'])}"
    if _digest(a) != record["sha256"]:
        return "checksum differs: the file was changed"
    return None
