"""Planning a load: which samples make the train and test sets, and where their frames are cached.

The test set is the dataset's own Test split when there is one on disk, else a seeded stratified
share of the one split that exists. ``tune`` then splits the *training* set the same way and makes
its held-out share the test set, so that settings can be chosen without reading the reported split.
``limit`` then keeps a seeded, class-balanced subset of each (one size for both, or one per split).
Nothing is decoded here: :mod:`spikeff.data.pipeline` builds the frames, :mod:`spikeff.data.describe`
reports on the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import CacheEntry, default_cache_dir
from .catalog import default_data_dir, get_spec
from .errors import DataError
from .model import DatasetSpec, Sample, Source, labels_of
from .selection import balanced_subset, stratified_split

_SPLIT_STREAM, _LIMIT_STREAM, _TUNE_STREAM = 1, 2, 3  # independent seeded streams: split, limit, tuning share


@dataclass(frozen=True)
class Plan:
    """The samples of one load and how they become frames."""

    spec: DatasetSpec
    source: Source
    samples: dict[str, list[Sample]]  # "train"/"test"
    test_name: str
    train_name: str
    n_time_bins: int
    resolution: int
    cache_root: Path

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(P, H, W)`` of one time bin."""
        w, h, p = self.spec.frame_sensor(self.resolution)
        return (p, h, w)


def make_plan(
    name: str,
    data_dir: str | Path | None,
    n_time_bins: int | None,
    seed: int,
    val_fraction: float,
    cache_dir: str | Path | None,
    download: bool,
    limit: int | Sequence[int] | None,
    resolution: int | None,
    tune: bool = False,
) -> Plan:
    """Find a dataset's samples and choose its train and test sets.

    Parameters
    ----------
    name, data_dir, n_time_bins, seed, val_fraction, cache_dir, download, limit, resolution, tune
        As for :func:`spikeff.data.load_splits`.

    Returns
    -------
    Plan

    Raises
    ------
    DataError
        For arguments out of range, missing or malformed data, or an empty split.
    """
    spec = get_spec(name)
    T = time_bins(spec, n_time_bins)
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    limits = split_limits(limit)
    res = spec.resolution(resolution)
    source = open_source(spec, data_dir, download)
    found = source.splits
    if "train" in found and "test" in found:
        samples = {"train": found["train"], "test": found["test"]}
        train_name, test_name = source.split_folders["train"], "test"
    else:
        (only,) = found
        folder = source.split_folders[only]
        samples = _hold_out(found[only], val_fraction, np.random.default_rng([seed, _SPLIT_STREAM]))
        pct = f"{val_fraction * 100:g}%"
        test_name = f"validation (seeded {pct} of {folder}, seed {seed})"
        train_name = f"the other {(1 - val_fraction) * 100:g}% of {folder}"
        if only == "test":
            train_name += f" (no {source.split_folders['train']} split found)"
    if tune:
        samples = _hold_out(samples["train"], val_fraction, np.random.default_rng([seed, _TUNE_STREAM]))
        test_name = (f"tuning share (seeded {val_fraction * 100:g}% of the training set, seed {seed}; "
                     f"{test_name} not read)")
        train_name = f"the other {(1 - val_fraction) * 100:g}% of the training set ({train_name})"
    for split, chosen in samples.items():
        if not chosen:
            raise DataError(
                f"{where(spec, source)}: the {split} split is empty; found only "
                f"{sum(len(v) for v in found.values())} samples, need at least 2"
            )
    for k, (split, n) in enumerate(zip(("train", "test"), limits)):
        if n is not None:
            pool = samples[split]
            pick = balanced_subset(labels_of(pool), n, np.random.default_rng([seed, _LIMIT_STREAM, k]))
            samples[split] = [pool[i] for i in pick]
    return Plan(
        spec=spec,
        source=source,
        samples=samples,
        test_name=test_name,
        train_name=train_name,
        n_time_bins=T,
        resolution=res,
        cache_root=default_cache_dir(cache_dir),
    )


def split_limits(limit: int | Sequence[int] | None) -> tuple[int | None, int | None]:
    """The most samples of the train and of the test set: one number for both, or ``(train, test)``.

    Parameters
    ----------
    limit : ``None`` (all), an int, or a sequence of one or two ints.

    Returns
    -------
    tuple
        ``(train, test)``, each ``None`` or at least 1.

    Raises
    ------
    DataError : more than two numbers, or a number below 1.
    """
    if limit is None:
        return None, None
    sizes = (int(limit),) if isinstance(limit, (int, np.integer)) else tuple(int(n) for n in limit)
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise DataError(f"limit must be one number >= 1 for both splits or two (train, test), got {limit}")
    return (sizes[0], sizes[-1])


def limit_rule(limit: int | Sequence[int] | None) -> int | list[int] | None:
    """``limit`` as a run records it: one int when both splits share it (the form older runs recorded)."""
    train, test = split_limits(limit)
    return train if train == test else [train, test]


def _hold_out(pool: list[Sample], fraction: float, rng: np.random.Generator) -> dict[str, list[Sample]]:
    """``pool`` as train and test sets: a stratified ``fraction`` of each class is held out."""
    keep, held = stratified_split(labels_of(pool), fraction, rng)
    return {"train": [pool[i] for i in keep], "test": [pool[i] for i in held]}


def time_bins(spec: DatasetSpec, n_time_bins: int | None) -> int:
    """``n_time_bins``, or the dataset's default when ``None``; checked to be at least 1.

    Parameters
    ----------
    spec : the dataset.
    n_time_bins : the time bins asked for, or ``None``.

    Returns
    -------
    int

    Raises
    ------
    DataError : fewer than 1 time bin.
    """
    T = spec.default_time_bins if n_time_bins is None else int(n_time_bins)
    if T < 1:
        raise DataError(f"n_time_bins must be >= 1, got {n_time_bins}")
    return T


def open_source(spec: DatasetSpec, data_dir: str | Path | None, download: bool) -> Source:
    """The samples of ``spec`` under ``data_dir`` (default :func:`default_data_dir`)."""
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return spec.open_source(spec, root, download)


def where(spec: DatasetSpec, source: Source) -> str:
    """The dataset and where its samples were found, for messages."""
    return f"{spec.name} ({source.origin})"


def cache_entry(plan: Plan, split: str, kind: str) -> CacheEntry:
    """The cache entry of one split's ``"frames"`` or preprocessed ``"events"``."""
    pre = plan.spec.preprocess(plan.resolution)
    payload = {
        "dataset": plan.spec.name,
        "kind": kind,
        "pre": repr(pre),
        "frames": repr(plan.spec.to_frames(plan.n_time_bins, plan.resolution)) if kind == "frames" else None,
        "samples": [(s.key, s.label) for s in plan.samples[split]],
    }
    return CacheEntry.create(plan.cache_root, plan.spec.name, split, kind, payload)
