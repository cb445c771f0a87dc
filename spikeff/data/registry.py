"""The dataset registry: one :class:`DatasetSpec` per name, and where each one's samples come from.

A spec describes a dataset (sensor, classes, default time bins, default transforms); its
``open_source`` finds the samples (files in tonic's ``save_to`` layout, or generated digits) and
reads one sample into tonic-style structured events. Everything after that -- tonic transforms,
framing, caching, splitting -- is the single pipeline in :mod:`spikeff.data.splits`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import numpy.lib.recfunctions as rfn
import tonic

from .digits import N_SAMPLES as DIGITS_N_SAMPLES
from .digits import DigitsEvents, SaccadeDVS
from .errors import DataError
from .transforms import EventAugment, ToFrameBins, compose

DIGIT_CLASSES = tuple(tonic.datasets.NMNIST.classes)


@dataclass(frozen=True)
class Sample:
    """One sample: ``key`` identifies its content for the cache (path, size, mtime); ``ident`` is
    its identity in a run's data manifest (path relative to ``data_dir`` and size: copies match)."""

    key: str
    label: int
    path: Path | None = None
    index: int = -1  # generated samples (digits)
    ident: str = ""

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else self.key


class BadSample(Exception):
    """A sample file that cannot be decoded (empty, truncated, unreadable): skipped and counted."""


class Source:
    """Samples found for a dataset: ``splits`` maps "train"/"test" to the samples present."""

    origin: str
    splits: dict[str, list[Sample]]
    split_folders: dict[str, str]

    def read(self, sample: Sample) -> np.ndarray:
        raise NotImplementedError

    def read_chunks(self, samples: Sequence[Sample]) -> Iterator[list[np.ndarray | BadSample]] | None:
        """Optional batched reader (``None``: read one by one, possibly in DataLoader workers)."""
        return None


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: what a dataset is and how it becomes frames.

    ``sensor_size`` is tonic's ``(W, H, P)``. ``window_us`` fixes the binned time window
    (``None``: each sample's own span). ``denoise_us`` enables ``tonic.transforms.Denoise``.
    ``resolutions`` lists the allowed output sizes (square); the first is the default.
    """

    name: str
    title: str
    sensor_size: tuple[int, int, int]
    classes: tuple[str, ...]
    default_time_bins: int
    resolutions: tuple[int, ...]
    window_us: int | None = None
    denoise_us: int | None = None
    needs_files: bool = True
    folder: str = ""
    citation: str = ""
    licence: str = ""
    open_source: Callable[[DatasetSpec, Path, bool], Source] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def resolution(self, resolution: int | None) -> int:
        if resolution is None:
            return self.resolutions[0]
        if resolution not in self.resolutions:
            raise DataError(
                f"{self.name}: resolution must be one of {list(self.resolutions)}, got {resolution}"
            )
        return int(resolution)

    def frame_sensor(self, resolution: int | None = None) -> tuple[int, int, int]:
        r = self.resolution(resolution)
        return (r, r, self.sensor_size[2])

    def preprocess(self, resolution: int | None = None) -> tonic.transforms.Compose:
        """Deterministic event transforms applied before framing (and before augmentation)."""
        r = self.resolution(resolution)
        w, h, _ = self.sensor_size
        return compose(
            [
                tonic.transforms.CropTime(min=0, max=self.window_us - 1) if self.window_us else None,
                tonic.transforms.Denoise(filter_time=self.denoise_us) if self.denoise_us else None,
                tonic.transforms.Downsample(sensor_size=self.sensor_size, target_size=(r, r))
                if (r, r) != (w, h)
                else None,
            ]
        )

    def to_frames(self, n_time_bins: int, resolution: int | None = None) -> ToFrameBins:
        return ToFrameBins(
            sensor_size=self.frame_sensor(resolution),
            n_time_bins=n_time_bins,
            start_time=0 if self.window_us else None,
            end_time=self.window_us,
        )

    def augmentation(self, resolution: int | None = None) -> EventAugment:
        """Default training augmentation (shift of ~1/16 of the frame, up to 10% event drop)."""
        sensor = self.frame_sensor(resolution)
        return EventAugment(sensor_size=sensor, max_shift=max(1, sensor[0] // 16), drop_p=0.1)


# ----------------------------------------------------------------------------- file sources


def _file_sample(path: Path, root: Path, label: int) -> Sample:
    st = path.stat()
    ident = f"{path.relative_to(root).as_posix()}:{st.st_size}"
    return Sample(key=f"{ident}:{st.st_mtime_ns}", label=label, path=path, ident=ident)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _check_bounds(events: np.ndarray, sensor: tuple[int, int, int], path: Path) -> None:
    if len(events) == 0:
        return
    w, h, _ = sensor
    x, y, p = events["x"], events["y"], events["p"]
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | ((p != 0) & (p != 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {int(bad.sum())} events outside the {w}x{h}x2 sensor "
            f"(first: x={int(x[i])}, y={int(y[i])}, p={int(p[i])}); expected 0<=x<{w}, 0<=y<{h}, p in {{0,1}}"
        )


MAX_CLIP_MS = 3_600_000  # an hour: later timestamps in a ~1.5 s clip are a wrapped or corrupt counter


def _check_times(t_ms: np.ndarray, window_us: int | None) -> None:
    """Refuse timestamps that cannot be right: they would give all-zero frames without a word."""
    if len(t_ms) == 0:
        return
    lo, hi = int(t_ms.min()), int(t_ms.max())
    if lo < 0:
        raise BadSample(f"{int((t_ms < 0).sum())} events with negative timestamps (min {lo} ms); "
                        "a wrapped or corrupt time counter")
    if hi > MAX_CLIP_MS:
        raise BadSample(f"timestamps up to {hi} ms (over an hour in a clip); a wrapped or corrupt time counter")
    if window_us is not None and lo * 1000 >= window_us:
        raise BadSample(f"no event in the {window_us / 1e6:g} s window (timestamps {lo}-{hi} ms); "
                        "the clip would give all-zero frames")


def _download(spec: DatasetSpec, root: Path, constructor: Callable[[bool], object], size_note: str) -> None:
    target = root / spec.folder
    print(f"spikeff: downloading {spec.title} with tonic into {target} ({size_note}) ...", file=sys.stderr)
    for train in (True, False):
        try:
            constructor(train)
        except Exception as exc:  # network, checksum or disk errors from tonic
            raise DataError(
                f"downloading {spec.title} into {target} failed: {exc!r}. "
                f"Download manually (see datasets/README.md) and unpack into {target}."
            ) from exc


def _split_dirs(
    spec: DatasetSpec, root: Path, folders: dict[str, str], download: bool,
    constructor: Callable[[bool], object], size_note: str,
) -> dict[str, Path]:
    """The split folders that exist under ``root / spec.folder``, downloading first if none do and ``download``."""
    base = root / spec.folder

    def present() -> dict[str, Path]:
        return {s: base / f for s, f in folders.items() if (base / f).is_dir()}

    found = present()
    if not found and download:
        _download(spec, root, constructor, size_note)
        found = present()
    return found


class NMNISTSource(Source):
    """``<root>/NMNIST/{Train,Test}/<digit>/*.bin``; a partial copy or one split is fine."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        base = root / spec.folder
        self.split_folders = {"train": "Train", "test": "Test"}
        present = _split_dirs(spec, root, self.split_folders, download,
                              lambda train: tonic.datasets.NMNIST(save_to=str(root), train=train),
                              "train.zip + test.zip, about 1.2 GB extracted")
        if not present:
            raise DataError(
                f"N-MNIST not found: expected {base}/Train/<digit>/*.bin (and optionally {base}/Test/<digit>/*.bin), "
                f"tonic's NMNIST layout under data_dir={root}. Pass download=True (CLI: --download) to let tonic "
                "download it, or see datasets/README.md for manual download."
            )
        self.splits = {s: self._scan(d, root) for s, d in present.items()}
        counts = ", ".join(f"{self.split_folders[s]}: {len(v)} .bin files" for s, v in self.splits.items())
        self.origin = f"{base} (local tonic layout; {counts})"

    @staticmethod
    def _scan(split_dir: Path, root: Path) -> list[Sample]:
        samples: list[Sample] = []
        for label_dir in sorted(filter(_visible, split_dir.iterdir())):
            if not label_dir.is_dir():
                continue  # stray files next to the digit folders are ignored, as tonic does
            if not re.fullmatch(r"[0-9]", label_dir.name):
                raise DataError(
                    f"{label_dir}: unexpected folder; N-MNIST label folders must be single digits 0-9 "
                    f"(<data_dir>/NMNIST/{split_dir.name}/<digit>/*.bin)"
                )
            label = int(label_dir.name)
            for f in sorted(label_dir.glob("*.bin")):
                if f.is_file():
                    samples.append(_file_sample(f, root, label))
        if not samples:
            raise DataError(f"{split_dir}: no .bin files found; expected {split_dir}/<digit>/*.bin")
        return samples

    def read(self, sample: Sample) -> np.ndarray:
        path = sample.path
        assert path is not None
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BadSample(f"unreadable ({exc})") from exc
        if size == 0:
            raise BadSample("empty file")
        if size % 5:
            raise BadSample(f"truncated: {size} bytes is not a multiple of 5 (N-MNIST events are 5 bytes)")
        try:
            events = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
        except (OSError, ValueError) as exc:
            raise BadSample(f"unreadable ({exc})") from exc
        _check_bounds(events, (34, 34, 2), path)
        return events


class DVSGestureSource(Source):
    """``<root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy``."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        base = root / spec.folder
        self.split_folders = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
        present = _split_dirs(spec, root, self.split_folders, download,
                              lambda train: tonic.datasets.DVSGesture(save_to=str(root), train=train),
                              "tonic's preprocessed ibmGestureTrain.tar.gz + ibmGestureTest.tar.gz, a few GB extracted")
        if not present:
            raise DataError(
                f"DVS Gesture not found: expected {base}/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and/or "
                f"{base}/ibmGestureTest/..., tonic's preprocessed DVSGesture layout under data_dir={root}. "
                "Pass download=True (CLI: --download) to let tonic download it, or see datasets/README.md."
            )
        self.spec = spec
        self.splits = {s: self._scan(d, root, spec.n_classes) for s, d in present.items()}
        counts = ", ".join(f"{self.split_folders[s]}: {len(v)} .npy clips" for s, v in self.splits.items())
        self.origin = f"{base} (local tonic layout; {counts})"

    @staticmethod
    def _scan(split_dir: Path, root: Path, n_classes: int) -> list[Sample]:
        samples: list[Sample] = []
        for user_dir in sorted(filter(_visible, split_dir.iterdir())):
            if not user_dir.is_dir():
                continue
            if not re.fullmatch(r"user\d+_.+", user_dir.name):
                raise DataError(
                    f"{user_dir}: unexpected folder; expected user<NN>_<lighting> "
                    f"(<data_dir>/DVSGesture/{split_dir.name}/user<NN>_<lighting>/<label>.npy)"
                )
            for f in sorted(user_dir.glob("*.npy")):
                if not re.fullmatch(r"\d+", f.stem) or int(f.stem) >= n_classes:
                    raise DataError(f"{f}: expected a file named <label>.npy with label 0-{n_classes - 1}")
                samples.append(_file_sample(f, root, int(f.stem)))
        if not samples:
            raise DataError(
                f"{split_dir}: no .npy clips found; expected {split_dir}/user<NN>_<lighting>/<label>.npy"
            )
        return samples

    def read(self, sample: Sample) -> np.ndarray:
        path = sample.path
        assert path is not None
        try:
            if path.stat().st_size == 0:
                raise BadSample("empty file")
            raw = np.load(path)
        except BadSample:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise BadSample(f"unreadable ({exc})") from exc
        if raw.ndim != 2 or raw.shape[1] != 4 or not np.issubdtype(raw.dtype, np.integer):
            raise BadSample(
                f"unexpected array {raw.dtype}{raw.shape}; expected integer columns x,y,p,t (N, 4)"
            )
        w, h, _ = self.spec.sensor_size
        x, y, p = raw[:, 0], raw[:, 1], raw[:, 2]
        bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | ((p != 0) & (p != 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: {int(bad.sum())} events outside the {w}x{h}x2 sensor (first: x={x[i]}, y={y[i]}, p={p[i]}); "
                f"expected 0<=x<{w}, 0<=y<{h}, p in {{0,1}}"
            )
        _check_times(raw[:, 3], self.spec.window_us)
        # tonic's DVSGesture.__getitem__: columns x,y,p,t with t in ms -> µs
        events = raw.astype(np.int64)
        events[:, 3] *= 1000
        return rfn.unstructured_to_structured(events, tonic.datasets.DVSGesture.dtype)


# ----------------------------------------------------------------------------- digits

DIGITS_SPLIT_SEED = 0
DIGITS_EVENT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


class DigitsSource(Source):
    """sklearn's digits rendered to events; a fixed, seeded, stratified 80/20 train/test split."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        from .splits import stratified_split  # local import: splits imports this module

        self.events = DigitsEvents(seed=DIGITS_EVENT_SEED, simulator=SaccadeDVS())
        labels = self.events.labels
        train, test = stratified_split(labels, DIGITS_TEST_FRACTION, np.random.default_rng(DIGITS_SPLIT_SEED))
        sim = repr(self.events.simulator)
        self.split_folders = {"train": "train", "test": "test"}
        self.splits = {
            name: [
                Sample(key=f"digits:{i}:{DIGITS_EVENT_SEED}:{sim}", label=int(labels[i]), index=int(i),
                       ident=f"digits:{i}:{DIGITS_EVENT_SEED}")
                for i in idx
            ]
            for name, idx in (("train", train), ("test", test))
        }
        self.origin = (
            f"sklearn.datasets.load_digits ({DIGITS_N_SAMPLES} 8x8 images, bundled, no download) rendered to "
            f"events by a simulated saccading DVS (seed {DIGITS_EVENT_SEED}); fixed stratified 80/20 split "
            f"(seed {DIGITS_SPLIT_SEED})"
        )

    def read(self, sample: Sample) -> np.ndarray:
        return self.events.generate([sample.index])[0]

    def read_chunks(self, samples: Sequence[Sample]) -> Iterator[list[np.ndarray | BadSample]]:
        for lo in range(0, len(samples), 128):
            yield list(self.events.generate([s.index for s in samples[lo : lo + 128]]))


# ----------------------------------------------------------------------------- registry

_NMNIST_CITE = (
    "Orchard, Jayawant, Cohen & Thakor, Converting static image datasets to spiking neuromorphic datasets "
    "using saccades, Frontiers in Neuroscience 9:437 (2015)"
)
_DVS_CITE = "Amir et al., A Low Power, Fully Event-Based Gesture Recognition System, CVPR 2017"
_DIGITS_CITE = (
    "Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning Repository (1998)"
)

DATASETS: MappingProxyType[str, DatasetSpec] = MappingProxyType(
    {
        "digits": DatasetSpec(
            name="digits",
            title="sklearn digits as simulated saccade events",
            sensor_size=(34, 34, 2),
            classes=DIGIT_CLASSES,
            default_time_bins=10,
            resolutions=(34,),
            needs_files=False,
            citation=_DIGITS_CITE,
            licence="CC BY 4.0",
            open_source=DigitsSource,
        ),
        "nmnist": DatasetSpec(
            name="nmnist",
            title="N-MNIST",
            sensor_size=tuple(tonic.datasets.NMNIST.sensor_size),
            classes=DIGIT_CLASSES,
            default_time_bins=10,
            resolutions=(34,),
            folder="NMNIST",
            citation=_NMNIST_CITE,
            licence="CC BY-SA 4.0",
            open_source=NMNISTSource,
        ),
        "dvsgesture": DatasetSpec(
            name="dvsgesture",
            title="DVS128 Gesture",
            sensor_size=tuple(tonic.datasets.DVSGesture.sensor_size),
            classes=tuple(tonic.datasets.DVSGesture.classes),
            default_time_bins=16,
            resolutions=(32, 64),
            window_us=1_500_000,
            denoise_us=10_000,
            folder="DVSGesture",
            citation=_DVS_CITE,
            licence="CC BY 4.0",
            open_source=DVSGestureSource,
        ),
    }
)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def default_data_dir() -> Path:
    """``$SPIKEFF_DATA`` if set, else ``./data`` (tonic's usual ``save_to``)."""
    return Path(os.environ.get("SPIKEFF_DATA", "data")).expanduser()
