"""The dataset model: what a dataset is (:class:`DatasetSpec`), where its samples come from
(:class:`Source`, one per dataset file: ``digits.py``, ``fashion.py``, ``nmnist.py``,
``dvsgesture.py``), and the checks and file helpers the sources share: :class:`FileSource` finds,
downloads and reads files in tonic's ``save_to`` layout (a :class:`FolderLayout`), and the file
datasets subclass it with their layout and decoding.

A spec describes a dataset (sensor, classes, default time bins, default transforms); its
``open_source`` finds the samples (files in tonic's ``save_to`` layout, or generated digits) and
reads one sample into tonic-style structured events. Everything after that -- tonic transforms,
framing, caching, splitting -- is the single pipeline in :mod:`spikeff.data.pipeline`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tonic

from .errors import DataError
from .transforms import EventAugment, ToFrameBins, compose


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


def labels_of(samples: Sequence[Sample]) -> np.ndarray:
    """The samples' labels as an int64 array."""
    return np.array([x.label for x in samples], dtype=np.int64)


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
    """A catalog entry: what a dataset is and how it becomes frames.

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


# ----------------------------------------------------------------------------- shared by the file sources


def file_sample(path: Path, root: Path, label: int) -> Sample:
    """The :class:`Sample` for a file under ``root``.

    Parameters
    ----------
    path : Path
        The sample's file.
    root : Path
        The ``data_dir``; the identity is the path relative to it, plus the size.
    label : int
        The class index.

    Returns
    -------
    Sample
        Keyed by identity and modification time, so a changed file misses the cache.
    """
    st = path.stat()
    ident = f"{path.relative_to(root).as_posix()}:{st.st_size}"
    return Sample(key=f"{ident}:{st.st_mtime_ns}", label=label, path=path, ident=ident)


def visible(p: Path) -> bool:
    """``False`` for hidden entries (names starting with a dot), which the scans skip."""
    return not p.name.startswith(".")


def check_bounds(x: np.ndarray, y: np.ndarray, p: np.ndarray, sensor: tuple[int, int, int], path: Path) -> None:
    """Refuse events outside the sensor.

    The fields are compared exactly as read, whatever their integer dtype, so a caller checks
    the file's own columns before any narrowing conversion (DVS Gesture's tonic dtype has
    ``int16`` x/y and ``bool`` p, which would wrap or fold bad values into good ones).

    Parameters
    ----------
    x, y, p : np.ndarray
        The events' integer columns or structured fields, as read from the file.
    sensor : tuple of int
        tonic's ``(W, H, P)``.
    path : Path
        The file they came from, named in the error.

    Raises
    ------
    DataError
        If an event lies outside ``W x H`` or has a polarity other than 0 or 1.
    """
    w, h, _ = sensor
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | ((p != 0) & (p != 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {int(bad.sum())} events outside the {w}x{h}x2 sensor "
            f"(first: x={int(x[i])}, y={int(y[i])}, p={int(p[i])}); expected 0<=x<{w}, 0<=y<{h}, p in {{0,1}}"
        )


MAX_CLIP_MS = 3_600_000  # an hour: later timestamps in a ~1.5 s clip are a wrapped or corrupt counter


def check_times(t_ms: np.ndarray, window_us: int | None) -> None:
    """Refuse timestamps that cannot be right: they would give all-zero frames without a word.

    Parameters
    ----------
    t_ms : np.ndarray
        A clip's timestamps in milliseconds.
    window_us : int or None
        The binned time window (:attr:`DatasetSpec.window_us`), if fixed.

    Raises
    ------
    BadSample
        For negative timestamps, timestamps over :data:`MAX_CLIP_MS`, or no event in the window.
    """
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


@dataclass(frozen=True)
class FolderLayout:
    """Where a file dataset's samples lie: ``<data_dir>/<tonic_name>/<split folder>/<files>``.

    Parameters
    ----------
    tonic_name : tonic's dataset class in ``tonic.datasets``, also the folder under ``data_dir``.
    split_folders : ``{"train": folder, "test": folder}`` as tonic names them.
    subfolder : regular expression that a folder inside a split must match.
    files : what lies below a split folder, for the messages, e.g. ``"<digit>/*.bin"``.
    download_size : what tonic's download is, for the message printed before it starts.
    """

    tonic_name: str
    split_folders: Mapping[str, str]
    subfolder: str
    files: str
    download_size: str

    @property
    def kind(self) -> str:
        """What the samples are, plural, e.g. ``".bin files"``."""
        return f"{Path(self.files).suffix} files"


class FileSource(Source):
    """Samples stored as files in tonic's ``save_to`` layout, read without tonic's dataset class.

    The files lie as :attr:`layout` says; a partial copy or one split alone is fine, and tonic
    downloads both splits when none is present and ``download`` is set. A dataset file
    (``nmnist.py``, ``dvsgesture.py``) subclasses this with its :class:`FolderLayout`, the
    samples of one subfolder (:meth:`folder_samples`) and the decoding of one file
    (:meth:`load`, :meth:`decode`).

    Parameters
    ----------
    spec : DatasetSpec
        The dataset, as :meth:`make_spec` builds it.
    root : Path
        The ``data_dir``.
    download : bool
        Let tonic download the dataset when no split folder exists.

    Raises
    ------
    DataError
        If no split folder exists, the download fails, or the layout is not the expected one.
    """

    layout: FolderLayout

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        self.spec = spec
        self.split_folders = dict(self.layout.split_folders)
        base, lay = root / spec.folder, self.layout
        present = self._split_dirs(root, download)
        if not present:
            train, test = (f"{base}/{self.split_folders[s]}/{lay.files}" for s in ("train", "test"))
            raise DataError(
                f"{spec.title} not found: expected {train} and/or {test}, tonic's {lay.tonic_name} layout under "
                f"data_dir={root}. Pass download=True (CLI: --download) to let tonic download it, or see "
                "datasets/README.md for manual download."
            )
        self.splits = {s: self._scan(d, root) for s, d in present.items()}
        counts = ", ".join(f"{self.split_folders[s]}: {len(v)} {lay.kind}" for s, v in self.splits.items())
        self.origin = f"{base} (local tonic layout; {counts})"

    @classmethod
    def make_spec(cls, **fields: Any) -> DatasetSpec:
        """The :class:`DatasetSpec` of the dataset this class reads.

        Parameters
        ----------
        **fields
            The spec's other fields (name, title, default time bins, ...).

        Returns
        -------
        DatasetSpec
            With ``sensor_size`` and ``classes`` from tonic's dataset class, ``folder`` its
            name, and ``open_source`` this class.
        """
        dataset = getattr(tonic.datasets, cls.layout.tonic_name)
        return DatasetSpec(sensor_size=tuple(dataset.sensor_size), classes=tuple(dataset.classes),
                           folder=cls.layout.tonic_name, open_source=cls, **fields)

    def _split_dirs(self, root: Path, download: bool) -> dict[str, Path]:
        """``{split: folder}`` for the split folders present, after tonic's download if none is."""
        base = root / self.spec.folder

        def present() -> dict[str, Path]:
            return {s: base / f for s, f in self.split_folders.items() if (base / f).is_dir()}

        found = present()
        if found or not download:
            return found
        print(f"spikeff: downloading {self.spec.title} with tonic into {base} ({self.layout.download_size}) ...",
              file=sys.stderr)
        dataset = getattr(tonic.datasets, self.layout.tonic_name)  # looked up now: tests stand a fake in
        for train in (True, False):
            try:
                dataset(save_to=str(root), train=train)
            except Exception as exc:  # network, checksum or disk errors from tonic
                raise DataError(
                    f"downloading {self.spec.title} into {base} failed: {exc!r}. "
                    f"Download manually (see datasets/README.md) and unpack into {base}."
                ) from exc
        return present()

    def _scan(self, split_dir: Path, root: Path) -> list[Sample]:
        samples: list[Sample] = []
        for folder in sorted(filter(visible, split_dir.iterdir())):
            if not folder.is_dir():
                continue  # stray files next to the subfolders are ignored, as tonic does
            if not re.fullmatch(self.layout.subfolder, folder.name):
                raise DataError(f"{folder}: unexpected folder; expected {split_dir}/{self.layout.files}")
            samples += self.folder_samples(folder, root)
        if not samples:
            raise DataError(f"{split_dir}: no {self.layout.kind} found; expected {split_dir}/{self.layout.files}")
        return samples

    def folder_samples(self, folder: Path, root: Path) -> list[Sample]:
        """The samples in one subfolder of a split (its name already checked).

        Parameters
        ----------
        folder : Path
            The subfolder.
        root : Path
            The ``data_dir``, for :func:`file_sample`.

        Returns
        -------
        list of Sample
            In file name order.

        Raises
        ------
        NotImplementedError
            Always, in this base class; each dataset's subclass overrides it.
        """
        raise NotImplementedError

    def read(self, sample: Sample) -> np.ndarray:
        """Decode one file into tonic-style structured events.

        Parameters
        ----------
        sample : Sample
            A sample of this source.

        Returns
        -------
        np.ndarray
            Structured events in the tonic dataset's dtype.

        Raises
        ------
        BadSample
            If the file is empty or unreadable, or :meth:`load` or :meth:`decode` refuses its contents.
        DataError
            If :meth:`decode` finds an event outside the sensor (:func:`check_bounds`).
        """
        path = sample.path
        assert path is not None
        try:
            size = path.stat().st_size
            if size == 0:
                raise BadSample("empty file")
            raw = self.load(path, size)
        except (OSError, ValueError, EOFError) as exc:
            raise BadSample(f"unreadable ({exc})") from exc
        return self.decode(raw, path)

    def load(self, path: Path, size: int) -> np.ndarray:
        """Read a non-empty file's contents; ``OSError``, ``ValueError`` and ``EOFError`` mean unreadable.

        Parameters
        ----------
        path : Path
            The file.
        size : int
            Its size in bytes.

        Returns
        -------
        np.ndarray
            What :meth:`decode` takes.

        Raises
        ------
        NotImplementedError
            Always, in this base class; each dataset's subclass overrides it.
        """
        raise NotImplementedError

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Check what :meth:`load` read and turn it into structured events.

        Parameters
        ----------
        raw : np.ndarray
            What :meth:`load` returned.
        path : Path
            The file, named in errors.

        Returns
        -------
        np.ndarray
            ``raw`` as structured events (the tonic dataset's dtype).

        Raises
        ------
        NotImplementedError
            In this base class; a subclass raises ``BadSample`` or ``DataError`` for contents it refuses.
        """
        raise NotImplementedError
