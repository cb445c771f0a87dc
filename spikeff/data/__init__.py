"""Event-camera datasets as time-first frame tensors.

>>> from spikeff.data import load_splits, make_loader
>>> splits = load_splits("digits", time_bins=10)
>>> loader = make_loader(splits.train, 64, shuffle=True, seed=0)
>>> frames, labels = next(iter(loader))  # (T, B, 2, 34, 34) float32, (B,) int64

Datasets: ``digits`` (sklearn's digits as simulated saccade events, no download), ``nmnist``
and ``dvsgesture`` (tonic layouts under ``data_dir``). See ``datasets/README.md``.

Modules, lowest first (each imports only those above it): ``errors``, ``transforms``, ``cache``,
``loader``, ``selection``; ``model`` (the dataset model: Sample, Source, FileSource, DatasetSpec,
shared checks); one file per dataset (``digits``, ``nmnist``, ``dvsgesture``); ``catalog`` (DATASETS);
``frames`` (torch datasets, Counts) and ``manifest``; ``plan`` (which samples a load uses);
``pipeline`` (load_splits, load_recorded_test) and ``describe`` (data info).
"""

from .cache import CACHE_FORMAT_VERSION, default_cache_dir
from .catalog import DATASETS, default_data_dir, get_spec
from .describe import check_files, describe
from .digits import make_digit_events
from .errors import DataError
from .frames import AugmentedEventDataset, Counts, FrameDataset
from .loader import EpochSampler, make_loader, time_first_collate
from .manifest import manifest_changes, manifest_summary
from .model import DatasetSpec, Sample
from .pipeline import Splits, load_recorded_test, load_splits
from .saccade import SaccadeDVS
from .selection import balanced_subset, stratified_split
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
