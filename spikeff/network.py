"""Feed-forward stochastic spiking networks: synapse -> (pool) -> (norm) -> stochastic LIF, per layer.

A layer maps time-first spikes ``(T, N, ...)`` to spikes ``(T, N', ...)``. Its synaptic op
(conv or linear) runs on all ``T`` steps in one call; the only Python loop is the LIF scan
over time. Conv layers are ``Conv2d(k, padding=k//2) -> AvgPool2d(p) -> LIF`` (pooling the
currents keeps spikes binary and maps onto NIR's ``AvgPool2d``); linear layers are
``Linear -> LIF`` on the flattened input.

With ``norm="batch"`` (the default) each layer's currents are normalised per channel before
the LIF (batch norm without affine): zero mean and unit variance over the batch, the time
bins and the positions, so no layer can fall silent however deep. Training uses each batch's
statistics; evaluation uses fixed ones (:func:`spikeff.readout_fit.calibrate_norm`), which
:func:`fold_norm` folds into the synapse.

``n`` noisy trials of the same input run as one batch of ``n * B``, trial-major (trial
``i`` of input ``b`` sits at ``i * B + b``). The first layer's input is shared by all
trials, so its synaptic op runs once on ``B`` and is then expanded.

How it runs (not what it computes) is set by two config fields: ``scan`` picks the neuron
scan (:mod:`spikeff.scan`; ``"eager"``: the reference; ``"compiled"``: one
:class:`~spikeff.scan.CompiledScan` shared by the net, same noise and spikes; ``"auto"``:
compiled where a C++ compiler is found, else eager with one notice; ``"eager"`` is the default, see
``docs/performance.md``), and
``precision="bf16"`` runs the layers' synaptic ops (conv, linear) under bfloat16 autocast
while the membrane, the noise comparison, the spikes and the loss stay float32. The
readout head always runs in float32. A conv and its avg-pool always run as one strided conv
(:func:`synapse_pool`; same currents up to rounding).
"""

from __future__ import annotations

import contextlib
import copy
import math
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .choices import check_choices
from .neurons import LIFParams, neuron_class, neuron_to_dict
from .noise import expand_trials
from .readout import HeadKind, Readout
from .scan import NeuronModel, ScanBackend, ScanFn, eager_scan, make_scan, needs_graph, step_into

__all__ = [
    "NetworkConfig", "Precision", "Norm", "device_of", "fold_norm", "init_fan_in_", "SpikingLayer",
    "SpikingNet", "expand_trials", "spike_counts", "synapse_pool", "TRIAL_INPUTS", "input_parts",
]

Precision = Literal["fp32", "bf16"]
Norm = Literal["batch", "none"]


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture. ``input_shape`` is ``(C, H, W)`` of one time bin.

    ``input_shape`` and ``n_classes`` come from the data: a config without them (as the command
    line builds it) is completed by :meth:`for_data` before a network is built.
    """

    input_shape: tuple[int, int, int] | None = field(default=None, metadata={"cli": False})
    n_classes: int | None = field(default=None, metadata={"cli": False})
    conv_channels: tuple[int, ...] = field(default=(64, 128), metadata={
        "flag": "--channels", "help": "conv channels per layer"})
    hidden: tuple[int, ...] = field(default=(), metadata={"help": "fully connected layer sizes after the convs"})
    kernel_size: int = field(default=3, metadata={"help": "conv kernel size (odd)"})
    pool: tuple[int, ...] = field(default=(2,), metadata={
        "help": "average-pool size after the convs: one size for every conv, or one per conv, e.g. 2,2,1 (1: none)"})
    # What every layer and the head are built with; saved with its model's name (any model of NEURON_MODELS).
    lif: LIFParams = field(default_factory=LIFParams, metadata={"dict": (neuron_to_dict, neuron_class)})
    readout: HeadKind = field(default="linear", metadata={"help": "readout head: linear or spiking LIF"})
    scan: ScanBackend = field(default="eager", metadata={
        "help": "neuron scan: eager (reference), compiled (torch.compile, same spikes; see docs/performance.md) "
                "or auto (compiled where a C++ compiler is found, else eager)"})
    precision: Precision = field(default="fp32", metadata={
        "help": "bf16: conv/linear under bfloat16 autocast; membrane, noise and loss stay float32"})
    norm: Norm = field(default="batch", metadata={
        "help": "per-layer normalisation of the currents (batch: BatchNorm without affine, folded into the "
                "synapse for evaluation and NIR)"})

    def __post_init__(self) -> None:
        # one int (configs written before per-layer pools, and the short form in Python) -> a tuple
        object.__setattr__(self, "pool", tuple(self.pool) if isinstance(self.pool, (tuple, list)) else (self.pool,))
        if self.input_shape is not None and (len(self.input_shape) != 3 or min(self.input_shape) < 1):
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if not self.conv_channels and not self.hidden:
            raise ValueError("the network needs at least one conv or hidden layer")
        if min(self.conv_channels + self.hidden, default=1) < 1:
            raise ValueError("layer sizes must be positive")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if len(self.pool) not in (1, max(1, len(self.conv_channels))) or min(self.pool) < 1:
            raise ValueError(f"pool must be one size >= 1 or one per conv layer ({len(self.conv_channels)}), "
                             f"got {self.pool}")
        if self.input_shape is not None and min(self.input_shape[1:]) // math.prod(self.pools) < 1:
            raise ValueError(f"pools {self.pools} shrink input {self.input_shape} to nothing")
        check_choices(self)

    @property
    def pools(self) -> tuple[int, ...]:
        """The average-pool size after each conv layer."""
        return self.pool * len(self.conv_channels) if len(self.pool) == 1 else self.pool

    def test_trials(self, trials: int) -> int:
        """The trials to score a test input with when ``trials`` are asked for: 1 where the neurons draw no
        noise (ReLU, a noiseless LIF), whose trials would be identical copies, each one charged in the op
        counts (trial noise on the input is a training-time device)."""
        return trials if self.lif.stochastic else 1

    def for_data(self, input_shape: tuple[int, int, int], n_classes: int) -> NetworkConfig:
        """This architecture for frames of ``input_shape`` and ``n_classes`` classes.

        Parameters
        ----------
        input_shape : ``(C, H, W)`` of one time bin.
        n_classes : number of classes.

        Returns
        -------
        NetworkConfig, a new config.

        Raises
        ------
        ValueError : the shape or class count is invalid, or the pooling shrinks the input to nothing.
        """
        return replace(self, input_shape=tuple(input_shape), n_classes=n_classes)


def _box_pool_size(synapse: nn.Module, pool: nn.Module | None) -> int | None:
    """``p`` if ``pool(synapse(x))`` is a stride-1 zero-padded Conv2d then a non-overlapping p x p AvgPool2d."""
    if not (isinstance(synapse, nn.Conv2d) and type(pool) is nn.AvgPool2d):
        return None
    ks = {pool.kernel_size} if isinstance(pool.kernel_size, int) else set(pool.kernel_size)
    stride = {pool.stride} if isinstance(pool.stride, int) else set(pool.stride)
    ok = (
        len(ks) == 1 and ks == stride and pool.padding in (0, (0, 0)) and not pool.ceil_mode
        and pool.divisor_override is None and synapse.stride == (1, 1) and synapse.dilation == (1, 1)
        and synapse.groups == 1 and synapse.padding_mode == "zeros" and not isinstance(synapse.padding, str)
    )
    return ks.pop() if ok else None


def synapse_pool(x: Tensor, synapse: nn.Module, pool: nn.Module | None) -> Tensor:
    """``pool(synapse(x))`` for ``x`` ``(N, ...)``.

    A Conv2d followed by an AvgPool2d of ``p x p`` windows runs as one conv of stride ``p``
    whose kernel is the conv's kernel convolved with the ``p x p`` box of ``1/p^2``: the same
    currents up to float rounding, without the unpooled output (faster forward and backward; the
    timings are in ``benchmarks/results/pooled_conv_cpu.md``).

    Parameters
    ----------
    x : a batch ``(N, ...)`` (time steps flattened into it).
    synapse : a Conv2d or Linear.
    pool : the pooling after it, or ``None``.

    Returns
    -------
    Tensor, the pooled currents ``(N, ...)``.
    """
    p = _box_pool_size(synapse, pool)
    if p is None:
        y = synapse(x)
        return y if pool is None else pool(y)
    return fused_conv_pool(x, synapse.weight, synapse.bias, synapse.padding, p)


def fused_conv_pool(x: Tensor, weight: Tensor, bias: Tensor | None, padding: Any, p: int) -> Tensor:
    """``avg_pool2d(conv2d(x, weight, bias, padding=padding), p)`` as one conv of stride ``p`` whose
    kernel is ``weight`` convolved with the ``p x p`` box of ``1/p^2`` (built in full precision).

    Parameters
    ----------
    x : input ``(N, C, H, W)``.
    weight, bias, padding : the Conv2d's (stride 1).
    p : the pooling window and stride.

    Returns
    -------
    Tensor ``(N, O, H', W')``.
    """
    o, i, kh, kw = weight.shape
    box = torch.full((1, 1, p, p), 1.0 / p**2, dtype=weight.dtype, device=weight.device)
    with torch.autocast(weight.device.type, enabled=False):
        w = F.conv2d(weight.reshape(o * i, 1, kh, kw), box, padding=p - 1).reshape(o, i, kh + p - 1, kw + p - 1)
    return F.conv2d(x, w, bias, stride=p, padding=padding)


class SpikingLayer(nn.Module):
    """``synapse -> pool -> stochastic LIF`` on time-first input ``(T, N, ...)``.

    ``scan`` integrates the currents (a scan of :mod:`spikeff.scan` over the neuron model
    ``lif``, by default :class:`~spikeff.neurons.LIFParams`); with ``precision="bf16"`` the synapse runs
    under bfloat16 autocast and the currents stay bfloat16 until the scan reads them.

    Parameters
    ----------
    synapse : a Conv2d or Linear.
    pool : pooling of the currents, or ``None``.
    lif : the neurons' parameters (any :class:`~spikeff.scan.NeuronModel`).
    scan : the neuron scan.
    precision : ``"fp32"`` or ``"bf16"``.
    norm : normalisation of the currents (a BatchNorm without affine), or ``None``.

    Raises
    ------
    ValueError : an unknown ``precision``.
    """

    def __init__(
        self, synapse: nn.Module, pool: nn.Module | None, lif: NeuronModel, scan: ScanFn = eager_scan,
        precision: Precision = "fp32", norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if precision not in typing.get_args(Precision):
            raise ValueError(f"precision must be one of {typing.get_args(Precision)}, got {precision!r}")
        self.synapse = synapse
        self.pool = pool
        self.norm = norm
        self.lif = lif
        self.scan = scan
        self.precision = precision

    @property
    def out_channels(self) -> int:
        s = self.synapse
        return s.out_channels if isinstance(s, nn.Conv2d) else s.out_features

    def currents(self, x: Tensor) -> Tensor:
        """Synaptic currents for all steps in one call: ``(T, N, ...) -> (T, N, ...)``.

        Parameters
        ----------
        x : time-first input spikes ``(T, N, ...)``.

        Returns
        -------
        Tensor ``(T, N, ...)``, bfloat16 under ``precision="bf16"``.
        """
        t, n = x.shape[:2]
        if isinstance(self.synapse, nn.Linear):
            x = x.flatten(2)
        bf16 = self.precision == "bf16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            if needs_graph(x, *self.synapse.parameters()):
                y = synapse_pool(x.flatten(0, 1), self.synapse, self.pool)
            else:  # one step at a time, same values: the conv's copy of its input stays one step's size
                y = None
                for k, xt in enumerate(x.unbind(0)):
                    y = step_into(y, k, synapse_pool(xt, self.synapse, self.pool), t)
                y = y.flatten(0, 1)
        if self.norm is not None:  # in at least float32 (bf16 statistics are too coarse), then back
            y = self.norm(y.to(torch.promote_types(y.dtype, torch.float32))).to(y.dtype)
        return y.unflatten(0, (t, n))

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, trials: int = 1, deterministic: bool = False
    ) -> Tensor:
        """Spikes ``(T, trials * N, ...)``; with ``trials > 1`` the input is shared by all trials.

        Parameters
        ----------
        x : time-first input ``(T, N, ...)``.
        generator : source of the neuron noise.
        trials : noisy trials per input, trial-major in the output batch.
        deterministic : switch the neuron noise off.

        Returns
        -------
        Tensor ``(T, trials * N, ...)`` of 0/1.
        """
        i, lif = self.currents(x), self.lif.deterministic() if deterministic else self.lif
        if trials > 1 and not i.requires_grad:  # a view (T, trials, N, ...): the trials share one copy
            return self.scan(i.unsqueeze(1).expand(i.shape[0], trials, *i.shape[1:]), lif, generator)[0].flatten(1, 2)
        # With a graph, one copy per trial: its memory layout sets how the trials' gradients are summed,
        # and so the last bits of the trained weights.
        return self.scan(expand_trials(i, trials), lif, generator)[0]


def spike_counts(spikes: Tensor, trials: int) -> Tensor:
    """``(T, trials * B, ...) -> (trials, B, ...)``: spike counts over time per trial.

    Parameters
    ----------
    spikes : time-first, trial-major ``(T, trials * B, ...)``.
    trials : trials per input.

    Returns
    -------
    Tensor ``(trials, B, ...)``.
    """
    c = spikes.sum(0)
    return c.unflatten(0, (trials, c.shape[0] // trials))


class SpikingNet(nn.Module):
    """Stack of :class:`SpikingLayer` plus a :class:`~spikeff.readout.Readout` head.

    Parameters
    ----------
    config : the architecture, completed by :meth:`NetworkConfig.for_data`.
    generator : source of the initial weights.

    Raises
    ------
    ValueError : ``config`` lacks ``input_shape`` or ``n_classes``.
    """

    def __init__(self, config: NetworkConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if config.input_shape is None or config.n_classes is None:
            raise ValueError("NetworkConfig needs input_shape and n_classes (use config.for_data(shape, n_classes))")
        self.config = config
        c, h, w = config.input_shape
        scan = make_scan(config.scan)  # one per net: a compiled scan's kernels are shared by its layers
        layers: list[SpikingLayer] = []
        for out, p in zip(config.conv_channels, config.pools):
            conv = nn.Conv2d(c, out, config.kernel_size, padding=config.kernel_size // 2)
            pool = nn.AvgPool2d(p) if p > 1 else None
            norm = nn.BatchNorm2d(out, momentum=None, affine=False) if config.norm == "batch" else None
            layers.append(SpikingLayer(conv, pool, config.lif, scan, config.precision, norm))
            c, h, w = out, h // p, w // p
        features = c * h * w
        for out in config.hidden:
            norm = nn.BatchNorm1d(out, momentum=None, affine=False) if config.norm == "batch" else None
            layers.append(SpikingLayer(nn.Linear(features, out), None, config.lif, scan, config.precision, norm))
            features = out
        self.layers = nn.ModuleList(layers)
        self.head = Readout(features, config.n_classes, config.readout, config.lif, scan)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform fan-in init (PyTorch's default scale) drawn from ``generator``.

        A spiking LIF head's bias starts at ``theta * (1 - beta)``, whose steady-state potential
        is the threshold: sparse top-layer spikes alone would leave it silent, with no
        energy and no gradient.

        Parameters
        ----------
        generator : source of the weights and biases.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init_fan_in_(m, generator)
        if self.config.readout == "lif" and isinstance(self.head.lif, LIFParams):  # other models: fan-in init
            with torch.no_grad():
                self.head.fc.bias.fill_(self.head.lif.threshold * (1.0 - self.head.lif.beta))

    def layer_outputs(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        trials: int = 1,
        deterministic: bool = False,
        upto: int | None = None,
    ) -> list[Tensor]:
        """Spikes of layers ``0..upto`` (all by default) for input ``(T, B, C, H, W)``.

        Parameters
        ----------
        x : time-first frames ``(T, B, C, H, W)``.
        generator : source of the neuron noise.
        trials : noisy trials per input (see :func:`expand_trials`).
        deterministic : switch the neuron noise off.
        upto : index of the last layer to run.

        Returns
        -------
        list of Tensor, one ``(T, trials * B, ...)`` per layer run.

        Raises
        ------
        ValueError : ``x`` does not match the config's input shape.
        """
        check_input(x, self.config)
        out, h = [], x
        for i, layer in enumerate(self.layers[: None if upto is None else upto + 1]):
            h = layer(h, generator, trials if i == 0 else 1, deterministic)
            out.append(h)
        return out

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, trials: int = 1, deterministic: bool = False
    ) -> Tensor:
        """Head outputs ``z`` ``(trials, B, K)``.

        Parameters
        ----------
        x, generator, trials, deterministic : as in :meth:`layer_outputs`.

        Returns
        -------
        Tensor ``(trials, B, K)``.

        Raises
        ------
        ValueError : ``x`` does not match the config's input shape.
        """
        top = self.layer_outputs(x, generator, trials, deterministic)[-1]
        return self.head(top, generator, deterministic).unflatten(0, (trials, x.shape[1]))

    def with_lif(self, lif: NeuronModel) -> SpikingNet:
        """Give every layer and the head the neuron parameters ``lif``, in place; returns self.

        The neurons read their parameters from their own module (``layer.lif``, ``head.lif``);
        ``config.lif`` records what the net was built with and is updated to match.

        Parameters
        ----------
        lif : the new neuron parameters.

        Returns
        -------
        SpikingNet, this net.
        """
        self.config = replace(self.config, lif=lif)
        for m in self.neurons():
            m.lif = lif
        return self

    def neurons(self) -> list[SpikingLayer | Readout]:
        """Every module that owns neuron parameters (``.lif``): the layers, then the head."""
        return [*self.layers, self.head]


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (spikeff's modules keep all of theirs on one).

    Parameters
    ----------
    module : a module with at least one parameter.

    Returns
    -------
    torch.device
    """
    return next(module.parameters()).device


@torch.no_grad()
def init_fan_in_(m: nn.Conv2d | nn.Linear, generator: torch.Generator | None = None) -> None:
    """Weight and bias ~ ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default scale), drawn on the
    CPU from ``generator`` (so a CPU generator serves a module on any device).

    Parameters
    ----------
    m : the module, changed in place.
    generator : a CPU generator, or ``None`` for the global one.
    """
    bound = 1.0 / math.sqrt(m.weight[0].numel())
    for p in (m.weight, m.bias):
        p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator))


@torch.no_grad()
def fold_norm(net: SpikingNet) -> SpikingNet:
    """A copy of ``net`` with every layer's normalisation folded into its synapse (``norm="none"``).

    In evaluation a batch norm without affine is ``(y - mu) / s`` with its running statistics,
    ``s = sqrt(var + eps)``; since ``y = W x + b`` that is the synapse ``W / s, (b - mu) / s``. The
    copy computes the same currents up to rounding, needs no normalisation op, and exports to NIR
    as plain synapses and LIF neurons. A net without normalisation is copied as it is.

    Parameters
    ----------
    net : a net whose normalisation holds its running statistics (see
        :func:`spikeff.readout_fit.calibrate_norm`); left unchanged.

    Returns
    -------
    SpikingNet, the folded copy.
    """
    folded = copy.deepcopy(net)
    folded.config = replace(net.config, norm="none")
    for layer in folded.layers:
        norm, layer.norm = layer.norm, None
        if norm is None:
            continue
        scale = torch.rsqrt(norm.running_var + norm.eps)
        w = layer.synapse.weight
        w.mul_(scale.view(-1, *[1] * (w.dim() - 1)))
        layer.synapse.bias.sub_(norm.running_mean).mul_(scale)
    return folded


#: The most input-trials (inputs x trials) a pass without gradient runs at once: the evaluation batch of
#: 64 inputs at the default 8 trials, so that passes with more trials keep that memory.
TRIAL_INPUTS = 512


def input_parts(batch: int, trials: int) -> list[int]:
    """The sizes of the parts a batch of ``batch`` inputs is split into (in order) for a pass of ``trials``
    trials per input without gradient: at most ``TRIAL_INPUTS // trials`` inputs each (at least one), so
    that the pass's memory does not grow with the trials. ``[batch]`` when the batch fits: one pass, the
    same noise draws as without the split.

    Parameters
    ----------
    batch : inputs in the batch.
    trials : trials per input.

    Returns
    -------
    list of int, summing to ``batch``.
    """
    step = max(1, TRIAL_INPUTS // trials)
    return [min(step, batch - i) for i in range(0, batch, step)]


def check_input(x: Tensor, config: NetworkConfig) -> None:
    """Raise a clear error unless ``x`` is time-first ``(T, B, C, H, W)`` matching the config.

    Parameters
    ----------
    x : the input.
    config : a config with ``input_shape`` set.

    Raises
    ------
    ValueError : ``x`` is not ``(T, B, *config.input_shape)``.
    """
    if x.dim() != 5 or tuple(x.shape[2:]) != tuple(config.input_shape):
        raise ValueError(
            f"expected input of shape (T, B, {', '.join(map(str, config.input_shape))}) "
            f"(time-first frames), got {tuple(x.shape)}"
        )
