"""``dvsgesture``: IBM's DVS128 Gesture, 11 hand and arm gestures by 29 people under 5 lightings.

Layout (tonic's preprocessed layout, read without tonic's dataset class so that a partial copy
works): ``<data_dir>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy``,
each an integer ``(N, 4)`` array of x, y, p, t (t in ms), 128×128×2 sensor. Clips are cut to a
1.5 s window, denoised and downsampled to 32×32 (or 64×64) before framing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
import tonic

from .errors import DataError
from .model import BadSample, FileSource, FolderLayout, Sample, check_bounds, check_times, file_sample

CITATION = "Amir et al., A Low Power, Fully Event-Based Gesture Recognition System, CVPR 2017"


class DVSGestureSource(FileSource):
    """``<root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy``."""

    layout = FolderLayout(
        "DVSGesture", {"train": "ibmGestureTrain", "test": "ibmGestureTest"}, subfolder=r"user\d+_.+",
        files="user<NN>_<lighting>/<label>.npy",
        download_size="tonic's preprocessed ibmGestureTrain.tar.gz + ibmGestureTest.tar.gz, a few GB extracted")

    def folder_samples(self, folder: Path, root: Path) -> list[Sample]:
        n_classes = self.spec.n_classes
        samples = []
        for f in sorted(folder.glob("*.npy")):
            if not re.fullmatch(r"\d+", f.stem) or int(f.stem) >= n_classes:
                raise DataError(f"{f}: expected a file named <label>.npy with label 0-{n_classes - 1}")
            samples.append(file_sample(f, root, int(f.stem)))
        return samples

    def load(self, path: Path, size: int) -> np.ndarray:
        return np.load(path)

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim != 2 or raw.shape[1] != 4 or not np.issubdtype(raw.dtype, np.integer):
            raise BadSample(
                f"unexpected array {raw.dtype}{raw.shape}; expected integer columns x,y,p,t (N, 4)"
            )
        # checked before the conversion to tonic's dtype (int16 x, y; bool p), which would hide bad values
        check_bounds(raw[:, 0], raw[:, 1], raw[:, 2], self.spec.sensor_size, path)
        check_times(raw[:, 3], self.spec.window_us)
        check_monotonic(raw[:, 3])
        # tonic's DVSGesture.__getitem__: columns x,y,p,t with t in ms -> µs
        events = raw.astype(np.int64)
        events[:, 3] *= 1000
        return rfn.unstructured_to_structured(events, tonic.datasets.DVSGesture.dtype)


def check_monotonic(t_ms: np.ndarray) -> None:
    """Refuse a clip whose timestamps go backwards: tonic's files are sorted by time, so a step back is a
    wrapped counter (e.g. saved in too small an integer type) or a shuffled file, and would frame wrongly.

    Parameters
    ----------
    t_ms : np.ndarray
        A clip's timestamps in milliseconds, in file order.

    Raises
    ------
    BadSample
        If any timestamp is smaller than the one before it.
    """
    t = t_ms.astype(np.int64)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0])
        raise BadSample(f"timestamps go backwards at {back.size} events (first: event {i + 1}, "
                        f"{t[i]} -> {t[i + 1]} ms; {t_ms.dtype} timestamps); a wrapped or unsorted time counter")


SPEC = DVSGestureSource.make_spec(
    name="dvsgesture",
    title="DVS128 Gesture",
    default_time_bins=16,
    resolutions=(32, 64),
    window_us=1_500_000,
    denoise_us=10_000,
    citation=CITATION,
    licence="CC BY 4.0",
)
