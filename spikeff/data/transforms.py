"""Event transforms that tonic 1.7 lacks or that need explicit seeding.

Everything else (cropping, denoising, downsampling, event dropping, jitter) is tonic's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import tonic
import tonic.functional


@dataclass(frozen=True)
class ToFrameBins:
    """Sum events into exactly ``n_time_bins`` equal time bins, shape ``(T, P, H, W)`` int16.

    Wraps :func:`tonic.functional.to_frame_numpy` (time-window slicing). tonic's own
    ``ToFrame(n_time_bins=T)`` floor-divides the duration and drops the last events of a sample
    (and returns all-empty bins when every event shares one timestamp); here every event inside
    ``[start_time, end_time)`` lands in exactly one bin, so a frame sums to its event count.
    ``start_time``/``end_time`` (µs) fix the window; ``None`` uses the sample's first/last event.
    An empty sample gives an all-zero frame.
    """

    sensor_size: tuple[int, int, int]
    n_time_bins: int
    start_time: int | None = None
    end_time: int | None = None

    def __call__(self, events: np.ndarray) -> np.ndarray:
        width, height, n_pol = self.sensor_size
        bins = self.n_time_bins
        empty = np.zeros((bins, n_pol, height, width), dtype=np.int16)
        if len(events) == 0:
            return empty
        t = events["t"]
        if np.any(t[1:] < t[:-1]):  # tonic's slicers assume time-sorted events
            events = events[np.argsort(t, kind="stable")]
            t = events["t"]
        start = int(t[0]) if self.start_time is None else int(self.start_time)
        if self.end_time is None:
            window = (int(t[-1]) - start) // bins + 1  # start + bins*window > last event
        else:
            window = -(-(int(self.end_time) - start) // bins)
        keep = t >= start
        if not keep.all():
            events = events[keep]
            if len(events) == 0:
                return empty
        return tonic.functional.to_frame_numpy(
            events,
            sensor_size=self.sensor_size,
            time_window=window,
            start_time=start,
            end_time=start + bins * window,
        ).astype(np.int16, copy=False)


@contextlib.contextmanager
def _numpy_global_state_from(rng: np.random.Generator) -> Iterator[None]:
    # tonic's random transforms draw from numpy's legacy global RNG and accept no generator.
    # Seed it from our explicit generator for the duration of the call and restore it after,
    # so the draw is reproducible and no global state leaks out.
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(0, 2**32 - 1)))
    try:
        yield
    finally:
        np.random.set_state(saved)


@dataclass(frozen=True)
class EventAugment:
    """Training-time augmentation on events, before framing; every draw comes from ``rng``.

    1. a random global translation by up to ``max_shift`` pixels in x and y (events moved off
       the sensor are dropped; tonic 1.7 has no translation transform),
    2. ``tonic.transforms.SpatialJitter`` with variance ``jitter_var`` (skipped when 0),
    3. ``tonic.transforms.DropEvent`` with a drop probability drawn from ``[0, drop_p]``.
    """

    sensor_size: tuple[int, int, int]
    max_shift: int = 2
    jitter_var: float = 0.0
    drop_p: float = 0.1
    _tonic: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps: list = []
        if self.jitter_var > 0:
            steps.append(
                tonic.transforms.SpatialJitter(
                    sensor_size=self.sensor_size,
                    var_x=self.jitter_var,
                    var_y=self.jitter_var,
                    clip_outliers=True,
                )
            )
        if self.drop_p > 0:
            steps.append(tonic.transforms.DropEvent(p=(0.0, float(self.drop_p))))
        object.__setattr__(self, "_tonic", tuple(steps))

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = events.copy()
        if self.max_shift > 0 and len(events):
            dx, dy = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
            x = events["x"].astype(np.int64) + dx
            y = events["y"].astype(np.int64) + dy
            inside = (x >= 0) & (x < self.sensor_size[0]) & (y >= 0) & (y < self.sensor_size[1])
            events = events[inside]
            events["x"] = x[inside]
            events["y"] = y[inside]
        if self._tonic and len(events):
            with _numpy_global_state_from(rng):
                for step in self._tonic:
                    events = step(events)
        return events


def compose(steps: Sequence) -> tonic.transforms.Compose:
    """tonic ``Compose`` of the non-``None`` steps."""
    return tonic.transforms.Compose([s for s in steps if s is not None])
