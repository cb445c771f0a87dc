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

Gradients reach ``v`` through a surrogate; the reset uses the detached spike.

* Escape noise is threshold noise: with the uniform ``U[t]`` that draws the spike,
  ``s[t] = H(v[t] - theta[t])`` at the trial's own threshold ``theta[t] = theta + delta * logit(U[t])``
  gives exactly the spikes of ``U[t] < sigmoid((v[t] - theta) / delta)``. The default
  (``gradient="pathwise"``) differentiates that per-trial event with the surrogate
  ``sigmoid(k * (v[t] - theta[t]) / delta)``, ``k = sharpness``. A trial near its own threshold
  gets a large gradient and one far from it a small one, so the gradient of a statistic of the
  trial-to-trial *deviations* (a variance, a covariance) points the way that statistic moves in
  expectation. Its mean over ``U`` tends to the derivative of the spike probability as ``k``
  grows.
* ``gradient="expected"`` passes the derivative of the spike probability,
  ``sigmoid'((v - theta) / delta) / delta``, the same for every trial: right for the mean
  spike, blind to the variance (on one Bernoulli unit its gradient of the variance is
  exactly 0).
* With ``delta = 0`` (membrane noise or none), the derivative of ``sigmoid(slope * (v - theta))``;
  membrane noise with a hard threshold is pathwise already.

The scans over time (eager, fused, compiled) are generic over any neuron model and live in
:mod:`spikeff.scan`; ``LIFParams`` implements its :class:`~spikeff.scan.NeuronModel` protocol
(``init_state``, ``draw``, ``step``, ``deterministic``, ``stochastic``). :func:`lif_scan`, :func:`lif_scan_fused`
and :class:`CompiledLIFScan` are those scans under their LIF names. A new neuron model is one
such dataclass in its own file plus a line in :data:`NEURON_MODELS`.

Why not snntorch or norse: snntorch's ``Leaky`` evaluates its spike function twice per
step (once for the output, once for the reset), so a stochastic spike function would
give the spike and the reset from independent samples. norse's stochastic threshold
functions cannot be selected in its cells. Both are used where they fit: the BPTT
baseline and the NIR checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .choices import check_choices
from .scan import (
    SCAN_BACKENDS,
    CompiledScan,
    NeuronModel,
    ScanBackend,
    ScanFn,
    draw_noise,
    eager_scan,
    fused_scan,
    make_scan,
    needs_graph,
    state_dtype,
)

__all__ = [
    "LIFParams", "LIFState", "Gradient", "LIFNoise", "ScanBackend", "SCAN_BACKENDS", "ScanFn", "lif_step",
    "lif_scan", "escape_surrogate", "draw_noise", "lif_scan_fused", "CompiledLIFScan", "make_scan", "state_dtype",
    "StochasticLIF", "ReLUParams", "NEURON_MODELS", "neuron_to_dict", "neuron_class", "neuron_from_dict",
]

Gradient = Literal["pathwise", "expected"]
Reset = Literal["zero", "subtract"]


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a stochastic LIF population (shared by all its neurons); a
    :class:`~spikeff.scan.NeuronModel`."""

    name: ClassVar[str] = "lif"
    beta: float = field(default=0.9, metadata={"help": "membrane decay per time step"})
    threshold: float = field(default=1.0, metadata={"help": "firing threshold theta"})
    delta: float = field(default=0.2, metadata={"help": "escape-noise temperature (0 = deterministic)"})
    sigma: float = field(default=0.0, metadata={"help": "membrane noise std"})
    reset: Reset = field(default="zero", metadata={"help": "reset after a spike"})
    surrogate_slope: float = field(default=5.0, metadata={
        "help": "slope of the sigmoid surrogate of a noiseless neuron (delta = 0)"})
    gradient: Gradient = field(default="pathwise", metadata={
        "help": "escape-noise gradient: pathwise (soft step at each trial's own threshold) or expected "
                "(derivative of the spike probability; blind to trial-to-trial variance)"})
    sharpness: float = field(default=4.0, metadata={"help": "pathwise surrogate slope in units of delta"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.delta < 0 or self.sigma < 0:
            raise ValueError(f"delta and sigma must be >= 0, got delta={self.delta}, sigma={self.sigma}")
        if self.surrogate_slope <= 0 or self.sharpness <= 0:
            raise ValueError(
                f"surrogate_slope and sharpness must be positive, got {self.surrogate_slope}, {self.sharpness}")
        check_choices(self)

    @property
    def stochastic(self) -> bool:
        return self.delta > 0 or self.sigma > 0

    def deterministic(self) -> LIFParams:
        """The same neuron with all noise switched off."""
        return replace(self, delta=0.0, sigma=0.0)

    def init_state(self, like: Tensor) -> LIFState:
        """The membrane at rest (zero) for currents like ``like``, in at least float32."""
        return LIFState(torch.zeros_like(like, dtype=state_dtype(like.dtype)))

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> LIFNoise:
        """One step's noise: the membrane noise, then the escape noise (each only where enabled)."""
        normal = torch.randn(shape, generator=generator, device=device, dtype=dtype) if self.sigma > 0 else None
        uniform = torch.rand(shape, generator=generator, device=device, dtype=dtype) if self.delta > 0 else None
        return LIFNoise(uniform, normal)

    def step(self, current: Tensor, state: LIFState, noise: LIFNoise) -> tuple[Tensor, LIFState]:
        """:func:`lif_step` on the given noise."""
        return lif_step(current, state, self, noise=noise)

    def step_saving(self, current: Tensor, state: LIFState, noise: LIFNoise) -> tuple[Tensor, LIFState, Tensor]:
        """:meth:`step`'s values without autograd, and what :meth:`step_backward` needs (the surrogate)."""
        hard, soft, new = _lif_forward(current, state, self, noise, surrogate=True)
        return hard, new, soft

    def step_backward(self, saved: Tensor, spikes: Tensor, grad_spikes: Tensor | None,
                      grad_state: LIFState) -> tuple[Tensor | None, LIFState]:
        """:func:`lif_step_backward`: the gradients of a step's current and of the state before it."""
        return lif_step_backward(saved, spikes, grad_spikes, grad_state, self)


class LIFState(NamedTuple):
    """Membrane potential after the reset of the previous step."""

    v: Tensor


class LIFNoise(NamedTuple):
    """One step's noise (or ``(T, ...)`` of all steps'); ``None`` where the neuron has none."""

    uniform: Tensor | None  # escape noise, delta > 0
    normal: Tensor | None  # membrane noise, sigma > 0


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Value of ``hard`` with the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def lif_step(
    current: Tensor, state: LIFState, p: LIFParams, generator: torch.Generator | None = None,
    noise: LIFNoise | None = None,
) -> tuple[Tensor, LIFState]:
    """One time step. Returns the spikes (0/1, same shape as ``current``) and the new state.

    Parameters
    ----------
    current : input current of this step ``(B, ...)``.
    state : membrane after the previous step's reset.
    p : the neuron's parameters.
    generator : source of the membrane and escape noise when ``noise`` is not given.
    noise : this step's noise (:meth:`LIFParams.draw`), drawn here from ``generator`` if ``None``.

    Returns
    -------
    spikes : 0/1 with the surrogate's gradient, shape of ``current``.
    state : the membrane after this step's reset.
    """
    if noise is None:
        noise = p.draw(tuple(torch.broadcast_shapes(state.v.shape, current.shape)), generator, current.device,
                       torch.promote_types(state.v.dtype, current.dtype))
    # Without a graph the surrogate's value would be added as exactly 0: skip it (same spikes, same draws).
    hard, soft, new = _lif_forward(current, state, p, noise, needs_graph(current, state.v))
    return (hard if soft is None else _straight_through(hard, soft)), new


def _lif_forward(
    current: Tensor, state: LIFState, p: LIFParams, noise: LIFNoise, surrogate: bool
) -> tuple[Tensor, Tensor | None, LIFState]:
    """One step's hard spikes, their surrogate (``None`` unless ``surrogate``) and the new state."""
    v = p.beta * state.v + current
    if p.sigma > 0:
        v = v + p.sigma * noise.normal
    x = v - p.threshold
    if p.delta > 0:
        hard = (noise.uniform < torch.sigmoid(x.detach() / p.delta)).to(v.dtype)
        soft = escape_surrogate(x, noise.uniform, p) if surrogate else None
    else:
        hard = (x >= 0).to(v.dtype)
        soft = torch.sigmoid(p.surrogate_slope * x) if surrogate else None
    return hard, soft, LIFState(v * (1.0 - hard) if p.reset == "zero" else v - p.threshold * hard)


def lif_step_backward(
    soft: Tensor, spikes: Tensor, grad_spikes: Tensor | None, grad_state: LIFState, p: LIFParams
) -> tuple[Tensor | None, LIFState]:
    """The gradient of :func:`lif_step` by hand: the same ops, in the same order, as autograd's.

    From the step's surrogate ``soft`` and its spikes, the gradients of its spikes and new state
    give those of its current and of the state before it (``None`` where both are ``None``).
    """
    g_v = None
    if grad_spikes is not None:  # through the surrogate: sigmoid, then its input's scale
        g_v = torch.ops.aten.sigmoid_backward(grad_spikes, soft)
        if p.delta > 0:
            g_v = (g_v * p.sharpness if p.gradient == "pathwise" else g_v) / p.delta
        else:
            g_v = g_v * p.surrogate_slope
    if grad_state.v is not None:  # through the reset (the spike itself is detached there)
        g_r = grad_state.v * (1.0 - spikes) if p.reset == "zero" else grad_state.v
        g_v = g_r if g_v is None else g_v + g_r
    return g_v, LIFState(None if g_v is None else g_v * p.beta)


def escape_surrogate(x: Tensor, u: Tensor, p: LIFParams) -> Tensor:
    """The differentiable stand-in for an escape-noise spike at ``x = v - theta`` drawn with ``u``.

    ``"pathwise"``: ``sigmoid(k * (x / delta - logit(u)))``, a soft step at the trial's own
    threshold; ``"expected"``: the spike probability ``sigmoid(x / delta)``.

    Parameters
    ----------
    x : ``v - theta``.
    u : the uniform that drew the spike (same shape as ``x``).
    p : the neuron's parameters; ``p.delta > 0``.

    Returns
    -------
    Tensor of the shape of ``x``, values in (0, 1).
    """
    z = x / p.delta
    if p.gradient == "expected":
        return torch.sigmoid(z)
    return torch.sigmoid(p.sharpness * (z - torch.logit(u)))


# The scans over LIF neurons: the generic scans of spikeff.scan, under their LIF names.
lif_scan = eager_scan
lif_scan_fused = fused_scan
CompiledLIFScan = CompiledScan

class ReLUState(NamedTuple):
    """No state: a 0-d placeholder that carries the dtype the scans read."""

    v: Tensor


class ReLUNoise(NamedTuple):
    """No noise."""


@dataclass(frozen=True)
class ReLUParams:
    """A non-spiking rate unit, ``s[t] = max(I[t], 0)``: the seed method's ReLU, for the learning study.

    Its "spike counts" are the summed rectified currents. Deterministic and stateless, so its trials
    differ only by the input's trial noise (``--input-dropout``); no NIR form.
    """

    name: ClassVar[str] = "relu"

    @property
    def stochastic(self) -> bool:
        return False

    def deterministic(self) -> ReLUParams:
        return self

    def init_state(self, like: Tensor) -> ReLUState:
        return ReLUState(torch.zeros((), dtype=state_dtype(like.dtype), device=like.device))

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> ReLUNoise:
        return ReLUNoise()

    def step(self, current: Tensor, state: ReLUState, noise: ReLUNoise) -> tuple[Tensor, ReLUState]:
        return torch.relu(current), state


# name -> parameter class of every neuron model (a saved config names its model by this key).
NEURON_MODELS: dict[str, type] = {"lif": LIFParams, "relu": ReLUParams}


def neuron_to_dict(p: NeuronModel) -> dict[str, Any]:
    """``p``'s fields, and its model's name under ``"neuron"`` unless it is LIF (written as before)."""
    d = asdict(p)
    if p.name != "lif":
        d["neuron"] = p.name
    return d


def neuron_class(d: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """The model class that ``d["neuron"]`` names (default ``"lif"``) and ``d``'s other fields.

    Raises
    ------
    ValueError : ``d["neuron"]`` names no model in :data:`NEURON_MODELS`.
    """
    d = dict(d)
    name = d.pop("neuron", "lif")
    if name not in NEURON_MODELS:
        raise ValueError(f"unknown neuron model {name!r}; expected one of {sorted(NEURON_MODELS)}")
    return NEURON_MODELS[name], d


def neuron_from_dict(d: Mapping[str, Any]) -> NeuronModel:
    """Inverse of :func:`neuron_to_dict`.

    Raises
    ------
    ValueError : ``d["neuron"]`` names no model in :data:`NEURON_MODELS`.
    TypeError : a field the model does not have.
    """
    cls, fields_ = neuron_class(d)
    return cls(**fields_)


class StochasticLIF(nn.Module):
    """Thin module around :func:`lif_scan`; holds only its (frozen) parameters."""

    def __init__(self, params: LIFParams = LIFParams()) -> None:
        super().__init__()
        self.params = params

    def forward(
        self, currents: Tensor, generator: torch.Generator | None = None, state: LIFState | None = None
    ) -> tuple[Tensor, LIFState]:
        """:func:`lif_scan` with this module's parameters.

        Parameters
        ----------
        currents, generator, state : as in :func:`lif_scan`.

        Returns
        -------
        spikes ``(T, B, ...)`` and the final state.
        """
        return lif_scan(currents, self.params, generator, state)

    def extra_repr(self) -> str:
        return repr(self.params)
