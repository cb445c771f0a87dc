"""``nmnist``: N-MNIST, MNIST digits recorded by an ATIS camera on a saccading pan-tilt unit.

Layout (tonic's ``save_to`` layout, read without tonic's dataset class so that a partial copy
works): ``<data_dir>/NMNIST/{Train,Test}/<digit>/*.bin``, 5-byte events, 34×34×2 sensor, 10
classes. Either split alone is enough; tonic downloads both with ``download=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tonic

from .errors import DataError
from .model import BadSample, DatasetSpec, Sample, Source, check_bounds, file_sample, split_dirs, visible

CITATION = (
    "Orchard, Jayawant, Cohen & Thakor, Converting static image datasets to spiking neuromorphic datasets "
    "using saccades, Frontiers in Neuroscience 9:437 (2015)"
)
SENSOR_SIZE = tuple(tonic.datasets.NMNIST.sensor_size)  # (34, 34, 2)
CLASSES = tuple(tonic.datasets.NMNIST.classes)


class NMNISTSource(Source):
    """``<root>/NMNIST/{Train,Test}/<digit>/*.bin``; a partial copy or one split is fine."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        base = root / spec.folder
        self.split_folders = {"train": "Train", "test": "Test"}
        present = split_dirs(spec, root, self.split_folders, download,
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
        for label_dir in sorted(filter(visible, split_dir.iterdir())):
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
                    samples.append(file_sample(f, root, label))
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
        check_bounds(events, SENSOR_SIZE, path)
        return events


SPEC = DatasetSpec(
    name="nmnist",
    title="N-MNIST",
    sensor_size=SENSOR_SIZE,
    classes=CLASSES,
    default_time_bins=10,
    resolutions=(34,),
    folder="NMNIST",
    citation=CITATION,
    licence="CC BY-SA 4.0",
    open_source=NMNISTSource,
)
