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

Two implementations of the scan over time, with the same noise and the same spikes:

* :func:`lif_scan`, the reference: a Python loop of :func:`lif_step` under autograd;
* :func:`lif_scan_fused` / :class:`CompiledLIFScan`: all ``T`` steps' noise is drawn
  first, from the same generator in the same order, then one pure function runs the
  recurrence forward and another runs it backward (a custom autograd function that saves
  only its inputs and the spikes, and recomputes the membrane in the backward).
  :class:`CompiledLIFScan` compiles both with ``torch.compile`` (one fused C++/Triton
  kernel per direction) and falls back to the reference if compilation fails.

The three scans stay in this one module (over 400 lines) because they implement one model and
are checked against each other.

Why not snntorch or norse: snntorch's ``Leaky`` evaluates its spike function twice per
step (once for the output, once for the reset), so a stochastic spike function would
give the spike and the reset from independent samples. norse's stochastic threshold
functions cannot be selected in its cells. Both are used where they fit: the BPTT
baseline and the NIR checks.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from .choices import check_choices

__all__ = [
    "LIFParams", "LIFState", "Gradient", "LIFNoise", "ScanBackend", "SCAN_BACKENDS", "ScanFn", "lif_step",
    "lif_scan", "escape_surrogate", "draw_noise", "fused_forward", "fused_backward", "lif_scan_fused",
    "CompiledLIFScan", "make_scan", "StochasticLIF",
]

ScanBackend = Literal["eager", "compiled"]
SCAN_BACKENDS: tuple[ScanBackend, ...] = typing.get_args(ScanBackend)
Gradient = Literal["pathwise", "expected"]
Reset = Literal["zero", "subtract"]


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a stochastic LIF population (shared by all its neurons)."""

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


class LIFState(NamedTuple):
    """Membrane potential after the reset of the previous step."""

    v: Tensor


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Value of ``hard`` with the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def lif_step(
    current: Tensor, state: LIFState, p: LIFParams, generator: torch.Generator | None = None
) -> tuple[Tensor, LIFState]:
    """One time step. Returns the spikes (0/1, same shape as ``current``) and the new state.

    Parameters
    ----------
    current : input current of this step ``(B, ...)``.
    state : membrane after the previous step's reset.
    p : the neuron's parameters.
    generator : source of the membrane and escape noise.

    Returns
    -------
    spikes : 0/1 with the surrogate's gradient, shape of ``current``.
    state : the membrane after this step's reset.
    """
    v = p.beta * state.v + current
    if p.sigma > 0:
        v = v + p.sigma * torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
    x = v - p.threshold
    # Without a graph the surrogate's value would be added as exactly 0: skip it (same spikes, same draws).
    graph = torch.is_grad_enabled() and x.requires_grad
    if p.delta > 0:
        u = torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype)
        hard = (u < torch.sigmoid(x.detach() / p.delta)).to(v.dtype)
        spikes = _straight_through(hard, escape_surrogate(x, u, p)) if graph else hard
    else:
        hard = (x >= 0).to(v.dtype)
        spikes = _straight_through(hard, torch.sigmoid(p.surrogate_slope * x)) if graph else hard
    s = spikes.detach()
    u = v * (1.0 - s) if p.reset == "zero" else v - p.threshold * s
    return spikes, LIFState(u)


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


def lif_scan(
    currents: Tensor,
    p: LIFParams,
    generator: torch.Generator | None = None,
    state: LIFState | None = None,
) -> tuple[Tensor, LIFState]:
    """Run :func:`lif_step` over the leading time axis of ``currents`` ``(T, ...)``.

    Returns spikes ``(T, ...)`` and the final state. The membrane is kept in at least
    float32 (bfloat16 currents are integrated in float32).

    Parameters
    ----------
    currents : time-first input currents ``(T, B, ...)``, floating point.
    p : the neuron's parameters.
    generator : source of the noise.
    state : the membrane to start from (by default zero).

    Returns
    -------
    spikes : ``(T, B, ...)``.
    state : the membrane after the last step.

    Raises
    ------
    ValueError : ``currents`` has fewer than two dimensions or is not floating point.
    """
    _check_currents(currents)
    if state is None:
        state = LIFState(torch.zeros_like(currents[0], dtype=state_dtype(currents.dtype)))
    out = []
    # unbind, not currents[t]: indexing's backward writes each step's gradient into a zeroed
    # tensor of the full (T, ...) size, T times over; unbind's stacks them once.
    for current in currents.unbind(0):
        s, state = lif_step(current, state, p, generator)
        out.append(s)
    return torch.stack(out), state


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The membrane's dtype for currents of ``dtype``: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _check_currents(currents: Tensor) -> None:
    if currents.dim() < 2:
        raise ValueError(f"currents must be time-first (T, B, ...), got shape {tuple(currents.shape)}")
    if not currents.is_floating_point():
        raise ValueError(f"currents must be a floating-point tensor, got {currents.dtype}")


class LIFNoise(NamedTuple):
    """Noise of all ``T`` steps, ``(T, ...)``; ``None`` where the neuron has none."""

    uniform: Tensor | None  # escape noise, delta > 0
    normal: Tensor | None  # membrane noise, sigma > 0


def draw_noise(
    shape: tuple[int, ...], p: LIFParams, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> LIFNoise:
    """The noise :func:`lif_scan` draws for currents of ``shape`` ``(T, ...)``, drawn here in advance.

    Step by step and in :func:`lif_step`'s order (membrane noise, then escape noise), so the
    same generator state gives the same numbers as the reference on any device.

    Parameters
    ----------
    shape : the currents' shape ``(T, ...)``.
    p : the neuron's parameters; they select which noise is drawn.
    generator : source of the noise.
    device, dtype : of the noise tensors.

    Returns
    -------
    LIFNoise
    """
    uniform = torch.empty(shape, device=device, dtype=dtype) if p.delta > 0 else None
    normal = torch.empty(shape, device=device, dtype=dtype) if p.sigma > 0 else None
    for t in range(shape[0]):
        if normal is not None:
            normal[t].normal_(generator=generator)
        if uniform is not None:
            uniform[t].uniform_(generator=generator)
    return LIFNoise(uniform, normal)


def fused_forward(
    currents: Tensor, uniform: Tensor | None, normal: Tensor | None, v0: Tensor,
    beta: float, threshold: float, delta: float, sigma: float, zero_reset: bool,
) -> tuple[Tensor, Tensor]:
    """The fused scan's forward: spikes ``(T, ...)`` and the final membrane, without autograd.

    The same ops as :func:`lif_step`, on noise drawn in advance (:func:`draw_noise`). Plain
    tensors and numbers only, so that ``torch.compile`` traces it into one kernel.

    Parameters
    ----------
    currents : ``(T, ...)``.
    uniform, normal : the escape and membrane noise ``(T, ...)``, or ``None`` where there is none.
    v0 : the initial membrane; its dtype is the membrane's.
    beta, threshold, delta, sigma : as in :class:`LIFParams`.
    zero_reset : ``reset == "zero"`` (else subtract).

    Returns
    -------
    spikes : ``(T, ...)`` in ``v0``'s dtype.
    v : the final membrane.
    """
    v, out = v0, []
    for t in range(currents.shape[0]):
        v = beta * v + currents[t].to(v0.dtype)
        if normal is not None:
            v = v + sigma * normal[t]
        x = v - threshold
        hard = uniform[t] < torch.sigmoid(x / delta) if uniform is not None else x >= 0
        s = hard.to(v0.dtype)
        out.append(s)
        v = v * (1.0 - s) if zero_reset else v - threshold * s
    return torch.stack(out), v


def fused_backward(
    grad_spikes: Tensor | None, grad_v: Tensor | None, currents: Tensor, uniform: Tensor | None,
    normal: Tensor | None, spikes: Tensor, v0: Tensor, beta: float, threshold: float, delta: float, sigma: float,
    slope: float, sharpness: float, zero_reset: bool,
) -> tuple[Tensor, Tensor]:
    """The fused scan's backward: gradients for the currents and the initial membrane.

    The surrogate of :func:`lif_step` (``sharpness=0`` for the ``"expected"`` gradient); ``grad_spikes`` and
    ``grad_v`` may be ``None`` (no gradient).

    The membrane before each reset is recomputed from the inputs and the saved spikes, so
    the forward stores nothing but its output.

    Parameters
    ----------
    grad_spikes, grad_v : gradients of the spikes ``(T, ...)`` and of the final membrane, or ``None``.
    currents, uniform, normal, v0 : the forward's inputs.
    spikes : the forward's spikes.
    beta, threshold, delta, sigma : as in :class:`LIFParams`.
    slope : ``surrogate_slope``.
    sharpness : the pathwise surrogate's ``sharpness``; 0 for the ``"expected"`` gradient.
    zero_reset : ``reset == "zero"`` (else subtract).

    Returns
    -------
    grad_currents : ``(T, ...)`` in the currents' dtype.
    grad_v0 : gradient of the initial membrane.
    """
    v, vs = v0, []
    for t in range(currents.shape[0]):
        v = beta * v + currents[t].to(v0.dtype)
        if normal is not None:
            v = v + sigma * normal[t]
        vs.append(v)
        v = v * (1.0 - spikes[t]) if zero_reset else v - threshold * spikes[t]
    grad_u, grads = grad_v, []
    for t in reversed(range(currents.shape[0])):
        x = vs[t] - threshold
        if delta > 0:  # d/dx of escape_surrogate; sharpness 0 selects "expected"
            z = x / delta if sharpness == 0 else sharpness * (x / delta - torch.logit(uniform[t]))
            q = torch.sigmoid(z)
            g = q * (1.0 - q) * ((1.0 if sharpness == 0 else sharpness) / delta)
        else:
            q = torch.sigmoid(slope * x)
            g = slope * q * (1.0 - q)
        g = g * grad_spikes[t] if grad_spikes is not None else torch.zeros_like(g)
        if grad_u is not None:  # the reset uses the detached spike
            g = g + (grad_u * (1.0 - spikes[t]) if zero_reset else grad_u)
        grads.append(g)
        grad_u = beta * g
    return torch.stack(grads[::-1]).to(currents.dtype), grad_u


class _Kernels(NamedTuple):
    forward: Callable[..., tuple[Tensor, Tensor]]
    backward: Callable[..., tuple[Tensor, Tensor]]


_EAGER_KERNELS = _Kernels(fused_forward, fused_backward)


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, currents, uniform, normal, v0, p: LIFParams, kernels: _Kernels):  # type: ignore[override]
        spikes, v = kernels.forward(currents, uniform, normal, v0, p.beta, p.threshold, p.delta, p.sigma,
                                    p.reset == "zero")
        ctx.save_for_backward(currents, uniform, normal, spikes, v0)
        ctx.p, ctx.kernels = p, kernels
        ctx.set_materialize_grads(False)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):  # type: ignore[override]
        currents, uniform, normal, spikes, v0 = ctx.saved_tensors
        if grad_spikes is None and grad_v is None:
            return None, None, None, None, None, None
        p = ctx.p
        grad_i, grad_v0 = ctx.kernels.backward(
            grad_spikes, grad_v, currents, uniform, normal, spikes, v0, p.beta, p.threshold, p.delta, p.sigma,
            p.surrogate_slope, p.sharpness if p.gradient == "pathwise" else 0.0, p.reset == "zero",
        )
        return grad_i, None, None, grad_v0 if ctx.needs_input_grad[3] else None, None, None


def _fused(
    currents: Tensor, p: LIFParams, generator: torch.Generator | None, state: LIFState | None, kernels: _Kernels
) -> tuple[Tensor, LIFState]:
    _check_currents(currents)
    dtype = state_dtype(currents.dtype)
    v0 = torch.zeros_like(currents[0], dtype=dtype) if state is None else state.v
    noise = draw_noise(tuple(currents.shape), p, generator, currents.device, v0.dtype)
    spikes, v = _FusedScan.apply(currents, noise.uniform, noise.normal, v0, p, kernels)
    return spikes, LIFState(v)


def lif_scan_fused(
    currents: Tensor, p: LIFParams, generator: torch.Generator | None = None, state: LIFState | None = None
) -> tuple[Tensor, LIFState]:
    """:func:`lif_scan` with the noise drawn first and a hand-written backward, not compiled.

    The same spikes and final state as :func:`lif_scan` for the same generator state, and
    the same gradients up to rounding.

    Parameters
    ----------
    currents, p, generator, state : as in :func:`lif_scan`.

    Returns
    -------
    What :func:`lif_scan` returns, and raises what it raises.
    """
    return _fused(currents, p, generator, state, _EAGER_KERNELS)


ScanFn = Callable[..., tuple[Tensor, LIFState]]


class CompiledLIFScan:
    """:func:`lif_scan_fused` with its forward and backward compiled by ``torch.compile``.

    Called like :func:`lif_scan`. If ``torch.compile`` is unavailable or a compilation
    fails, one warning names the reason and every later call runs :func:`lif_scan` (the
    call that failed finishes with the uncompiled kernels on the noise it already drew, so
    the random stream is the same either way). ``fallback_reason`` keeps the reason.
    ``dynamic=True`` (the default) compiles shape-generic kernels, so that batch sizes
    and layers of any size reuse them; each noise variant, reset and dtype compiles once.

    Parameters
    ----------
    dynamic : passed to ``torch.compile``.
    """

    def __init__(self, dynamic: bool | None = True) -> None:
        self.fallback_reason: str | None = None
        self._kernels = _EAGER_KERNELS
        try:
            fwd = torch.compile(fused_forward, dynamic=dynamic)
            bwd = torch.compile(fused_backward, dynamic=dynamic)
        except Exception as e:  # e.g. no dynamo for this Python version
            self._fail(e)
        else:
            self._kernels = _Kernels(self._guarded(fwd, fused_forward), self._guarded(bwd, fused_backward))

    def _fail(self, e: Exception) -> None:
        lines = str(e).strip().splitlines()
        self.fallback_reason = f"{type(e).__name__}: {lines[0] if lines else ''}"
        warnings.warn(f"torch.compile of the LIF scan failed ({self.fallback_reason}); "
                      "using the eager scan (lif_scan) instead", RuntimeWarning, stacklevel=3)

    def _guarded(self, compiled: Callable, eager: Callable) -> Callable:
        def run(*args):
            if self.fallback_reason is None:
                try:
                    return compiled(*args)
                except Exception as e:  # compilation errors come in many types
                    self._fail(e)
            return eager(*args)
        return run

    def __call__(
        self, currents: Tensor, p: LIFParams, generator: torch.Generator | None = None, state: LIFState | None = None
    ) -> tuple[Tensor, LIFState]:
        if self.fallback_reason is not None:
            return lif_scan(currents, p, generator, state)
        return _fused(currents, p, generator, state, self._kernels)

    def __deepcopy__(self, memo: dict) -> CompiledLIFScan:
        return self  # no tensors; copies of a network share the compiled kernels

    def __reduce__(self):
        return type(self), ()  # compiled functions do not pickle; an unpickled net compiles afresh

    def __repr__(self) -> str:
        return f"CompiledLIFScan(fallback_reason={self.fallback_reason!r})"


def make_scan(backend: ScanBackend) -> ScanFn:
    """The scan for ``backend``: ``"eager"`` (:func:`lif_scan`) or ``"compiled"`` (a new :class:`CompiledLIFScan`).

    Parameters
    ----------
    backend : one of :data:`SCAN_BACKENDS`.

    Returns
    -------
    ScanFn, called like :func:`lif_scan`.

    Raises
    ------
    ValueError : an unknown backend.
    """
    if backend == "eager":
        return lif_scan
    if backend == "compiled":
        return CompiledLIFScan()
    raise ValueError(f"scan backend must be one of {SCAN_BACKENDS}, got {backend!r}")


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
