"""``nmnist``: N-MNIST, MNIST digits recorded by an ATIS camera on a saccading pan-tilt unit.

Layout (tonic's ``save_to`` layout, read without tonic's dataset class so that a partial copy
works): ``<data_dir>/NMNIST/{Train,Test}/<digit>/*.bin``, 5-byte events, 34×34×2 sensor, 10
classes. Either split alone is enough; tonic downloads both with ``download=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tonic

from .model import BadSample, FileSource, FolderLayout, Sample, check_bounds, file_sample

CITATION = (
    "Orchard, Jayawant, Cohen & Thakor, Converting static image datasets to spiking neuromorphic datasets "
    "using saccades, Frontiers in Neuroscience 9:437 (2015)"
)


class NMNISTSource(FileSource):
    """``<root>/NMNIST/{Train,Test}/<digit>/*.bin``; a partial copy or one split is fine."""

    layout = FolderLayout("NMNIST", {"train": "Train", "test": "Test"}, subfolder=r"[0-9]", files="<digit>/*.bin",
                          download_size="train.zip + test.zip, about 1.2 GB extracted")

    def folder_samples(self, folder: Path, root: Path) -> list[Sample]:
        label = int(folder.name)
        return [file_sample(f, root, label) for f in sorted(folder.glob("*.bin")) if f.is_file()]

    def load(self, path: Path, size: int) -> np.ndarray:
        if size % 5:
            raise BadSample(f"truncated: {size} bytes is not a multiple of 5 (N-MNIST events are 5 bytes)")
        return tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        check_bounds(raw["x"], raw["y"], raw["p"], self.spec.sensor_size, path)
        return raw


SPEC = NMNISTSource.make_spec(
    name="nmnist",
    title="N-MNIST",
    default_time_bins=10,
    resolutions=(34,),
    citation=CITATION,
    licence="CC BY-SA 4.0",
)
