"""A simulated event camera on a saccading mount, shared by the image datasets (``digits``, ``fashion``).

A static image is centred on a canvas and viewed by a camera that moves in straight saccades (a
triangle, 100 ms each, like the N-MNIST recordings). A pixel emits an ON (p=1) / OFF (p=0) event
each time its log intensity moves by more than a per-pixel contrast threshold since its last
event (the usual DVS model); event times are interpolated linearly inside each simulation step.
A small seeded per-pixel threshold jitter and sparse uniform noise events make the streams less
perfect. Events use tonic's N-MNIST dtype (x, y, t, p int64; t in µs; p in {0, 1}).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tonic
import torch

from .model import BadSample, Sample, Source

__all__ = ["CHUNK", "EVENT_DTYPE", "SaccadeDVS", "SaccadeSource"]

EVENT_DTYPE = tonic.datasets.NMNIST.dtype
CHUNK = 128  # images simulated together: bounds peak memory


@dataclass(frozen=True)
class SaccadeDVS:
    """A vectorised DVS simulator for a camera moving over a static image.

    Parameters are in pixels, microseconds and natural-log intensity units.
    """

    canvas: int = 34
    digit_size: int = 28
    path: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.5, 3.0), (3.0, 0.0), (0.0, 0.0))
    saccade_us: int = 100_000
    step_us: int = 4_000
    threshold: float = 0.2
    threshold_jitter: float = 0.05  # relative std of the per-pixel threshold
    log_eps: float = 0.1  # log(I + eps): keeps the black background finite
    noise_per_sample: float = 10.0  # mean number of uniform noise events per sample

    @property
    def duration_us(self) -> int:
        return self.saccade_us * (len(self.path) - 1)

    def render(self, images: np.ndarray) -> np.ndarray:
        """``(N, h, w)`` images in [0, 1] → ``(N, canvas, canvas)`` float32, digit centred."""
        up = torch.nn.functional.interpolate(
            torch.as_tensor(images, dtype=torch.float32)[:, None],
            size=(self.digit_size, self.digit_size),
            mode="bilinear",
            align_corners=False,
        )[:, 0].clamp_(0.0, 1.0)
        out = np.zeros((len(images), self.canvas, self.canvas), dtype=np.float32)
        o = (self.canvas - self.digit_size) // 2
        out[:, o : o + self.digit_size, o : o + self.digit_size] = up.numpy()
        return out

    def _offsets(self) -> np.ndarray:
        """Camera offset (dx, dy) at each step boundary, centred on the path's midpoint."""
        pts = np.asarray(self.path, dtype=np.float64)
        pts = pts - (pts.min(0) + pts.max(0)) / 2
        n_steps = self.duration_us // self.step_us
        t = np.arange(n_steps + 1) * self.step_us / self.saccade_us
        seg = np.minimum(t.astype(int), len(pts) - 2)
        frac = (t - seg)[:, None]
        return pts[seg] * (1 - frac) + pts[seg + 1] * frac

    def simulate(self, images: np.ndarray, seeds: Sequence[np.random.SeedSequence]) -> list[np.ndarray]:
        """Event streams for ``(N, h, w)`` images in [0, 1], one seed per image."""
        canvas = self.render(images)
        n, size = len(canvas), self.canvas
        rngs = [np.random.default_rng(s) for s in seeds]
        theta = (
            np.stack(
                [self.threshold * (1 + self.threshold_jitter * r.standard_normal((size, size))) for r in rngs]
            )
            .clip(0.5 * self.threshold)
            .astype(np.float32)
            .reshape(n, -1)
        )
        inv_theta = 1.0 / theta
        pad = 4
        padded = np.pad(canvas, ((0, 0), (pad, pad), (pad, pad)))

        def view(dx: float, dy: float) -> np.ndarray:  # image seen with the camera offset by (dx, dy)
            ix, iy = int(np.floor(dx)), int(np.floor(dy))
            fx, fy = dx - ix, dy - iy
            ys, xs = pad - iy, pad - ix
            a = padded[:, ys : ys + size, xs : xs + size]
            b = padded[:, ys : ys + size, xs - 1 : xs - 1 + size]
            c = padded[:, ys - 1 : ys - 1 + size, xs : xs + size]
            d = padded[:, ys - 1 : ys - 1 + size, xs - 1 : xs - 1 + size]
            fx, fy = np.float32(fx), np.float32(fy)
            return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)

        offsets = self._offsets()
        eps = np.float32(self.log_eps)
        ref = np.log(view(*offsets[0]) + eps).reshape(n, -1)
        parts: list[tuple[np.ndarray, ...]] = []
        for k in range(1, len(offsets)):
            diff = np.log(view(*offsets[k]) + eps).reshape(n, -1)
            diff -= ref
            flat = np.flatnonzero(np.abs(diff) >= theta)
            if len(flat) == 0:
                continue
            d = diff.ravel()[flat]
            th = theta.ravel()[flat]
            c = np.floor(np.abs(d) * inv_theta.ravel()[flat]).astype(np.int64)
            ref.ravel()[flat] += np.sign(d) * c * th
            rep = np.repeat(np.arange(len(c)), c)
            m = np.arange(len(rep)) - np.repeat(np.cumsum(c) - c, c) + 1  # 1..c within a pixel
            frac = m * th[rep] / np.abs(d[rep])  # linear crossing time inside the step
            t = ((k - 1 + frac) * self.step_us).astype(np.int64)
            s, pix = np.divmod(flat[rep], size * size)
            y, x = np.divmod(pix, size)
            parts.append((s, x, y, t, (d[rep] > 0).astype(np.int64)))
        s, x, y, t, p = (np.concatenate(col) for col in zip(*parts)) if parts else [np.zeros(0, np.int64)] * 5
        noise = [self._noise(r) for r in rngs]
        ns = np.repeat(np.arange(n), [len(a[0]) for a in noise])
        if len(ns):
            s = np.concatenate([s, ns])
            x, y, t, p = (np.concatenate([col, *(a[i] for a in noise)]) for i, col in enumerate((x, y, t, p)))
        order = np.lexsort((t, s))
        s, x, y, t, p = s[order], x[order], y[order], t[order], p[order]
        bounds = np.searchsorted(s, np.arange(n + 1))
        out = []
        for i in range(n):
            sl = slice(bounds[i], bounds[i + 1])
            ev = np.empty(bounds[i + 1] - bounds[i], dtype=EVENT_DTYPE)
            ev["x"], ev["y"], ev["t"], ev["p"] = x[sl], y[sl], t[sl], p[sl]
            out.append(ev)
        return out

    def _noise(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        k = int(rng.poisson(self.noise_per_sample))
        return (
            rng.integers(0, self.canvas, k),
            rng.integers(0, self.canvas, k),
            rng.integers(0, self.duration_us, k),
            rng.integers(0, 2, k),
        )


class SaccadeSource(Source):
    """Samples that are static images seen by :attr:`simulator`: the reader the image datasets share.

    A subclass sets ``simulator`` and says which image and seed each sample has (:meth:`inputs`);
    a sample's events then depend only on that image and seed, whatever else is read with it.
    """

    simulator: SaccadeDVS

    def inputs(self, samples: Sequence[Sample]) -> tuple[np.ndarray, list[np.random.SeedSequence]]:
        """The samples' ``(N, h, w)`` images in [0, 1] and one seed each (a subclass's part)."""
        raise NotImplementedError

    def read(self, sample: Sample) -> np.ndarray:
        return self.simulator.simulate(*self.inputs([sample]))[0]

    def read_chunks(self, samples: Sequence[Sample]) -> Iterator[list[np.ndarray | BadSample]]:
        for lo in range(0, len(samples), CHUNK):
            yield list(self.simulator.simulate(*self.inputs(samples[lo : lo + CHUNK])))
