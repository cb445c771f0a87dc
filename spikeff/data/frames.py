"""What the pipeline hands to torch: datasets of frames, the decode step that makes them, and the
per-class counts of a pair of splits."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .model import BadSample, Sample, Source
from .transforms import EventAugment, ToFrameBins


class FrameDataset(Dataset):
    """Cached frames: item ``i`` is ``(FloatTensor (T, P, H, W), int label)``."""

    def __init__(self, frames: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> None:
        self.frames = frames
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.asarray(self.frames[self.rows[i]], dtype=np.float32)), int(self.labels[i])


class AugmentedEventDataset(Dataset):
    """Preprocessed events in memory, augmented and framed per item.

    Index with ``i`` (epoch 0) or ``(epoch, i)``; the draw is seeded by ``(seed, epoch, i)``.
    """

    epoch_aware = True

    def __init__(
        self,
        events: np.ndarray,
        offsets: np.ndarray,
        labels: np.ndarray,
        augment: EventAugment,
        to_frames: ToFrameBins,
        seed: int,
    ) -> None:
        self.events = events
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augment = augment
        self.to_frames = to_frames
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = item if isinstance(item, tuple) else (0, item)
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        ev = self.augment(np.asarray(self.events[self.offsets[i] : self.offsets[i + 1]]), rng)
        frames = self.to_frames(ev)
        return torch.from_numpy(frames.astype(np.float32)), int(self.labels[i])


class Decode(Dataset):
    """Read + transform one sample; runs in DataLoader workers while a cache is built.

    Item ``i`` is ``(i, events or frames)``, or ``(i, BadSample)`` for a sample that cannot be
    read. ``pre`` is the deterministic event transform, ``post`` the framing (``None``: keep the
    preprocessed events).
    """

    def __init__(self, source: Source, samples: Sequence[Sample], pre, post) -> None:
        self.source, self.samples, self.pre, self.post = source, samples, pre, post

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        try:
            events = self.source.read(self.samples[i])
        except BadSample as bad:
            return i, bad
        return i, self.finish(events)

    def finish(self, events: np.ndarray) -> np.ndarray:
        events = self.pre(events)
        return self.post(events) if self.post is not None else events


class Counts(dict):
    """``{"train": {class: n}, "test": {class: n}}``; ``str()`` gives a table."""

    def __init__(
        self, counts: Mapping[str, Mapping[int, int]], classes: Sequence[str], names: Mapping[str, str]
    ):
        super().__init__({k: dict(v) for k, v in counts.items()})
        self._classes = tuple(classes)
        self._names = dict(names)

    @classmethod
    def from_labels(cls, labels: Mapping[str, np.ndarray], classes: Sequence[str], test_name: str) -> Counts:
        """Count the labels of each split.

        Parameters
        ----------
        labels : mapping
            ``{"train": labels, "test": labels}``, integer class indices.
        classes : sequence of str
            The class names, in index order.
        test_name : str
            The test split's name; the table heads it "test", "tuning" (a share of the training set)
            or "validation".

        Returns
        -------
        Counts
        """
        return cls(
            {s: {k: int(n) for k, n in enumerate(np.bincount(y, minlength=len(classes)))} for s, y in labels.items()},
            classes,
            {"train": "train", "test": "test" if test_name == "test" else
             "tuning" if test_name.startswith("tuning") else "validation"},
        )

    def __str__(self) -> str:
        cols = list(self)
        width = max(len(c) for c in self._classes) + 2
        head = "class".ljust(width) + "".join(f"{self._names.get(c, c):>12}" for c in cols)
        lines = [head]
        for k, name in enumerate(self._classes):
            lines.append(f"{name:<{width}}" + "".join(f"{self[c].get(k, 0):>12}" for c in cols))
        lines.append("total".ljust(width) + "".join(f"{sum(self[c].values()):>12}" for c in cols))
        return "\n".join(lines)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_frame_memory(what: str, n_samples: int, frame_shape: Sequence[int], dtype: np.dtype | type = np.int16,
                       available: int | None = None) -> int:
    """Refuse to decode frames that cannot fit in memory; return the bytes they need.

    The decoded frames are held twice while they are stacked into one array, so the need is
    ``2 x samples x time bins x P x H x W x itemsize``.

    Parameters
    ----------
    what : the split, for the message (e.g. ``"nmnist train"``).
    n_samples : samples to decode.
    frame_shape : ``(T, P, H, W)``.
    dtype : the frames' dtype.
    available : bytes available (default: :func:`available_memory`; unknown skips the check).

    Returns
    -------
    int, the bytes needed.

    Raises
    ------
    DataError : the need exceeds the memory available.
    """
    one = int(np.prod(frame_shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    need = 2 * n_samples * one
    available = available_memory() if available is None else available
    if available is not None and need > available:
        shape = " x ".join(map(str, frame_shape))
        raise DataError(f"{what}: frames of {n_samples} samples x {shape} ({np.dtype(dtype).name}) need about "
                        f"{need / 2**30:.3g} GiB to decode, more than the {available / 2**30:.3g} GiB of memory "
                        "available; use fewer --time-bins (or --limit)")
    return need
