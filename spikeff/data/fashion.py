"""``fashion``: Fashion-MNIST's 70,000 product photos as simulated saccade events.

The original idx files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``: 60,000 train and 10,000 test
28×28 grey images, 10 classes) are read from ``<data_dir>/FashionMNIST/``, else from where
Debian's ``dataset-fashion-mnist`` puts them (:data:`SYSTEM_DIR`). Each image is seen by the same
simulated saccading camera as the digits (:class:`~spikeff.data.saccade.SaccadeDVS`, default
settings: centred on a 34×34 canvas, three 100 ms saccades), so the frames have the digits' and
N-MNIST's shape. A sample's events depend only on (seed, split, index).

The test set is the ``t10k`` files; ``tune`` holds out a share of the 60,000 training images.
The files are decoded and checked whole when the dataset is opened (about a second): a missing,
truncated or malformed file is a :class:`DataError` naming it and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError
from .model import DatasetSpec, Sample
from .saccade import SaccadeDVS, SaccadeSource

CITATION = (
    "Xiao, Rasul & Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
    "Algorithms, arXiv:1708.07747 (2017)"
)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FOLDER = "FashionMNIST"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
SPLIT_FILES = {"train": "train", "test": "t10k"}  # split -> file prefix
SIDE = 28
EVENT_SEED = 0
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801  # idx: unsigned bytes, 3 and 1 dimensions


def idx_paths(folder: Path, prefix: str) -> tuple[Path, Path]:
    """The images and labels files of one split, e.g. ``train-images-idx3-ubyte.gz``."""
    return folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """A gzipped idx file of unsigned bytes, checked against the shape expected.

    Parameters
    ----------
    path : Path
        The ``.gz`` file.
    magic : int
        The idx magic number expected (``0x0803`` images, ``0x0801`` labels).
    shape : tuple of int
        The dimensions after the count, e.g. ``(28, 28)`` for images, ``()`` for labels.

    Returns
    -------
    np.ndarray
        ``uint8`` of shape ``(count, *shape)``.

    Raises
    ------
    DataError
        If the file cannot be read or decompressed (truncated or corrupt gzip), or its magic
        number, dimensions or length are not the expected ones.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except EOFError:
        raise DataError(f"{path}: gzip stream truncated (the file ends before the end-of-stream marker); "
                        "expected a complete gzipped idx file") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: unreadable ({exc}); expected a gzipped idx file") from None
    n_dims = 1 + len(shape)
    head = 4 * (1 + n_dims)
    if len(raw) < head:
        raise DataError(f"{path}: {len(raw)} bytes after gunzip, shorter than the {head}-byte idx header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: idx magic number 0x{found:08x}, expected 0x{magic:08x} "
                        f"(unsigned bytes, {n_dims} dimension{'s' if n_dims > 1 else ''})")
    count, *dims = (int.from_bytes(raw[4 * k : 4 * k + 4], "big") for k in range(1, 1 + n_dims))
    if tuple(dims) != shape:
        raise DataError(f"{path}: idx dimensions {count}x{'x'.join(map(str, dims))}, expected N x "
                        f"{'x'.join(map(str, shape))}")
    want = head + count * int(np.prod(shape, dtype=np.int64))
    if len(raw) != want:
        raise DataError(f"{path}: {len(raw)} bytes after gunzip, expected {want} for the {count} items its "
                        "header announces (truncated or padded)")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(count, *shape)


class FashionSource(SaccadeSource):
    """Fashion-MNIST's idx files rendered to events; ``t10k`` is the test split. Either split alone is enough.

    Raises
    ------
    DataError
        If no split's files are found, one of a split's two files is missing, or a file is
        truncated or malformed (:func:`read_idx`), or the labels do not match the images.
    """

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        folder = find_folder(root)
        self.simulator = SaccadeDVS()
        sim = hashlib.sha256(repr(self.simulator).encode()).hexdigest()[:12]
        self.splits = {}
        self.split_folders = {split: f"{prefix} files" for split, prefix in SPLIT_FILES.items()}
        pixels, seed_keys = [], []  # per row of self.pixels: its image, and (split code, index) for its seed
        for code, (split, prefix) in enumerate(SPLIT_FILES.items()):
            images_path, labels_path = idx_paths(folder, prefix)
            if not (images_path.exists() or labels_path.exists()):
                continue
            for p in (images_path, labels_path):
                if not p.is_file():
                    raise DataError(f"{p}: missing; the {prefix} split needs both {images_path.name} and "
                                    f"{labels_path.name} in {folder}")
            images = read_idx(images_path, IMAGES_MAGIC, (SIDE, SIDE))
            labels = read_idx(labels_path, LABELS_MAGIC, ())
            if len(labels) != len(images):
                raise DataError(f"{labels_path}: {len(labels)} labels, expected {len(images)}, one per image "
                                f"in {images_path.name}")
            if labels.size and labels.max() >= len(CLASSES):
                raise DataError(f"{labels_path}: label {int(labels.max())}, expected 0-{len(CLASSES) - 1}")
            content = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
            row0 = sum(len(a) for a in pixels)
            pixels.append(images)
            seed_keys.append(np.stack([np.full(len(images), code), np.arange(len(images))], axis=1))
            self.splits[split] = [
                Sample(key=f"fashion:{prefix}:{i}:{content}:{EVENT_SEED}:{sim}", label=int(y), index=row0 + i,
                       ident=f"{FOLDER}/{prefix}:{i}")
                for i, y in enumerate(labels.tolist())
            ]
        if not self.splits:
            raise DataError(f"Fashion-MNIST not found: expected {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz "
                            f"in {folder}" + (f" or in {SYSTEM_DIR}" if folder != SYSTEM_DIR else "")
                            + "; spikeff does not download it, see datasets/README.md")
        self.pixels, self.seed_keys = np.concatenate(pixels), np.concatenate(seed_keys)
        counts = ", ".join(f"{SPLIT_FILES[s]}: {len(v)} images" for s, v in self.splits.items())
        self.origin = (f"{folder} (idx files; {counts}) rendered to events by a simulated saccading DVS "
                       f"(seed {EVENT_SEED})")

    def inputs(self, samples: Sequence[Sample]) -> tuple[np.ndarray, list[np.random.SeedSequence]]:
        rows = np.array([x.index for x in samples], dtype=np.int64)
        seeds = [np.random.SeedSequence([EVENT_SEED, *map(int, k)]) for k in self.seed_keys[rows]]
        return self.pixels[rows].astype(np.float32) / 255.0, seeds


def find_folder(root: Path) -> Path:
    """``<root>/FashionMNIST`` if it exists, else Debian's :data:`SYSTEM_DIR` if that exists, else the former."""
    here = root / FOLDER
    return SYSTEM_DIR if not here.is_dir() and SYSTEM_DIR.is_dir() else here


SPEC = DatasetSpec(
    name="fashion",
    title="Fashion-MNIST as simulated saccade events",
    sensor_size=(SaccadeDVS.canvas, SaccadeDVS.canvas, 2),
    classes=CLASSES,
    default_time_bins=10,
    resolutions=(SaccadeDVS.canvas,),
    folder=FOLDER,
    citation=CITATION,
    licence="MIT",
    open_source=FashionSource,
)
