"""Event-camera datasets as time-first frame tensors.

>>> from spikeff.data import load_splits, make_loader
>>> splits = load_splits("digits", n_time_bins=10)
>>> loader = make_loader(splits.train, 64, shuffle=True, seed=0)
>>> frames, labels = next(iter(loader))  # (T, B, 2, 34, 34) float32, (B,) int64

Datasets: ``digits`` (sklearn's digits as simulated saccade events, no download), ``nmnist``
and ``dvsgesture`` (tonic layouts under ``data_dir``). See ``datasets/README.md``.
"""

from .cache import CACHE_FORMAT_VERSION, default_cache_dir
from .digits import SaccadeDVS, make_digit_events
from .errors import DataError
from .loader import EpochSampler, make_loader, time_first_collate
from .registry import DATASETS, DatasetSpec, Sample, default_data_dir, get_spec
from .splits import (
    AugmentedEventDataset,
    Counts,
    FrameDataset,
    Splits,
    balanced_subset,
    check_files,
    describe,
    load_recorded_test,
    load_splits,
    manifest_changes,
    manifest_summary,
    stratified_split,
)
from .transforms import EventAugment, ToFrameBins

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DATASETS",
    "AugmentedEventDataset",
    "Counts",
    "DataError",
    "DatasetSpec",
    "EpochSampler",
    "EventAugment",
    "FrameDataset",
    "SaccadeDVS",
    "Sample",
    "Splits",
    "ToFrameBins",
    "balanced_subset",
    "check_files",
    "default_cache_dir",
    "default_data_dir",
    "describe",
    "get_spec",
    "load_recorded_test",
    "load_splits",
    "make_digit_events",
    "make_loader",
    "manifest_changes",
    "manifest_summary",
    "stratified_split",
    "time_first_collate",
]
