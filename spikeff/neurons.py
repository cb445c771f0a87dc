"""Stochastic leaky integrate-and-fire neurons.

Discrete-time model, one step per time bin (time-first tensors ``(T, B, ...)``)::

    v[t] = beta * u[t-1] + I[t]  (+ sigma * xi[t],  xi ~ N(0, 1))     membrane
    s[t] ~ Bernoulli(sigmoid((v[t] - theta) / delta))                  escape noise
    s[t] = H(v[t] - theta)                                             when delta == 0
    u[t] = v[t] * (1 - s[t])          (reset="zero", the default)
    u[t] = v[t] - theta * s[t]        (reset="subtract")

``delta`` is the temperature of the escape noise; ``delta = 0`` gives the deterministic
Heaviside. ``sigma`` adds Gaussian membrane noise (it stays in the membrane and
therefore diffuses) with a hard threshold. With ``delta = sigma = 0`` and zero reset
the model is exactly NIR's LIF discretised by forward Euler (see :mod:`spikeff.nir`).

Gradients reach ``v`` through a surrogate: with ``delta > 0`` the derivative of the
escape probability, ``sigmoid'((v - theta) / delta) / delta``; with ``delta = 0`` the
derivative of ``sigmoid(slope * (v - theta))``. The reset uses the detached spike.

Why not snntorch or norse: snntorch's ``Leaky`` evaluates its spike function twice per
step (once for the output, once for the reset), so a stochastic spike function would
give the spike and the reset from independent samples. norse's stochastic threshold
functions cannot be selected in its cells. Both are used where they fit: the BPTT
baseline and the NIR checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["LIFParams", "LIFState", "lif_step", "lif_scan", "StochasticLIF"]


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a stochastic LIF population (shared by all its neurons)."""

    beta: float = 0.9
    threshold: float = 1.0
    delta: float = 0.2
    sigma: float = 0.0
    reset: Literal["zero", "subtract"] = "zero"
    surrogate_slope: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.delta < 0 or self.sigma < 0:
            raise ValueError(f"delta and sigma must be >= 0, got delta={self.delta}, sigma={self.sigma}")
        if self.reset not in ("zero", "subtract"):
            raise ValueError(f"reset must be 'zero' or 'subtract', got {self.reset!r}")
        if self.surrogate_slope <= 0:
            raise ValueError(f"surrogate_slope must be positive, got {self.surrogate_slope}")

    @property
    def stochastic(self) -> bool:
        return self.delta > 0 or self.sigma > 0

    def deterministic(self) -> "LIFParams":
        """The same neuron with all noise switched off."""
        return LIFParams(self.beta, self.threshold, 0.0, 0.0, self.reset, self.surrogate_slope)


class LIFState(NamedTuple):
    """Membrane potential after the reset of the previous step."""

    v: Tensor


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Value of ``hard`` with the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def lif_step(
    current: Tensor, state: LIFState, p: LIFParams, generator: torch.Generator | None = None
) -> tuple[Tensor, LIFState]:
    """One time step. Returns the spikes (0/1, same shape as ``current``) and the new state."""
    v = p.beta * state.v + current
    if p.sigma > 0:
        v = v + p.sigma * torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
    x = v - p.threshold
    if p.delta > 0:
        prob = torch.sigmoid(x / p.delta)
        hard = (torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype) < prob.detach())
        spikes = _straight_through(hard.to(v.dtype), prob)
    else:
        hard = (x >= 0).to(v.dtype)
        spikes = _straight_through(hard, torch.sigmoid(p.surrogate_slope * x))
    s = spikes.detach()
    u = v * (1.0 - s) if p.reset == "zero" else v - p.threshold * s
    return spikes, LIFState(u)


def lif_scan(
    currents: Tensor,
    p: LIFParams,
    generator: torch.Generator | None = None,
    state: LIFState | None = None,
) -> tuple[Tensor, LIFState]:
    """Run :func:`lif_step` over the leading time axis of ``currents`` ``(T, ...)``.

    Returns spikes ``(T, ...)`` and the final state.
    """
    if currents.dim() < 2:
        raise ValueError(f"currents must be time-first (T, B, ...), got shape {tuple(currents.shape)}")
    if state is None:
        state = LIFState(torch.zeros_like(currents[0]))
    out = []
    for t in range(currents.shape[0]):
        s, state = lif_step(currents[t], state, p, generator)
        out.append(s)
    return torch.stack(out), state


class StochasticLIF(nn.Module):
    """Thin module around :func:`lif_scan`; holds only its (frozen) parameters."""

    def __init__(self, params: LIFParams = LIFParams()) -> None:
        super().__init__()
        self.params = params

    def forward(
        self, currents: Tensor, generator: torch.Generator | None = None, state: LIFState | None = None
    ) -> tuple[Tensor, LIFState]:
        return lif_scan(currents, self.params, generator, state)

    def extra_repr(self) -> str:
        return repr(self.params)
