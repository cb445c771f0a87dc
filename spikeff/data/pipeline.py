"""The one pipeline: samples → events → tonic transforms → frames ``(T, 2, H, W)`` → torch.

``load_splits`` plans a load (:mod:`spikeff.data.plan`: the samples of the train and test sets),
caches the frames on disk and returns torch datasets.

Augmentation (``augment=True``, train only) works on events before framing, so the augmented
train split caches the *preprocessed events* (denoised, cropped, downsampled; T-independent)
instead of frames and frames them on the fly, in DataLoader workers when ``num_workers > 0``.
Its random draws are seeded by ``(seed, epoch, index)``; :func:`spikeff.data.make_loader` passes
the epoch along with each index, so epoch ``e`` is identical across runs and worker counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .cache import default_cache_dir, unwritable_reason
from .catalog import get_spec
from .errors import DataError
from .frames import AugmentedEventDataset, Counts, Decode, FrameDataset, check_frame_memory
from .manifest import fingerprint, make_manifest, sample_digest
from .model import BadSample, DatasetSpec, labels_of
from .plan import Plan, cache_entry, limit_rule, make_plan, open_source, split_limits, time_bins, where

MAX_BAD_FRACTION = 0.05


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
    limit: int | list[int] | None = None  # as recorded: one size for both splits, or [train, test]
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
            train, test = split_limits(self.limit)
            per = f"{train} samples per split" if train == test else f"{train} train and {test} test samples"
            lines.append(f"limit     at most {per} (seeded, class-balanced)")
        lines.append(
            f"skipped   {len(self.skipped)} unreadable files"
            + "".join(f"\n            {f}: {why}" for f, why in self.skipped[:10])
            + ("\n            ..." if len(self.skipped) > 10 else "")
        )
        for split, state in self.cache.items():
            lines.append(f"cache     {split}: {state}")
        lines.append(str(self.counts))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- building


def _decode_all(
    plan: Plan, split: str, post, num_workers: int
) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    samples = plan.samples[split]
    decoder = Decode(plan.source, samples, plan.spec.preprocess(plan.resolution), post)
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


def _check_bad(plan: Plan, what: str, skipped: Sequence[tuple[str, str]], n: int) -> None:
    # Per split, a few bad files may all land in a small split; judge per split only when it is
    # unusable, and the 5% rule over everything loaded (see load_splits).
    if len(skipped) > MAX_BAD_FRACTION * n and (what == "all" or len(skipped) == n):
        raise DataError(
            f"{plan.spec.name} {what}: {len(skipped)} of {n} files unreadable "
            f"(more than {MAX_BAD_FRACTION:.0%}); first: {skipped[0][0]}: {skipped[0][1]}"
        )


def _materialise(
    plan: Plan, split: str, kind: str, num_workers: int
) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[str, str]], str]:
    """Arrays for one split from the cache, or built (and cached when possible)."""
    names = ("frames",) if kind == "frames" else ("events", "offsets")
    entry = cache_entry(plan, split, kind)
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
    if kind == "frames":
        check_frame_memory(f"{plan.spec.name} {split}", len(plan.samples[split]), (plan.n_time_bins, *plan.frame_shape))
    post = plan.spec.to_frames(plan.n_time_bins, plan.resolution) if kind == "frames" else None
    out, skipped = _decode_all(plan, split, post, num_workers)
    rows = np.array([i for i, o in enumerate(out) if o is not None], dtype=np.int64)
    if kind == "frames":
        shape = (plan.n_time_bins, *plan.frame_shape)
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
    limit: int | Sequence[int] | None = None,
    resolution: int | None = None,
    num_workers: int = 0,
    tune: bool = False,
) -> Splits:
    """Load a catalogued dataset as train/test torch datasets of ``(frames (T, 2, H, W), label)``.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"nmnist"`` or ``"dvsgesture"`` (see ``DATASETS``).
    data_dir : str or Path, optional
        tonic ``save_to`` root (``<data_dir>/NMNIST/Train/...``); default ``$SPIKEFF_DATA`` or
        ``./data``. Partial local copies are used as they are.
    n_time_bins : int, optional
        T; default ``spec.default_time_bins``.
    seed : int
        Seeds the validation split (when there is no Test split), ``limit`` and augmentation.
    val_fraction : float
        Share held out when only one split exists on disk.
    augment : bool
        Seeded event augmentation for the train split (see the module docstring).
    cache_dir : str or Path, optional
        Frame cache; default ``$SPIKEFF_CACHE`` or ``~/.cache/spikeff``.
    download : bool
        Let tonic download a dataset that is missing entirely.
    limit : int or (int, int), optional
        At most this many samples per split, or ``(train, test)`` for each its own (seeded,
        class-balanced).
    resolution : int, optional
        Output size for ``dvsgesture`` (32 or 64).
    num_workers : int
        DataLoader workers used to decode files while a cache is built.
    tune : bool
        Hold out a seeded ``val_fraction`` of the *training* set and return it as the test set,
        for choosing settings; the dataset's test (or validation) samples are not read.

    Returns
    -------
    Splits
        The train and test datasets, their counts per class, what was skipped, the cache state
        and the data manifest.

    Raises
    ------
    DataError
        Missing data, malformed files or folders, too many unreadable files.
    """
    plan = make_plan(name, data_dir, n_time_bins, seed, val_fraction, cache_dir, download, limit, resolution, tune)
    spec = plan.spec
    labels = {s: labels_of(plan.samples[s]) for s in ("train", "test")}
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
    counts = Counts.from_labels({s: datasets[s].labels for s in ("train", "test")}, spec.classes, plan.test_name)
    for split in ("train", "test"):
        present = [spec.classes[k] for k, n in counts[split].items() if n]
        if len(present) == 1:
            warnings.warn(
                f"{spec.name}: the {split} split holds one class only ({present[0]}, {len(datasets[split])} samples); "
                "its accuracy says nothing (a class folder missing?)",
                stacklevel=2,
            )
    rule = {"test": plan.test_name, "train": plan.train_name, "split_seed": seed,
            "val_fraction": val_fraction, "limit": limit_rule(limit), "tune": tune}
    return Splits(
        spec=spec,
        train=datasets["train"],
        test=datasets["test"],
        n_time_bins=plan.n_time_bins,
        frame_shape=plan.frame_shape,
        test_name=plan.test_name,
        train_name=plan.train_name,
        counts=counts,
        origin=plan.source.origin,
        skipped=tuple(skipped),
        cache=cache,
        augment=augment,
        seed=seed,
        limit=limit_rule(limit),
        manifest=make_manifest(spec.name, rule, plan.samples["train"], plan.samples["test"]),
    )


def load_recorded_test(
    manifest: Mapping[str, object],
    data_dir: str | Path | None = None,
    *,
    n_time_bins: int | None = None,
    resolution: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[FrameDataset, str, tuple[int, int, int]]:
    """The test split a run recorded, found by identity among all samples under ``data_dir``.

    Parameters
    ----------
    manifest : mapping
        The run's data manifest (see :attr:`Splits.manifest`).
    data_dir : str or Path, optional
        Where to look; default ``$SPIKEFF_DATA`` or ``./data``. Identities are relative paths
        and sizes, so a copy of the data elsewhere serves.
    n_time_bins, resolution, cache_dir
        As for :func:`load_splits`.

    Returns
    -------
    tuple
        ``(dataset, test_name, frame_shape)``.

    Raises
    ------
    DataError
        When a recorded sample is missing or changed, or when the manifest's test samples
        overlap its training samples.
    """
    spec = get_spec(str(manifest["dataset"]))
    test = manifest["test"]
    overlap = {sample_digest(i) for i in test["samples"]} & set(manifest["train"]["digests"])
    if overlap:
        raise DataError(f"{len(overlap)} of the {test['n']} recorded test samples were also training samples; "
                        "no held-out accuracy can be given")
    source = open_source(spec, data_dir, False)
    pool = {s.ident: s for found in source.splits.values() for s in found}
    missing = [i for i in test["samples"] if i not in pool]
    if missing:
        raise DataError(
            f"{len(missing)} of the {test['n']} test samples the model was evaluated on are missing or changed "
            f"in {where(spec, source)} (first: {missing[0]}, as path:size); evaluate on the data it was trained with"
        )
    chosen = [pool[i] for i in test["samples"]]
    if fingerprint(chosen) != test["fingerprint"]:
        raise DataError(f"the recorded test samples in {where(spec, source)} carry other labels than when recorded")
    plan = Plan(spec=spec, source=source, samples={"test": chosen}, test_name=str(manifest["rule"]["test"]),
                train_name="", n_time_bins=time_bins(spec, n_time_bins),
                resolution=spec.resolution(resolution), cache_root=default_cache_dir(cache_dir))
    arrays, rows, _, _ = _materialise(plan, "test", "frames", 0)
    return FrameDataset(arrays["frames"], rows, labels_of(chosen)[rows]), plan.test_name, plan.frame_shape
