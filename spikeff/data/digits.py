"""``digits``: scikit-learn's bundled 8×8 handwritten digits as simulated saccade event streams.

Each 8×8 image (UCI Optical Recognition of Handwritten Digits, 1,797 samples, shipped with
scikit-learn, no download) is upsampled to 28×28, centred on a 34×34 canvas and viewed by a
simulated event camera that moves in three straight saccades (a triangle, 100 ms each, like the
N-MNIST recordings). A pixel emits an ON (p=1) / OFF (p=0) event each time its log intensity
moves by more than a per-pixel contrast threshold since its last event (the usual DVS model);
event times are interpolated linearly inside each simulation step. A small seeded per-pixel
threshold jitter and sparse uniform noise events make the streams less perfect.

Events use tonic's N-MNIST dtype (x, y, t, p int64; t in µs; p in {0, 1}), so the N-MNIST
transforms apply unchanged. A sample depends only on (seed, sample index): the same seed gives
the same events whatever subset is generated.

As a dataset (:data:`SPEC`, read by :class:`DigitsSource`) the 1,797 samples are split once, by
a fixed seed, into a stratified 80% train and 20% test set; nothing is read from ``data_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tonic

from .model import DatasetSpec, Sample
from .saccade import CHUNK, SaccadeDVS, SaccadeSource
from .selection import stratified_split

CITATION = (
    "Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning Repository (1998)"
)
SENSOR_SIZE = (34, 34, 2)
CLASSES = tuple(tonic.datasets.NMNIST.classes)  # N-MNIST's class names: "0 - zero", ...
N_SAMPLES = 1797
SPLIT_SEED = 0
EVENT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DigitsEvents:
    """All 1,797 sklearn digits as event streams, generated lazily, held by this object only."""

    seed: int = 0
    simulator: SaccadeDVS = SaccadeDVS()

    @cached_property
    def labels(self) -> np.ndarray:
        return self._bunch[1]

    @cached_property
    def _bunch(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)

    def inputs(self, indices: Sequence[int]) -> tuple[np.ndarray, list[np.random.SeedSequence]]:
        """The images of the given sample indices and their seeds ``(seed, index)``."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._bunch[0][idx], [np.random.SeedSequence([self.seed, int(i)]) for i in idx]

    def generate(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Event streams for the given sample indices (deterministic per (seed, index))."""
        out: list[np.ndarray] = []
        for lo in range(0, len(indices), CHUNK):
            out += self.simulator.simulate(*self.inputs(indices[lo : lo + CHUNK]))
        return out


def make_digit_events(
    seed: int = 0, indices: Sequence[int] | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Events and labels of some of the sklearn digits.

    Parameters
    ----------
    seed : int
        Seeds the simulated camera (threshold jitter, noise events).
    indices : sequence of int, optional
        Which of the 1,797 images; default all of them.

    Returns
    -------
    tuple
        ``(events, labels)``: one structured event array per index (tonic's N-MNIST dtype) and
        the ``int64`` labels.
    """
    d = DigitsEvents(seed=seed)
    idx = np.arange(N_SAMPLES) if indices is None else np.asarray(indices)
    return d.generate(idx), d.labels[idx]


class DigitsSource(SaccadeSource):
    """sklearn's digits rendered to events; a fixed, seeded, stratified 80/20 train/test split."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        self.events = DigitsEvents(seed=EVENT_SEED, simulator=SaccadeDVS())
        self.simulator = self.events.simulator
        labels = self.events.labels
        train, test = stratified_split(labels, TEST_FRACTION, np.random.default_rng(SPLIT_SEED))
        sim = repr(self.events.simulator)
        self.split_folders = {"train": "train (fixed 80% of sklearn digits)", "test": "test"}
        self.splits = {
            name: [
                Sample(key=f"digits:{i}:{EVENT_SEED}:{sim}", label=int(labels[i]), index=int(i),
                       ident=f"digits:{i}:{EVENT_SEED}")
                for i in idx
            ]
            for name, idx in (("train", train), ("test", test))
        }
        self.origin = (
            f"sklearn.datasets.load_digits ({N_SAMPLES} 8x8 images, bundled, no download) rendered to "
            f"events by a simulated saccading DVS (seed {EVENT_SEED}); fixed stratified 80/20 split "
            f"(seed {SPLIT_SEED})"
        )

    def inputs(self, samples: Sequence[Sample]) -> tuple[np.ndarray, list[np.random.SeedSequence]]:
        return self.events.inputs([s.index for s in samples])


SPEC = DatasetSpec(
    name="digits",
    title="sklearn digits as simulated saccade events",
    sensor_size=SENSOR_SIZE,
    classes=CLASSES,
    default_time_bins=10,
    resolutions=(34,),
    citation=CITATION,
    licence="CC BY 4.0",
    open_source=DigitsSource,
)
