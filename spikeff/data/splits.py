"""The one pipeline: samples → events → tonic transforms → frames ``(T, 2, H, W)`` → torch.

``load_splits`` finds a dataset's samples, picks the train and test sets (the real Test split
when there is one, else a seeded stratified split of the split that exists), caches the frames
on disk and returns torch datasets.

Augmentation (``augment=True``, train only) works on events before framing, so the augmented
train split caches the *preprocessed events* (denoised, cropped, downsampled; T-independent)
instead of frames and frames them on the fly, in DataLoader workers when ``num_workers > 0``.
Its random draws are seeded by ``(seed, epoch, index)``; :func:`spikeff.data.make_loader` passes
the epoch along with each index, so epoch ``e`` is identical across runs and worker counts.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .cache import CacheEntry, default_cache_dir, unwritable_reason
from .errors import DataError
from .registry import BadSample, DatasetSpec, Sample, Source, default_data_dir, get_spec
from .transforms import EventAugment, ToFrameBins

MAX_BAD_FRACTION = 0.05
_SPLIT_STREAM, _LIMIT_STREAM = 1, 2  # independent seeded streams: split, then limit


# ----------------------------------------------------------------------------- seeded selection


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)``; ``round(fraction * N)`` held out, spread over classes.

    Each class gets ``floor(fraction * n_c)``; the remaining slots go to the classes with the
    largest remainders (ties in a seeded order), so tiny classes are handled sensibly.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    n_held = round(fraction * len(labels))
    if 0 < fraction and len(labels) > 1:
        n_held = min(max(n_held, 1), len(labels) - 1)
    exact = np.array([fraction * np.sum(labels == c) for c in classes])
    quota = np.floor(exact).astype(int)
    spare = n_held - quota.sum()
    if spare > 0:
        tiebreak = rng.permutation(len(classes))
        order = np.lexsort((tiebreak, -(exact - quota)))
        quota[order[:spare]] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return keep_idx, held_idx


def balanced_subset(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` samples, as class-balanced as possible, seeded."""
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[rng.permutation(idx)] = np.arange(len(idx))  # round-robin position inside the class
    order = np.lexsort((rng.permutation(len(labels)), rank))
    return np.sort(order[:limit])


# ----------------------------------------------------------------------------- torch datasets


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


class _Decode(Dataset):
    """Read + transform one sample; runs in DataLoader workers while a cache is built."""

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


# ----------------------------------------------------------------------------- results


class Counts(dict):
    """``{"train": {class: n}, "test": {class: n}}``; ``str()`` gives a table."""

    def __init__(
        self, counts: Mapping[str, Mapping[int, int]], classes: Sequence[str], names: Mapping[str, str]
    ):
        super().__init__({k: dict(v) for k, v in counts.items()})
        self._classes = tuple(classes)
        self._names = dict(names)

    def __str__(self) -> str:
        cols = list(self)
        width = max(len(c) for c in self._classes) + 2
        head = "class".ljust(width) + "".join(f"{self._names.get(c, c):>12}" for c in cols)
        lines = [head]
        for k, name in enumerate(self._classes):
            lines.append(f"{name:<{width}}" + "".join(f"{self[c].get(k, 0):>12}" for c in cols))
        lines.append("total".ljust(width) + "".join(f"{sum(self[c].values()):>12}" for c in cols))
        return "\n".join(lines)


@dataclass(frozen=True)
class Splits:
    """Train and test datasets of one dataset, plus where they came from."""

    spec: DatasetSpec
    train: Dataset
    test: Dataset
    n_time_bins: int
    frame_shape: tuple[int, int, int]
    test_name: str
    train_name: str
    counts: Counts
    origin: str
    skipped: tuple[tuple[str, str], ...] = ()
    cache: Mapping[str, str] = field(default_factory=dict)
    augment: bool = False
    seed: int = 0
    limit: int | None = None
    manifest: Mapping[str, object] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return self.spec.n_classes

    def summary(self) -> str:
        """A few lines: source, splits and counts per class, skipped files, cache state."""
        lines = [
            (
                f"dataset   {self.spec.name}: {self.spec.title}, sensor {'x'.join(map(str, self.spec.sensor_size))}, "
                f"{self.n_classes} classes"
            ),
            f"source    {self.origin}",
            f"frames    (T={self.n_time_bins}, {', '.join(map(str, self.frame_shape))}) float32 event counts per bin",
            f"train     {self.train_name}: {len(self.train)} samples"
            + (f" (augmented on the fly, seed {self.seed})" if self.augment else ""),
            f"test set  {self.test_name}: {len(self.test)} samples",
        ]
        if self.limit is not None:
            lines.append(f"limit     at most {self.limit} samples per split (seeded, class-balanced)")
        lines.append(
            f"skipped   {len(self.skipped)} unreadable files"
            + "".join(f"\n            {f}: {why}" for f, why in self.skipped[:10])
            + ("\n            ..." if len(self.skipped) > 10 else "")
        )
        for split, state in self.cache.items():
            lines.append(f"cache     {split}: {state}")
        lines.append(str(self.counts))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Plan:
    spec: DatasetSpec
    source: Source
    samples: dict[str, list[Sample]]  # "train"/"test"
    test_name: str
    train_name: str
    n_time_bins: int
    resolution: int
    cache_root: Path


def _plan(
    name: str,
    data_dir: str | Path | None,
    n_time_bins: int | None,
    seed: int,
    val_fraction: float,
    cache_dir: str | Path | None,
    download: bool,
    limit: int | None,
    resolution: int | None,
) -> _Plan:
    spec = get_spec(name)
    T = spec.default_time_bins if n_time_bins is None else int(n_time_bins)
    if T < 1:
        raise DataError(f"n_time_bins must be >= 1, got {n_time_bins}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    res = spec.resolution(resolution)
    source = _open(spec, data_dir, download)
    found = source.splits
    if "train" in found and "test" in found:
        samples = {"train": found["train"], "test": found["test"]}
        train_name, test_name = source.split_folders["train"], "test"
        if spec.name == "digits":
            train_name, test_name = "train (fixed 80% of sklearn digits)", "test"
    else:
        (only,) = found
        folder = source.split_folders[only]
        pool = found[only]
        keep, held = stratified_split(
            np.array([s.label for s in pool]), val_fraction, np.random.default_rng([seed, _SPLIT_STREAM])
        )
        samples = {"train": [pool[i] for i in keep], "test": [pool[i] for i in held]}
        pct = f"{val_fraction * 100:g}%"
        test_name = f"validation (seeded {pct} of {folder}, seed {seed})"
        train_name = f"the other {(1 - val_fraction) * 100:g}% of {folder}"
        if only == "test":
            train_name += f" (no {source.split_folders['train']} split found)"
    for split, chosen in samples.items():
        if not chosen:
            raise DataError(
                f"{_where(spec, source)}: the {split} split is empty; found only "
                f"{sum(len(v) for v in found.values())} samples, need at least 2"
            )
    if limit is not None:
        for k, split in enumerate(("train", "test")):
            pool = samples[split]
            pick = balanced_subset(
                np.array([s.label for s in pool]), limit, np.random.default_rng([seed, _LIMIT_STREAM, k])
            )
            samples[split] = [pool[i] for i in pick]
    return _Plan(
        spec=spec,
        source=source,
        samples=samples,
        test_name=test_name,
        train_name=train_name,
        n_time_bins=T,
        resolution=res,
        cache_root=default_cache_dir(cache_dir),
    )


def _open(spec: DatasetSpec, data_dir: str | Path | None, download: bool) -> Source:
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return spec.open_source(spec, root, download)


def _where(spec: DatasetSpec, source: Source) -> str:
    return f"{spec.name} ({source.origin})"


def _entry(plan: _Plan, split: str, kind: str) -> CacheEntry:
    pre = plan.spec.preprocess(plan.resolution)
    payload = {
        "dataset": plan.spec.name,
        "kind": kind,
        "pre": repr(pre),
        "frames": repr(plan.spec.to_frames(plan.n_time_bins, plan.resolution)) if kind == "frames" else None,
        "samples": [(s.key, s.label) for s in plan.samples[split]],
    }
    return CacheEntry.create(plan.cache_root, plan.spec.name, split, kind, payload)


# ----------------------------------------------------------------------------- building


def _decode_all(
    plan: _Plan, split: str, post, num_workers: int
) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    samples = plan.samples[split]
    decoder = _Decode(plan.source, samples, plan.spec.preprocess(plan.resolution), post)
    out: list[np.ndarray | None] = [None] * len(samples)
    skipped: list[tuple[str, str]] = []
    bar = tqdm(
        total=len(samples),
        desc=f"{plan.spec.name} {split}: events -> frames" if post else f"{plan.spec.name} {split}: events",
        unit="sample",
        disable=None,
        leave=False,
    )

    def take(i: int, result) -> None:
        if isinstance(result, BadSample):
            skipped.append((samples[i].name, str(result)))
            warnings.warn(f"{samples[i].name}: skipped, {result}", stacklevel=4)
        else:
            out[i] = result
        bar.update(1)

    chunks = plan.source.read_chunks(samples)
    if chunks is not None:
        i = 0
        for chunk in chunks:
            for events in chunk:
                take(i, events if isinstance(events, BadSample) else decoder.finish(events))
                i += 1
    elif num_workers > 0:
        loader = torch.utils.data.DataLoader(
            decoder, batch_size=None, num_workers=num_workers, collate_fn=_identity
        )
        for i, result in loader:
            take(i, result)
    else:
        for i in range(len(decoder)):
            take(*decoder[i])
    bar.close()
    _check_bad(plan, split, skipped, len(samples))
    return out, skipped


def _identity(x):
    return x


def _check_bad(plan: _Plan, what: str, skipped: Sequence[tuple[str, str]], n: int) -> None:
    # Per split, a few bad files may all land in a small split; judge per split only when it is
    # unusable, and the 5% rule over everything loaded (see load_splits).
    if len(skipped) > MAX_BAD_FRACTION * n and (what == "all" or len(skipped) == n):
        raise DataError(
            f"{plan.spec.name} {what}: {len(skipped)} of {n} files unreadable "
            f"(more than {MAX_BAD_FRACTION:.0%}); first: {skipped[0][0]}: {skipped[0][1]}"
        )


def _materialise(
    plan: _Plan, split: str, kind: str, num_workers: int
) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[str, str]], str]:
    """Arrays for one split from the cache, or built (and cached when possible)."""
    names = ("frames",) if kind == "frames" else ("events", "offsets")
    entry = _entry(plan, split, kind)
    hit = entry.load(names)
    if hit is not None:
        arrays, meta = hit
        skipped = [tuple(s) for s in meta["skipped"]]
        if skipped:
            warnings.warn(
                f"{plan.spec.name} {split}: {len(skipped)} unreadable files skipped (as recorded in the cache)",
                stacklevel=3,
            )
        return (
            arrays,
            np.asarray(meta["rows"], dtype=np.int64),
            skipped,
            f"{kind} loaded from cache {entry.meta_path.with_suffix('.*')}",
        )
    post = plan.spec.to_frames(plan.n_time_bins, plan.resolution) if kind == "frames" else None
    out, skipped = _decode_all(plan, split, post, num_workers)
    rows = np.array([i for i, o in enumerate(out) if o is not None], dtype=np.int64)
    if kind == "frames":
        shape = (plan.n_time_bins, *_frame_shape(plan))
        frames = np.zeros((len(out), *shape), dtype=np.int16)
        for i in rows:
            frames[i] = out[i]
        arrays = {"frames": frames}
    else:
        kept = [out[i] for i in rows]
        lengths = np.array([len(e) for e in kept], dtype=np.int64)
        arrays = {  # kept is never empty: an all-bad split raised in _decode_all
            "events": np.concatenate(kept),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        }
    why_not = unwritable_reason(entry.directory)
    problem = None if why_not is None else f"cache directory {entry.directory} is not writable ({why_not})"
    if problem is None:
        try:
            entry.save(arrays, {"dataset": plan.spec.name, "split": split, "kind": kind, "rows": rows.tolist(),
                                "skipped": skipped, "n_samples": len(out)})
        except OSError as exc:  # names the file and the cause, e.g. a full disk
            problem = str(exc)
    if problem is not None:
        warnings.warn(
            f"{problem}; keeping {plan.spec.name} {split} in memory only "
            "(pass cache_dir= or set SPIKEFF_CACHE to a writable folder)",
            stacklevel=3,
        )
        return arrays, rows, skipped, f"{kind} built, in memory only ({problem})"
    return arrays, rows, skipped, f"{kind} built and cached at {entry.meta_path.with_suffix('.*')}"


# ----------------------------------------------------------------------------- data manifest

MANIFEST_VERSION = 1


def _fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 of a split's sample identities (relative path and size) and labels, in order."""
    return hashlib.sha256("\n".join(f"{s.ident}:{s.label}" for s in samples).encode()).hexdigest()


def _digest(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _manifest(plan: _Plan, seed: int, val_fraction: float, limit: int | None) -> dict[str, object]:
    """Which data a run used: the split rule, a fingerprint per split, the test samples, and a
    short digest per training sample (to prove that a test set holds none of them)."""
    train, test = plan.samples["train"], plan.samples["test"]
    return {
        "version": MANIFEST_VERSION,
        "dataset": plan.spec.name,
        "rule": {"test": plan.test_name, "train": plan.train_name, "split_seed": seed,
                 "val_fraction": val_fraction, "limit": limit},
        "train": {"n": len(train), "fingerprint": _fingerprint(train), "digests": [_digest(x.ident) for x in train]},
        "test": {"n": len(test), "fingerprint": _fingerprint(test), "samples": [x.ident for x in test]},
    }


def manifest_summary(manifest: Mapping[str, object]) -> dict[str, object]:
    """The manifest without the per-sample training digests (for ``metrics.json``)."""
    return {**manifest, "train": {k: v for k, v in manifest["train"].items() if k != "digests"}}


def manifest_changes(recorded: Mapping[str, object], now: Mapping[str, object]) -> str | None:
    """``None`` if ``now`` names the same samples as ``recorded``, else what changed, in words."""
    if recorded["dataset"] != now["dataset"]:
        return f"dataset {now['dataset']}, the run used {recorded['dataset']}"
    changes = []
    for split, ids in (("train", "digests"), ("test", "samples")):
        was, got = recorded[split], now[split]
        if was["fingerprint"] != got["fingerprint"]:
            gone = len(set(was[ids]) - set(got[ids]))
            new = len(set(got[ids]) - set(was[ids]))
            changes.append(f"{split} split {got['n']} samples, the run had {was['n']} "
                           f"({gone} gone or changed, {new} new)")
    return "; ".join(changes) or None


def _frame_shape(plan: _Plan) -> tuple[int, int, int]:
    w, h, p = plan.spec.frame_sensor(plan.resolution)
    return (p, h, w)


def _counts(labels: np.ndarray, n_classes: int) -> dict[int, int]:
    return {k: int(n) for k, n in enumerate(np.bincount(labels, minlength=n_classes))}


# ----------------------------------------------------------------------------- public


def load_splits(
    name: str,
    data_dir: str | Path | None = None,
    *,
    n_time_bins: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    augment: bool = False,
    cache_dir: str | Path | None = None,
    download: bool = False,
    limit: int | None = None,
    resolution: int | None = None,
    num_workers: int = 0,
) -> Splits:
    """Load a registered dataset as train/test torch datasets of ``(frames (T, 2, H, W), label)``.

    Args:
        name: ``"digits"``, ``"nmnist"`` or ``"dvsgesture"`` (see ``DATASETS``).
        data_dir: tonic ``save_to`` root (``<data_dir>/NMNIST/Train/...``); default
            ``$SPIKEFF_DATA`` or ``./data``. Partial local copies are used as they are.
        n_time_bins: T; default ``spec.default_time_bins``.
        seed: seeds the validation split (when there is no Test split), ``limit`` and augmentation.
        val_fraction: share held out when only one split exists on disk.
        augment: seeded event augmentation for the train split (see module docstring).
        cache_dir: frame cache; default ``$SPIKEFF_CACHE`` or ``~/.cache/spikeff``.
        download: let tonic download a dataset that is missing entirely.
        limit: at most this many samples per split (seeded, class-balanced).
        resolution: output size for ``dvsgesture`` (32 or 64).
        num_workers: DataLoader workers used to decode files while a cache is built.

    Raises:
        DataError: missing data, malformed files or folders, too many unreadable files.
    """
    plan = _plan(name, data_dir, n_time_bins, seed, val_fraction, cache_dir, download, limit, resolution)
    spec = plan.spec
    labels = {s: np.array([x.label for x in plan.samples[s]], dtype=np.int64) for s in ("train", "test")}
    datasets, skipped, cache = {}, [], {}
    for split in ("train", "test"):
        kind = "events" if (augment and split == "train") else "frames"
        arrays, rows, bad, state = _materialise(plan, split, kind, num_workers)
        skipped += bad
        cache[split] = state
        if kind == "frames":
            datasets[split] = FrameDataset(arrays["frames"], rows, labels[split][rows])
        else:
            datasets[split] = AugmentedEventDataset(
                arrays["events"],
                arrays["offsets"],
                labels[split][rows],
                spec.augmentation(plan.resolution),
                spec.to_frames(plan.n_time_bins, plan.resolution),
                seed,
            )
    _check_bad(plan, "all", skipped, sum(len(v) for v in plan.samples.values()))
    counts = Counts(
        {s: _counts(datasets[s].labels, spec.n_classes) for s in ("train", "test")},
        spec.classes,
        {"train": "train", "test": "test" if plan.test_name == "test" else "validation"},
    )
    for split in ("train", "test"):
        present = [spec.classes[k] for k, n in counts[split].items() if n]
        if len(present) == 1:
            warnings.warn(
                f"{spec.name}: the {split} split holds one class only ({present[0]}, {len(datasets[split])} samples); "
                "its accuracy says nothing (a class folder missing?)",
                stacklevel=2,
            )
    return Splits(
        spec=spec,
        train=datasets["train"],
        test=datasets["test"],
        n_time_bins=plan.n_time_bins,
        frame_shape=_frame_shape(plan),
        test_name=plan.test_name,
        train_name=plan.train_name,
        counts=counts,
        origin=plan.source.origin,
        skipped=tuple(skipped),
        cache=cache,
        augment=augment,
        seed=seed,
        limit=limit,
        manifest=_manifest(plan, seed, val_fraction, limit),
    )


def load_recorded_test(
    manifest: Mapping[str, object],
    data_dir: str | Path | None = None,
    *,
    n_time_bins: int | None = None,
    resolution: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[FrameDataset, str, tuple[int, int, int]]:
    """The test split a run recorded in its ``manifest`` (see :attr:`Splits.manifest`), found by
    identity (relative path and size) among all samples under ``data_dir``.

    Returns ``(dataset, test_name, frame_shape)``. Raises ``DataError`` when a recorded sample is
    missing or changed, or when the manifest's test samples overlap its training samples.
    """
    spec = get_spec(str(manifest["dataset"]))
    test = manifest["test"]
    overlap = {_digest(i) for i in test["samples"]} & set(manifest["train"]["digests"])
    if overlap:
        raise DataError(f"{len(overlap)} of the {test['n']} recorded test samples were also training samples; "
                        "no held-out accuracy can be given")
    source = _open(spec, data_dir, False)
    pool = {s.ident: s for found in source.splits.values() for s in found}
    missing = [i for i in test["samples"] if i not in pool]
    if missing:
        raise DataError(
            f"{len(missing)} of the {test['n']} test samples the model was evaluated on are missing or changed "
            f"in {_where(spec, source)} (first: {missing[0]}, as path:size); evaluate on the data it was trained with"
        )
    chosen = [pool[i] for i in test["samples"]]
    if _fingerprint(chosen) != test["fingerprint"]:
        raise DataError(f"the recorded test samples in {_where(spec, source)} carry other labels than when recorded")
    plan = _Plan(spec=spec, source=source, samples={"test": chosen}, test_name=str(manifest["rule"]["test"]),
                 train_name="", n_time_bins=spec.default_time_bins if n_time_bins is None else int(n_time_bins),
                 resolution=spec.resolution(resolution), cache_root=default_cache_dir(cache_dir))
    arrays, rows, _, _ = _materialise(plan, "test", "frames", 0)
    labels = np.array([x.label for x in chosen], dtype=np.int64)
    return FrameDataset(arrays["frames"], rows, labels[rows]), plan.test_name, _frame_shape(plan)


def describe(
    name: str,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    n_time_bins: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    limit: int | None = None,
    resolution: int | None = None,
    download: bool = False,
    check: bool = False,
) -> Description:
    """A report for ``spikeff data info``: source, sensor, counts per split and class, cache state.

    Lists files without decoding them; counts are of files found (unreadable ones included).
    ``check=True`` decodes every file found and lists the bad ones (see :func:`check_files`).
    """
    plan = _plan(name, data_dir, n_time_bins, seed, val_fraction, cache_dir, download, limit, resolution)
    spec = plan.spec
    counts = Counts(
        {
            s: _counts(np.array([x.label for x in plan.samples[s]], dtype=np.int64), spec.n_classes)
            for s in ("train", "test")
        },
        spec.classes,
        {"train": "train", "test": "test" if plan.test_name == "test" else "validation"},
    )
    lines = [
        f"dataset   {spec.name}: {spec.title}; licence {spec.licence}",
        f"cite      {spec.citation}",
        f"source    {plan.source.origin}",
        (
            f"sensor    {'x'.join(map(str, spec.sensor_size))} -> frames (T={plan.n_time_bins}, "
            f"{', '.join(map(str, _frame_shape(plan)))})"
        ),
        f"train     {plan.train_name}: {len(plan.samples['train'])} files",
        f"test set  {plan.test_name}: {len(plan.samples['test'])} files",
    ]
    for split in ("train", "test"):
        entry = _entry(plan, split, "frames")
        state = f"cached ({entry.meta_path.with_suffix('.*')})" if entry.is_valid() else "not cached yet"
        lines.append(f"cache     {split} frames: {state}")
    lines.append(str(counts))
    bad: list[tuple[str, str]] = []
    if check:
        bad = check_files(plan.source)
        n = sum(len(v) for v in plan.source.splits.values())
        lines.append(f"check     decoded {n} files: {len(bad)} bad" + "".join(f"\n  {f}: {why}" for f, why in bad))
    return Description("\n".join(lines), bad)


class Description(str):
    """:func:`describe`'s report; ``bad`` lists ``(file, why)`` for the files a check found bad."""

    bad: tuple[tuple[str, str], ...]

    def __new__(cls, text: str, bad: Sequence[tuple[str, str]] = ()) -> Description:
        self = super().__new__(cls, text)
        self.bad = tuple(bad)
        return self


def check_files(source: Source) -> list[tuple[str, str]]:
    """Decode every sample ``source`` found; ``(file, why)`` for each one that cannot be used."""
    bad = []
    samples = [x for found in source.splits.values() for x in found]
    for sample in tqdm(samples, desc="checking", unit="file", disable=None, leave=False):
        try:
            source.read(sample)
        except (BadSample, DataError) as exc:
            bad.append((sample.name, str(exc)))
    return bad
