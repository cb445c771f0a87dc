"""Scans over time for any neuron model: eager, fused and compiled.

A neuron model is a frozen parameter dataclass implementing :class:`NeuronModel`: its state at
rest, the noise of one step, one pure ``step`` (the model's equations, with the surrogate
gradient) and a noiseless copy of itself. Everything else here derives from ``step``, so all
scans give the same spikes for the same generator state:

* :func:`eager_scan`, the reference: draws each step's noise, then runs ``step`` under autograd;
* :func:`adjoint_scan`, what ``"eager"`` runs: for a model with a hand-written step gradient
  (:class:`AdjointModel`), the eager scan's draws and values without autograd's per-step graph; its
  backward runs back through time keeping one saved tensor per step (the same gradients, bit for bit);
* :func:`fused_scan`: all ``T`` steps' noise is drawn first (:func:`draw_noise`, same generator,
  same order), the forward runs ``step`` over time without autograd and keeps only the inputs;
  the backward reruns that loop under ``torch.func.vjp`` and pulls the gradients back through it;
* :class:`CompiledScan`: :func:`fused_scan` with its forward and backward loops compiled by
  ``torch.compile`` (one fused kernel per direction), falling back to the eager scan if
  compilation fails.

:func:`make_scan` picks one by name; ``"auto"`` compiles where a C++ compiler is found.
"""

from __future__ import annotations

import os
import shutil
import typing
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Protocol

import torch
from torch import Tensor

__all__ = [
    "NeuronModel", "AdjointModel", "ScanBackend", "SCAN_BACKENDS", "ScanFn", "state_dtype", "draw_noise",
    "needs_graph", "step_into", "eager_scan", "adjoint_scan", "fused_scan", "CompiledScan", "find_cxx_compiler",
    "auto_backend", "make_scan",
]

ScanBackend = Literal["auto", "eager", "compiled"]
SCAN_BACKENDS: tuple[ScanBackend, ...] = typing.get_args(ScanBackend)


class NeuronModel(Protocol):
    """What a scan needs from a neuron model's parameters (a frozen dataclass)."""

    name: typing.ClassVar[str]  # the model's key in ``spikeff.neurons.NEURON_MODELS``

    def init_state(self, like: Tensor) -> Any:
        """The state at rest (a NamedTuple of tensors) for currents shaped like ``like`` ``(B, ...)``."""

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Any:
        """One step's noise, a NamedTuple of tensors of ``shape`` (``None`` where the model has none)."""

    def step(self, current: Tensor, state: Any, noise: Any) -> tuple[Tensor, Any]:
        """One time step on its noise: spikes (with the surrogate's gradient under autograd), new state."""

    def deterministic(self) -> NeuronModel:
        """The same model with its noise switched off."""

    @property
    def stochastic(self) -> bool:
        """Whether the model draws any noise."""


class AdjointModel(NeuronModel, Protocol):
    """A neuron model that also gives its step's gradient by hand (for :func:`adjoint_scan`)."""

    def step_saving(self, current: Tensor, state: Any, noise: Any) -> tuple[Tensor, Any, Tensor]:
        """``step``'s spikes and new state, computed without autograd, and the one tensor its
        gradient needs."""

    def step_backward(self, saved: Tensor, spikes: Tensor, grad_spikes: Tensor | None,
                      grad_state: Any) -> tuple[Tensor | None, Any]:
        """The gradients of the step's current and of the state before it, from those of its
        spikes and new state (``None`` for zero), exactly as autograd would give them through ``step``."""


ScanFn = Callable[..., tuple[Tensor, Any]]


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state's dtype for currents of ``dtype``: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _check_currents(currents: Tensor) -> None:
    if currents.dim() < 2:
        raise ValueError(f"currents must be time-first (T, B, ...), got shape {tuple(currents.shape)}")
    if not currents.is_floating_point():
        raise ValueError(f"currents must be a floating-point tensor, got {currents.dtype}")


def _start(currents: Tensor, p: NeuronModel, state: Any) -> tuple[Any, torch.dtype]:
    """The initial state and the noise dtype (the state's, promoted with the currents')."""
    _check_currents(currents)
    state = p.init_state(currents[0]) if state is None else state
    return state, torch.promote_types(currents.dtype, state[0].dtype)


def _at(noise: Any, t: int) -> Any:
    return type(noise)(*(None if n is None else n[t] for n in noise))


def draw_noise(
    shape: tuple[int, ...], p: NeuronModel, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> Any:
    """The noise :func:`eager_scan` draws for currents of ``shape`` ``(T, ...)``, drawn here in advance.

    Step by step with ``p.draw``, so the same generator state gives the same numbers as the
    eager scan on any device.

    Parameters
    ----------
    shape : the currents' shape ``(T, ...)``.
    p : the neuron model; it selects which noise is drawn.
    generator : source of the noise.
    device, dtype : of the noise tensors.

    Returns
    -------
    The model's noise NamedTuple with fields ``(T, ...)`` (``None`` where it has none).
    """
    steps = [p.draw(tuple(shape[1:]), generator, device, dtype) for _ in range(shape[0])]
    return type(steps[0])(*(None if f[0] is None else torch.stack(f) for f in zip(*steps)))


def eager_scan(
    currents: Tensor, p: NeuronModel, generator: torch.Generator | None = None, state: Any = None
) -> tuple[Tensor, Any]:
    """Run ``p.step`` over the leading time axis of ``currents`` ``(T, ...)`` under autograd.

    The state is kept in at least float32 (bfloat16 currents are integrated in float32).

    Parameters
    ----------
    currents : time-first input currents ``(T, B, ...)``, floating point.
    p : the neuron model's parameters.
    generator : source of the noise.
    state : the state to start from (by default ``p.init_state``, at rest).

    Returns
    -------
    spikes : ``(T, B, ...)``.
    state : the state after the last step.

    Raises
    ------
    ValueError : ``currents`` has fewer than two dimensions or is not floating point.
    """
    state, dtype = _start(currents, p, state)
    graph, out, spikes = needs_graph(currents, *state), [], None
    # unbind, not currents[t]: indexing's backward writes each step's gradient into a zeroed
    # tensor of the full (T, ...) size, T times over; unbind's stacks them once.
    for t, current in enumerate(currents.unbind(0)):
        s, state = p.step(current, state, p.draw(tuple(current.shape), generator, current.device, dtype))
        if graph:  # stacked at the end, for autograd
            out.append(s)
        else:  # written as it comes: no list of T steps beside the output
            spikes = step_into(spikes, t, s, len(currents))
    return (torch.stack(out) if graph else spikes), state


def needs_graph(*tensors: Tensor) -> bool:
    """Whether autograd records a graph through ops on ``tensors`` here (grad mode on, one of them requiring grad)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def step_into(out: Tensor | None, t: int, s: Tensor, steps: int) -> Tensor:
    """``out[t] = s``, allocating ``out`` ``(steps, ...)`` at the first step (``out is None``); returns ``out``.

    Steps written as they come need no list of every step beside the stacked result.
    """
    out = s.new_empty((steps, *s.shape)) if out is None else out
    out[t] = s
    return out


class _AdjointScan(torch.autograd.Function):
    """Inputs flattened for autograd: ``(p, generator, dtype, state_type, currents, *state0)``."""

    @staticmethod
    def forward(ctx, p, generator, dtype, state_type, currents, *state0):  # type: ignore[override]
        state = state_type(*state0)
        spikes, saved = None, []
        for t, current in enumerate(currents.unbind(0)):
            s, state, r = p.step_saving(current, state, p.draw(tuple(current.shape), generator, current.device, dtype))
            spikes = step_into(spikes, t, s, len(currents))
            saved.append(r)  # kept per step: step-sized blocks are reused by the allocator, fresh large ones are not
        ctx.save_for_backward(spikes)
        ctx.steps = saved  # intermediates, kept on ctx so that the backward can free each one when used
        ctx.spec = (p, state_type, currents.dtype)  # the gradient goes back in the currents' dtype
        ctx.set_materialize_grads(False)
        return spikes, *state

    @staticmethod
    def backward(ctx, grad_spikes, *grad_state):  # type: ignore[override]
        (spikes,) = ctx.saved_tensors
        p, state_type, dtype = ctx.spec
        if len(ctx.steps) != len(spikes):
            raise RuntimeError("adjoint_scan's backward frees its saved steps as it goes: it runs once per forward")
        grads, g_state = [], state_type(*grad_state)
        for t in reversed(range(len(spikes))):
            g, g_state = p.step_backward(ctx.steps.pop(), spikes[t], None if grad_spikes is None else grad_spikes[t],
                                         g_state)
            grads.append(g)
        # Stacked as autograd stacks the eager scan's per-step gradients (their layout decides how
        # the sums below, e.g. over trials, are rounded); all or none are None.
        grad_currents = None if grads[0] is None else torch.stack(grads[::-1]).to(dtype)
        grad_state0 = [g if need else None for g, need in zip(g_state, ctx.needs_input_grad[5:])]
        return None, None, None, None, grad_currents, *grad_state0


def adjoint_scan(
    currents: Tensor, p: NeuronModel, generator: torch.Generator | None = None, state: Any = None
) -> tuple[Tensor, Any]:
    """:func:`eager_scan` with a hand-written backward through time, for an :class:`AdjointModel`.

    The same draws, spikes, final state and gradients as :func:`eager_scan`, bit for bit, with
    less memory (one saved tensor per step instead of autograd's per-step graph) and fewer ops.
    Models without ``step_backward``, and calls that need no gradient, run :func:`eager_scan`.
    Arguments, returns and errors as :func:`eager_scan`'s.
    """
    state, dtype = _start(currents, p, state)
    if not needs_graph(currents, *state) or not hasattr(p, "step_backward"):
        return eager_scan(currents, p, generator, state)
    spikes, *final = _AdjointScan.apply(p, generator, dtype, type(state), currents, *state)
    return spikes, type(state)(*final)


def fused_forward(currents: Tensor, noise: Any, state: Any, p: NeuronModel) -> tuple[Tensor, Any]:
    """The fused scan's forward: ``p.step`` over time on noise drawn in advance (``(T, ...)`` fields)."""
    out = []
    for t, current in enumerate(currents.unbind(0)):
        s, state = p.step(current, state, _at(noise, t))
        out.append(s)
    return torch.stack(out), state


def fused_backward(
    grad_spikes: Tensor | None, grad_state: tuple[Tensor | None, ...], currents: Tensor, noise: Any, state0: Any,
    p: NeuronModel,
) -> tuple[Tensor, Any]:
    """The fused scan's backward: gradients for the currents and the initial state.

    Reruns :func:`fused_forward` from the inputs under ``torch.func.vjp``, so the gradient is
    that of the steps themselves (the surrogate is the step's own, the same ops as the eager
    scan's autograd). ``None`` gradients count as zero.
    """
    (spikes, state), vjp = torch.func.vjp(lambda c, s: fused_forward(c, noise, s, p), currents, state0)
    g_spikes = torch.zeros_like(spikes) if grad_spikes is None else grad_spikes
    return vjp((g_spikes, type(state)(*(torch.zeros_like(s) if g is None else g for g, s in zip(grad_state, state)))))


class _Kernels(NamedTuple):
    forward: Callable[..., tuple[Tensor, Any]]
    backward: Callable[..., tuple[Tensor, Any]]


_EAGER_KERNELS = _Kernels(fused_forward, fused_backward)


class _FusedScan(torch.autograd.Function):
    """Inputs flattened for autograd: ``(p, kernels, noise_type, state_type, currents, *noise, *state0)``."""

    @staticmethod
    def forward(ctx, p, kernels, noise_type, state_type, currents, *tensors):  # type: ignore[override]
        n = len(noise_type._fields)
        noise, state0 = noise_type(*tensors[:n]), state_type(*tensors[n:])
        spikes, state = kernels.forward(currents, noise, state0, p)
        ctx.save_for_backward(currents, *tensors)
        ctx.spec = (p, kernels, noise_type, state_type)
        ctx.set_materialize_grads(False)
        return spikes, *state

    @staticmethod
    def backward(ctx, grad_spikes, *grad_state):  # type: ignore[override]
        currents, *tensors = ctx.saved_tensors
        p, kernels, noise_type, state_type = ctx.spec
        n = len(noise_type._fields)
        nones = (None,) * (4 + len(tensors))
        if grad_spikes is None and all(g is None for g in grad_state):
            return (*nones, None)
        noise, state0 = noise_type(*tensors[:n]), state_type(*tensors[n:])
        grad_i, grad_s0 = kernels.backward(grad_spikes, grad_state, currents, noise, state0, p)
        grad_s0 = [g if need else None for g, need in zip(grad_s0, ctx.needs_input_grad[5 + n:])]
        return None, None, None, None, grad_i.to(currents.dtype), *(None,) * n, *grad_s0


def _fused(
    currents: Tensor, p: NeuronModel, generator: torch.Generator | None, state: Any, kernels: _Kernels
) -> tuple[Tensor, Any]:
    state, dtype = _start(currents, p, state)
    noise = draw_noise(tuple(currents.shape), p, generator, currents.device, dtype)
    spikes, *final = _FusedScan.apply(p, kernels, type(noise), type(state), currents, *noise, *state)
    return spikes, type(state)(*final)


def fused_scan(
    currents: Tensor, p: NeuronModel, generator: torch.Generator | None = None, state: Any = None
) -> tuple[Tensor, Any]:
    """:func:`eager_scan` with the noise drawn first and a recomputing backward, not compiled.

    The same spikes and final state as :func:`eager_scan` for the same generator state, and
    the same gradients up to rounding. Arguments, returns and errors as :func:`eager_scan`'s.
    """
    return _fused(currents, p, generator, state, _EAGER_KERNELS)


class CompiledScan:
    """:func:`fused_scan` with its forward and backward compiled by ``torch.compile``.

    Called like :func:`eager_scan`. If ``torch.compile`` is unavailable or a compilation
    fails, one warning names the reason and every later call runs :func:`eager_scan` (the
    call that failed finishes with the uncompiled kernels on the noise it already drew, so
    the random stream is the same either way). ``fallback_reason`` keeps the reason.
    ``dynamic=True`` (the default) compiles shape-generic kernels, so that batch sizes
    and layers of any size reuse them; each neuron variant and dtype compiles once.

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
        warnings.warn(f"torch.compile of the neuron scan failed ({self.fallback_reason}); "
                      "using the eager scan instead", RuntimeWarning, stacklevel=3)

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
        self, currents: Tensor, p: NeuronModel, generator: torch.Generator | None = None, state: Any = None
    ) -> tuple[Tensor, Any]:
        if self.fallback_reason is not None:
            return eager_scan(currents, p, generator, state)
        return _fused(currents, p, generator, state, self._kernels)

    def __deepcopy__(self, memo: dict) -> CompiledScan:
        return self  # no tensors; copies of a network share the compiled kernels

    def __reduce__(self):
        return type(self), ()  # compiled functions do not pickle; an unpickled net compiles afresh

    def __repr__(self) -> str:
        return f"CompiledScan(fallback_reason={self.fallback_reason!r})"


def find_cxx_compiler() -> str | None:
    """The path of the C++ compiler ``torch.compile`` would use on the CPU (``$CXX``, ``c++``, ``g++``,
    ``clang++``), or ``None``. A PATH lookup only: a compiler that then fails is caught by
    :class:`CompiledScan`'s fallback."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    return next(filter(None, map(shutil.which, [*names, "c++", "g++", "clang++"])), None)


def auto_backend() -> tuple[ScanBackend, str | None]:
    """What ``scan="auto"`` runs: ``("compiled", None)`` where a C++ compiler is found, else
    ``("eager", why)``."""
    if find_cxx_compiler() is None:
        return "eager", "no C++ compiler (c++, g++, clang++ or $CXX) on PATH for torch.compile"
    return "compiled", None


def make_scan(backend: ScanBackend) -> ScanFn:
    """The scan for ``backend``: ``"eager"`` (:func:`adjoint_scan`: :func:`eager_scan`'s numbers), ``"compiled"`` (a new
    :class:`CompiledScan`) or ``"auto"`` (compiled where :func:`auto_backend` finds a compiler,
    else eager with one warning saying why and that ``--scan eager`` silences it).

    Parameters
    ----------
    backend : one of :data:`SCAN_BACKENDS`.

    Returns
    -------
    ScanFn, called like :func:`eager_scan`.

    Raises
    ------
    ValueError : an unknown backend.
    """
    if backend == "auto":
        backend, why = auto_backend()
        if why is not None:
            warnings.warn(f"scan 'auto' runs the eager scan (same spikes, slower): {why}; "
                          "pass --scan eager (scan='eager') to silence this notice", RuntimeWarning, stacklevel=2)
    if backend == "eager":
        return adjoint_scan
    if backend == "compiled":
        return CompiledScan()
    raise ValueError(f"scan backend must be one of {SCAN_BACKENDS}, got {backend!r}")
