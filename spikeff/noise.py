"""Trial noise: what makes the ``n`` trials of one input differ.

Two sources, each seeded by the caller's ``torch.Generator``:

* **intrinsic neuron noise**, the neurons' own: escape noise (``LIFParams.delta``) and membrane
  noise (``LIFParams.sigma``), drawn inside the LIF scan (:mod:`spikeff.neurons`); every layer's
  trials differ by it.
* **sensor-level perturbations**, applied to the input frames before the first layer: each is a
  small frozen dataclass whose ``apply(frames, generator)`` perturbs every trial copy on its own.

  - :class:`EventThinning` keeps each event with probability ``keep`` (event drop);
  - :class:`Shift` translates each copy by a random integer ``(dy, dx)``;
  - :class:`InputDropout` zeroes each input entry (pixel, polarity, bin) with probability ``p`` and
    scales the rest by ``1 / (1 - p)``: the input dropout of the seed's method.

:class:`TrialNoise` expands a batch into its trials and applies a sequence of perturbations in
order; :func:`trial_noise` builds it from the training settings (``input_keep``, ``input_shift``,
``input_dropout``). A new perturbation is one dataclass here and one line in :func:`trial_noise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Perturbation", "EventThinning", "Shift", "InputDropout", "TrialNoise", "trial_noise", "expand_trials"]


class Perturbation(Protocol):
    """A sensor-level perturbation of trial copies ``(T, n * B, C, H, W)``, drawn from ``generator``."""

    def apply(self, frames: Tensor, generator: torch.Generator | None) -> Tensor: ...


def expand_trials(x: Tensor, trials: int) -> Tensor:
    """``(T, B, ...) -> (T, trials * B, ...)``, trial-major.

    Parameters
    ----------
    x : time-first ``(T, B, ...)``.
    trials : copies per input.

    Returns
    -------
    Tensor ``(T, trials * B, ...)`` (an expanded view; ``x`` itself when ``trials == 1``).
    """
    if trials == 1:
        return x
    return x.unsqueeze(1).expand(x.shape[0], trials, *x.shape[1:]).flatten(1, 2)


@dataclass(frozen=True)
class EventThinning:
    """Keep each event with probability ``keep``: binomial thinning of the event counts."""

    keep: float

    def apply(self, frames: Tensor, generator: torch.Generator | None) -> Tensor:
        """Thinned ``frames`` (event counts, any shape)."""
        return torch.binomial(frames.contiguous(), torch.full_like(frames, self.keep), generator=generator)


@dataclass(frozen=True)
class Shift:
    """Translate each copy by an integer ``(dy, dx)`` drawn uniformly from ``[-shift, shift]``.

    The same offset for all the copy's time bins; zeros come in at the border.
    """

    shift: int

    def apply(self, frames: Tensor, generator: torch.Generator | None) -> Tensor:
        """Shifted ``frames`` ``(T, N, C, H, W)``."""
        s, n, (h, w) = self.shift, frames.shape[1], frames.shape[-2:]
        d = torch.randint(-s, s + 1, (n, 2), generator=generator, device=frames.device).tolist()
        padded = F.pad(frames, (s,) * 4)
        return torch.stack([padded[:, i, :, s - dy:s - dy + h, s - dx:s - dx + w] for i, (dy, dx) in enumerate(d)], 1)


@dataclass(frozen=True)
class InputDropout:
    """Zero each input entry with probability ``p`` and scale the others by ``1 / (1 - p)`` (inverted dropout)."""

    p: float

    def apply(self, frames: Tensor, generator: torch.Generator | None) -> Tensor:
        """``frames`` with dropout, any shape."""
        keep = torch.rand(frames.shape, generator=generator, device=frames.device) >= self.p
        return frames * keep.to(frames.dtype) / (1.0 - self.p)


@dataclass(frozen=True)
class TrialNoise:
    """``trials`` copies of each input, each perturbed by ``perturbations`` in order."""

    perturbations: tuple[Perturbation, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.perturbations)

    def apply(self, frames: Tensor, trials: int, generator: torch.Generator | None) -> Tensor:
        """``(T, B, C, H, W) -> (T, trials * B, C, H, W)``, trial-major, every copy perturbed on its own.

        Parameters
        ----------
        frames : time-first frames of event counts ``(T, B, C, H, W)``.
        trials : copies per input.
        generator : source of the draws.

        Returns
        -------
        Tensor ``(T, trials * B, C, H, W)``.
        """
        h = expand_trials(frames, trials)
        for p in self.perturbations:
            h = p.apply(h, generator)
        return h


def trial_noise(keep: float = 1.0, shift: int = 0, dropout: float = 0.0) -> TrialNoise:
    """The sensor-level trial noise the settings select: thinning, then shift, then dropout.

    Parameters
    ----------
    keep : :class:`EventThinning`'s ``keep``; 1: none.
    shift : :class:`Shift`'s ``shift``; 0: none.
    dropout : :class:`InputDropout`'s ``p``; 0: none.

    Returns
    -------
    TrialNoise, empty (false) when nothing is selected.

    Raises
    ------
    ValueError : ``keep`` not in (0, 1], ``shift < 0`` or ``dropout`` not in [0, 1).
    """
    if not 0.0 < keep <= 1.0 or shift < 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"need 0 < keep <= 1, shift >= 0 and 0 <= dropout < 1, got {keep}, {shift}, {dropout}")
    chosen: Sequence[Perturbation | None] = (
        EventThinning(keep) if keep < 1.0 else None, Shift(shift) if shift > 0 else None,
        InputDropout(dropout) if dropout > 0.0 else None)
    return TrialNoise(tuple(p for p in chosen if p is not None))
