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
from .model import BadSample, DatasetSpec, Sample, Source, check_times, file_sample, split_dirs, visible

CITATION = "Amir et al., A Low Power, Fully Event-Based Gesture Recognition System, CVPR 2017"
SENSOR_SIZE = tuple(tonic.datasets.DVSGesture.sensor_size)  # (128, 128, 2)
CLASSES = tuple(tonic.datasets.DVSGesture.classes)


class DVSGestureSource(Source):
    """``<root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy``."""

    def __init__(self, spec: DatasetSpec, root: Path, download: bool) -> None:
        base = root / spec.folder
        self.split_folders = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
        present = split_dirs(spec, root, self.split_folders, download,
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
        for user_dir in sorted(filter(visible, split_dir.iterdir())):
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
                samples.append(file_sample(f, root, int(f.stem)))
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
        check_times(raw[:, 3], self.spec.window_us)
        # tonic's DVSGesture.__getitem__: columns x,y,p,t with t in ms -> µs
        events = raw.astype(np.int64)
        events[:, 3] *= 1000
        return rfn.unstructured_to_structured(events, tonic.datasets.DVSGesture.dtype)


SPEC = DatasetSpec(
    name="dvsgesture",
    title="DVS128 Gesture",
    sensor_size=SENSOR_SIZE,
    classes=CLASSES,
    default_time_bins=16,
    resolutions=(32, 64),
    window_us=1_500_000,
    denoise_us=10_000,
    folder="DVSGesture",
    citation=CITATION,
    licence="CC BY 4.0",
    open_source=DVSGestureSource,
)
