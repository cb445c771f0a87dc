"""Reporting on a dataset without loading it: ``spikeff data info`` (and ``--check``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .errors import DataError
from .frames import Counts
from .model import BadSample, Source, labels_of
from .plan import cache_entry, make_plan


def describe(
    name: str,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    n_time_bins: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    limit: int | Sequence[int] | None = None,
    resolution: int | None = None,
    download: bool = False,
    tune: bool = False,
    check: bool = False,
) -> Description:
    """A report for ``spikeff data info``: source, sensor, counts per split and class, cache state.

    Lists files without decoding them; counts are of files found (unreadable ones included).

    Parameters
    ----------
    name, data_dir, cache_dir, n_time_bins, seed, val_fraction, limit, resolution, download, tune
        As for :func:`spikeff.data.load_splits`.
    check : bool
        Decode every file found and list the bad ones (see :func:`check_files`).

    Returns
    -------
    Description
        The report, with the bad files found by ``check``.

    Raises
    ------
    DataError
        As :func:`spikeff.data.load_splits` does for missing or malformed data.
    """
    plan = make_plan(name, data_dir, n_time_bins, seed, val_fraction, cache_dir, download, limit, resolution, tune)
    spec = plan.spec
    counts = Counts.from_labels(
        {s: labels_of(plan.samples[s]) for s in ("train", "test")},
        spec.classes,
        plan.test_name,
    )
    lines = [
        f"dataset   {spec.name}: {spec.title}; licence {spec.licence}",
        f"cite      {spec.citation}",
        f"source    {plan.source.origin}",
        (
            f"sensor    {'x'.join(map(str, spec.sensor_size))} -> frames (T={plan.n_time_bins}, "
            f"{', '.join(map(str, plan.frame_shape))})"
        ),
        f"train     {plan.train_name}: {len(plan.samples['train'])} files",
        f"test set  {plan.test_name}: {len(plan.samples['test'])} files",
    ]
    for split in ("train", "test"):
        entry = cache_entry(plan, split, "frames")
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
    """Decode every sample a source found.

    Parameters
    ----------
    source : Source
        The samples of a dataset (all splits).

    Returns
    -------
    list of tuple
        ``(file, why)`` for each sample that cannot be used.
    """
    bad = []
    samples = [x for found in source.splits.values() for x in found]
    for sample in tqdm(samples, desc="checking", unit="file", disable=None, leave=False):
        try:
            source.read(sample)
        except (BadSample, DataError) as exc:
            bad.append((sample.name, str(exc)))
    return bad
