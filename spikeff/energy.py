"""Operation counts and energy per inference under documented cost models.

Counting (per inference = one input, all of its trials; :func:`count_ops`):

* **synaptic ops** (accumulates, ACs): every input spike times its fan-out, counted on the
  op that runs. A ``Conv2d`` (stride 1, zero padding ``pad``, kernel ``k``) followed by an
  ``AvgPool2d(p)`` runs as one conv of stride ``p`` and kernel ``k + p - 1``
  (:func:`spikeff.network.synapse_pool`), so the fan-out of a spike at ``(i, j)`` is
  ``out_channels * n_h(i) * n_w(j)``, where ``n_h(i)`` counts the output rows of that
  executed conv whose window covers row ``i`` (edges and stride alignment exact,
  :func:`conv_fanout_map`). A conv without a fusable pool is counted as the stride-1 conv.
  ``OpCounts.synops_unfused`` holds the stride-1 conv count (the convention of most papers;
  about ``9/4`` times the executed count for ``k = 3, p = 2``). For a ``Linear`` the
  fan-out is ``out_features``.
* **connections**: the synapses of the unrolled executed op (input, output element pairs);
  ``synops / connections`` is how often each synapse is used per inference (a dense net
  uses each weight ``T`` times).
* **first layer**: the input is a frame of event counts per time bin. With
  ``input_ops="events"`` (default) each event is one spike into the first layer, so a bin
  holding ``c`` events at a pixel costs ``c * fan-out`` ACs. With ``input_ops="dense"`` the
  first layer is a dense frame convolution instead: ``T * C_in * sum(fan-out map)`` MACs of
  the executed conv whatever the content. When the trials of a method share the input
  (``shared_input``), the first layer's synaptic op runs once per inference, not once per
  trial (as :class:`spikeff.network.SpikingLayer` does).
* **neuron updates**: every neuron of every layer, every time bin, every trial; split into
  active (the neuron spiked) and inactive updates for chips that price them differently.
* **random draws**: a stochastic neuron draws one random number per update, priced by
  ``CostModel.random_draw_pj``.
* **head**: a linear readout of spike counts is event-driven: each top-layer spike adds a
  weight column (``n_classes`` ACs); the per-trial scaling, bias and score (squaring or
  averaging) are counted as ``n_classes`` MACs per trial. A spiking head adds its neurons.

Cost models (:class:`CostModel`, presets in :data:`COST_MODELS`) turn counts into picojoules.

Every count is checked against a brute-force count in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .network import _box_pool_size

__all__ = [
    "CostModel",
    "COST_MODELS",
    "OpCounts",
    "InputOps",
    "conv_fanout_map",
    "fanout_map",
    "n_connections",
    "synaptic_ops",
    "dense_macs",
    "count_ops",
    "get_cost_model",
]

InputOps = Literal["events", "dense"]


@dataclass(frozen=True)
class CostModel:
    """Energy per operation in picojoules.

    ``synop_pj``: one synaptic accumulate (a spike reaching one synapse); ``mac_pj``: one
    dense multiply-accumulate; ``neuron_update_pj`` / ``active_update_pj``: one time step of
    a neuron that does not / does spike; ``random_draw_pj``: one random number of a
    stochastic neuron.
    """

    name: str
    synop_pj: float
    mac_pj: float
    neuron_update_pj: float = 0.0
    active_update_pj: float | None = None
    random_draw_pj: float = 0.0
    reference: str = ""

    def __post_init__(self) -> None:
        values = (self.synop_pj, self.mac_pj, self.neuron_update_pj, self.active_pj, self.random_draw_pj)
        if min(values) < 0:
            raise ValueError(f"cost model {self.name!r}: energies must be >= 0, got {values}")

    @property
    def active_pj(self) -> float:
        return self.neuron_update_pj if self.active_update_pj is None else self.active_update_pj

    def breakdown(self, ops: OpCounts) -> dict[str, float]:
        """Energy in pJ per kind of operation.

        Parameters
        ----------
        ops : op counts per inference.

        Returns
        -------
        dict : ``synops``, ``macs``, ``inactive_updates``, ``active_updates``, ``random_draws`` -> pJ.
        """
        spikes, updates = ops.total("spikes"), ops.total("neuron_updates")
        return {
            "synops": ops.total("synops") * self.synop_pj,
            "macs": ops.total("macs") * self.mac_pj,
            "inactive_updates": (updates - spikes) * self.neuron_update_pj,
            "active_updates": spikes * self.active_pj,
            "random_draws": ops.random_draws * self.random_draw_pj,
        }

    def energy_pj(self, ops: OpCounts) -> float:
        """Total energy per inference in pJ.

        Parameters
        ----------
        ops : op counts per inference.

        Returns
        -------
        float, the sum of :meth:`breakdown`.
        """
        return float(sum(self.breakdown(ops).values()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active_update_pj": self.active_pj}


COST_MODELS: dict[str, CostModel] = {
    "cmos45": CostModel(
        "cmos45", synop_pj=0.9, mac_pj=4.6, neuron_update_pj=4.6, random_draw_pj=2.7,
        reference="Horowitz, ISSCC 2014, 45 nm CMOS, 32-bit float: add (AC) 0.9 pJ, mult 3.7 + add 0.9 = "
        "MAC 4.6 pJ. A neuron update (beta * v + I) is counted as one MAC. A random draw is one step of a "
        "32-bit xorshift PRNG (3 shifts + 3 XORs); assumption, not measured: priced as 3 x 32-bit adds "
        "(3 x 0.9 = 2.7 pJ), shifts taken as nearly free.",
    ),
    "cmos45-synaptic": CostModel(
        "cmos45-synaptic", synop_pj=0.9, mac_pj=4.6, random_draw_pj=0.0,
        reference="Horowitz, ISSCC 2014 (AC 0.9 pJ, MAC 4.6 pJ), synaptic ops only: neuron updates and random "
        "draws are free, the convention of most SNN energy estimates.",
    ),
    "loihi": CostModel(
        "loihi", synop_pj=23.6, mac_pj=23.6, neuron_update_pj=52.0, active_update_pj=81.0, random_draw_pj=0.0,
        reference="Davies et al., IEEE Micro 2018 (Loihi): 23.6 pJ per synaptic op, 52 pJ per inactive and "
        "81 pJ per active neuron update. Loihi has no MAC unit: a dense MAC is priced as one synaptic op. "
        "Random draws come from Loihi's per-core noise generators, for which no per-draw energy is "
        "published; assumption: their energy is included in the neuron-update energy, so a draw adds 0 pJ.",
    ),
}


def get_cost_model(name: str) -> CostModel:
    """A preset from :data:`COST_MODELS`, with a clear error for unknown names.

    Parameters
    ----------
    name : a key of :data:`COST_MODELS`.

    Returns
    -------
    CostModel

    Raises
    ------
    ValueError : an unknown name.
    """
    try:
        return COST_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown cost model {name!r}; presets: {sorted(COST_MODELS)}") from None


_STAGE_FIELDS = ("synops", "synops_unfused", "macs", "spikes", "neuron_updates")


@dataclass(frozen=True)
class OpCounts:
    """Operations per inference. Tuples hold one entry per stage (layers, then the head).

    ``synops`` counts the executed op (a conv fused with its average pool runs as one strided
    conv); ``synops_unfused`` the stride-1 conv as papers count it (``None``: same as
    ``synops``); ``connections`` the synapses of each stage's unrolled executed op (``()``:
    unknown).
    """

    synops: tuple[float, ...]
    macs: tuple[float, ...]
    spikes: tuple[float, ...]
    neuron_updates: tuple[float, ...]
    random_draws: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    synops_unfused: tuple[float, ...] | None = None
    connections: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.synops_unfused is None:
            object.__setattr__(self, "synops_unfused", tuple(self.synops))
        if len(self.synops_unfused) != len(self.synops):
            raise ValueError(f"synops_unfused has {len(self.synops_unfused)} stages, synops {len(self.synops)}")
        if self.connections and len(self.connections) != len(self.synops):
            raise ValueError(f"connections has {len(self.connections)} stages, synops {len(self.synops)}")

    def total(self, name: str) -> float:
        """The sum over the stages of the field ``name`` (e.g. ``"synops"``).

        Parameters
        ----------
        name : a per-stage field, e.g. ``"synops"`` or ``"macs"``.

        Returns
        -------
        float
        """
        return float(sum(getattr(self, name)))

    def spikes_per_synapse(self) -> list[float | None]:
        """``synops / connections`` per stage (``None`` where the connections are unknown or 0).

        Returns
        -------
        list, one entry per stage.
        """
        if not self.connections:
            return [None] * len(self.synops)
        return [s / c if c else None for s, c in zip(self.synops, self.connections)]

    def activation_sparsity(self) -> list[float | None]:
        """``1 - spikes / neuron_updates`` per layer (``None`` without updates).

        Returns
        -------
        list, one entry per stage that has neurons.
        """
        return [1.0 - s / u if u else None for s, u in zip(self.spikes, self.neuron_updates)]

    def to_dict(self, models: Sequence[CostModel] = ()) -> dict[str, Any]:
        """The counts as plain lists and numbers, with totals and per-stage ratios.

        Parameters
        ----------
        models : cost models whose energy per inference is added under ``energy_pj``.

        Returns
        -------
        dict, JSON-serialisable.
        """
        d: dict[str, Any] = {k: list(getattr(self, k)) for k in _STAGE_FIELDS}
        d["connections"] = list(self.connections)
        d["spikes_per_synapse"] = self.spikes_per_synapse()
        d["activation_sparsity"] = self.activation_sparsity()
        d["random_draws"] = self.random_draws
        d.update({f"total_{k}": self.total(k) for k in _STAGE_FIELDS})
        if self.extra:
            d["extra"] = dict(self.extra)
        if models:
            d["energy_pj"] = {m.name: m.energy_pj(self) for m in models}
        return d

    @staticmethod
    def mean(counts: Sequence[OpCounts], weights: Sequence[float] | None = None) -> OpCounts:
        """Weighted mean (e.g. over batches weighted by their sizes).

        Parameters
        ----------
        counts : op counts with the same stages.
        weights : one per entry of ``counts`` (by default equal).

        Returns
        -------
        OpCounts; ``connections`` only where every entry has them.

        Raises
        ------
        ValueError : ``counts`` is empty.
        """
        if not counts:
            raise ValueError("no op counts to average")
        w = [1.0] * len(counts) if weights is None else [float(x) for x in weights]
        tot = sum(w)

        def avg(name: str) -> tuple[float, ...]:
            rows = [getattr(c, name) for c in counts]
            return tuple(sum(wi * r[i] for wi, r in zip(w, rows)) / tot for i in range(len(rows[0])))

        extra_keys = set().union(*(c.extra for c in counts))
        return OpCounts(
            avg("synops"), avg("macs"), avg("spikes"), avg("neuron_updates"),
            sum(wi * c.random_draws for wi, c in zip(w, counts)) / tot,
            {k: sum(wi * c.extra.get(k, 0.0) for wi, c in zip(w, counts)) / tot for k in extra_keys},
            synops_unfused=avg("synops_unfused"),
            connections=avg("connections") if all(c.connections for c in counts) else (),
        )


def _covering(n_in: int, kernel: int, padding: int, stride: int = 1) -> Tensor:
    """For each input index, the number of output positions whose window covers it.

    Output ``o`` (of ``floor((n_in + 2 padding - kernel) / stride) + 1``) reads the input
    indices ``o * stride - padding ... o * stride - padding + kernel - 1``.
    """
    n_out = (n_in + 2 * padding - kernel) // stride + 1
    i = torch.arange(n_in)
    lo = torch.clamp(-torch.div(kernel - 1 - i - padding, stride, rounding_mode="floor"), min=0)  # ceil
    hi = torch.clamp(torch.div(i + padding, stride, rounding_mode="floor"), max=n_out - 1)
    return torch.clamp(hi - lo + 1, min=0)


def conv_fanout_map(
    height: int, width: int, out_channels: int, kernel_size: int, padding: int, stride: int = 1
) -> Tensor:
    """Exact synapses driven by one input spike at each pixel ``(H, W)`` of one input channel.

    Parameters
    ----------
    height, width : the input's size.
    out_channels : the conv's output channels.
    kernel_size, padding, stride : of the executed conv (square).

    Returns
    -------
    Tensor ``(H, W)``, float64.
    """
    return out_channels * torch.outer(
        _covering(height, kernel_size, padding, stride), _covering(width, kernel_size, padding, stride)
    ).double()


def _check_conv(conv: nn.Conv2d) -> tuple[int, int]:
    k, p = conv.kernel_size, conv.padding
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or isinstance(p, str):
        raise ValueError("op counting supports stride-1, undilated, ungrouped convolutions with numeric padding")
    if k[0] != k[1] or p[0] != p[1]:
        raise ValueError(f"op counting supports square kernels and padding, got {k}, {p}")
    return k[0], p[0]


def _fused_pool(synapse: nn.Module, pool: nn.Module | None) -> int | None:
    """``p`` where the network runs ``pool(synapse(x))`` as one conv of stride ``p``, else ``None``."""
    if pool is None or isinstance(pool, nn.Identity):
        return None
    return _box_pool_size(synapse, pool)


def fanout_map(synapse: nn.Module, in_shape: Sequence[int], pool: nn.Module | None = None) -> Tensor:
    """Fan-out of one spike on each input element of the executed op, broadcastable to ``in_shape``.

    With a ``pool`` that the network fuses into the conv (:func:`spikeff.network.synapse_pool`)
    this is the fan-out of the stride-``p`` conv with kernel ``k + p - 1``; else of the conv.

    Parameters
    ----------
    synapse : a Conv2d (stride 1, square, numeric padding) or Linear.
    in_shape : the input's shape, ending in ``(H, W)`` for a conv.
    pool : the pooling after the conv, or ``None``.

    Returns
    -------
    Tensor, float64: ``(H, W)`` for a conv, a scalar for a Linear.

    Raises
    ------
    TypeError : a synapse other than Conv2d or Linear.
    ValueError : a conv that is strided, dilated, grouped or not square.
    """
    if isinstance(synapse, nn.Conv2d):
        k, pad = _check_conv(synapse)
        p = _fused_pool(synapse, pool)
        kernel, stride = (k, 1) if p is None else (k + p - 1, p)
        return conv_fanout_map(in_shape[-2], in_shape[-1], synapse.out_channels, kernel, pad, stride)
    if isinstance(synapse, nn.Linear):
        return torch.tensor(float(synapse.out_features), dtype=torch.float64)
    raise TypeError(f"op counting supports nn.Conv2d and nn.Linear synapses, got {type(synapse).__name__}")


def n_connections(in_shape: Sequence[int], synapse: nn.Module, pool: nn.Module | None = None) -> float:
    """Synapses of the unrolled executed op on inputs of shape ``in_shape``: (input, output) element pairs.

    Parameters
    ----------
    in_shape : ``(C, H, W)`` for a conv, the features for a Linear.
    synapse, pool : as in :func:`fanout_map` (whose errors it raises).

    Returns
    -------
    float
    """
    fan = fanout_map(synapse, in_shape, pool)
    if isinstance(synapse, nn.Conv2d):
        return float(in_shape[-3] * fan.sum())
    return float(torch.tensor(in_shape).prod() * fan)


def synaptic_ops(input_counts: Tensor, synapse: nn.Module, pool: nn.Module | None = None) -> float:
    """ACs for input spike counts (one inference, summed over time and trials): ``(C, H, W)`` or ``(F,)``.

    Parameters
    ----------
    input_counts : ``(C, H, W)`` for a conv, ``(F,)`` for a Linear.
    synapse, pool : as in :func:`fanout_map`.

    Returns
    -------
    float

    Raises
    ------
    ValueError : a conv gets counts that are not ``(C, H, W)``, or as :func:`fanout_map`.
    TypeError : as :func:`fanout_map`.
    """
    counts = input_counts.detach().double().cpu()
    if isinstance(synapse, nn.Conv2d):
        if counts.dim() != 3:
            raise ValueError(f"a conv layer needs input counts (C, H, W), got {tuple(counts.shape)}")
        return float((counts.sum(0) * fanout_map(synapse, counts.shape, pool)).sum())
    return float(counts.sum() * fanout_map(synapse, counts.shape, pool))


def dense_macs(in_shape: Sequence[int], synapse: nn.Module, time_steps: int, pool: nn.Module | None = None) -> float:
    """MACs of a dense (frame-based) synaptic op over ``time_steps`` on inputs of shape ``in_shape``.

    Parameters
    ----------
    in_shape, synapse, pool : as in :func:`n_connections`.
    time_steps : the time bins ``T``.

    Returns
    -------
    float
    """
    return float(time_steps * n_connections(in_shape, synapse, pool))


def count_ops(
    inputs: Tensor,
    spikes: Sequence[Tensor],
    synapses: Sequence[nn.Module],
    *,
    trials: int = 1,
    head: nn.Linear | None = None,
    head_spikes: Tensor | None = None,
    shared_input: bool = True,
    input_ops: InputOps = "events",
    stochastic: bool = False,
    pools: Sequence[nn.Module | None] | None = None,
) -> OpCounts:
    """Mean op counts per inference for one batch.

    Parameters
    ----------
    inputs : event counts ``(T, B, C, H, W)`` fed to the first synapse.
    spikes : each layer's spikes ``(T, trials * B, ...)`` (trial-major; the layer's output
        after pooling, i.e. one entry per neuron). A layer with graded outputs (not all 0 or 1,
        e.g. ReLU units) counts its nonzero outputs as its events, and each drives MACs, not ACs.
    synapses : each layer's ``Conv2d`` / ``Linear`` (the first one sees ``inputs``).
    trials : trials per input (``n`` noisy trials, or FF's label passes).
    head : a linear readout on the top layer's spike counts, if any.
    head_spikes : spikes ``(T, trials * B, K)`` of a spiking head, if any.
    shared_input : the first synaptic op runs once for all trials (else once per trial).
    input_ops : ``"events"`` (input events are ACs) or ``"dense"`` (frame MACs).
    stochastic : each neuron update draws one random number.
    pools : each layer's pool module (``None`` or ``nn.Identity``: none). A conv whose
        average pool the network fuses into it is counted as the strided conv that runs;
        ``synops_unfused`` keeps the stride-1 count.

    Returns
    -------
    OpCounts, one stage per layer and one for ``head`` if given.

    Raises
    ------
    ValueError : the numbers of spike tensors, synapses and pools differ, an unknown ``input_ops``,
        or spikes that do not hold ``trials`` trials of the batch.
    """
    if len(spikes) != len(synapses) or not spikes:
        raise ValueError(f"need one spike tensor per synapse, got {len(spikes)} and {len(synapses)}")
    if input_ops not in ("events", "dense"):
        raise ValueError(f"input_ops must be 'events' or 'dense', got {input_ops!r}")
    pools = [None] * len(synapses) if pools is None else list(pools)
    if len(pools) != len(synapses):
        raise ValueError(f"need one pool (or None) per synapse, got {len(pools)} and {len(synapses)}")
    t, b = inputs.shape[:2]
    inputs, spikes = inputs.detach(), [s.detach() for s in spikes]
    head_spikes = None if head_spikes is None else head_spikes.detach()
    for s in spikes:
        if s.shape[1] != trials * b:
            raise ValueError(f"spikes of shape {tuple(s.shape)} do not hold {trials} trials of {b} inputs")
    first_repeat = 1 if shared_input else trials
    in_shapes = [tuple(inputs.shape[2:])] + [tuple(s.shape[2:]) for s in spikes[:-1]]
    synops, unfused, macs = [], [], []
    if input_ops == "events":
        counts = inputs.sum((0, 1)) / b
        synops.append(first_repeat * synaptic_ops(counts, synapses[0], pools[0]))
        unfused.append(first_repeat * synaptic_ops(counts, synapses[0]))
        macs.append(0.0)
    else:
        synops.append(0.0)
        unfused.append(0.0)
        macs.append(first_repeat * dense_macs(in_shapes[0], synapses[0], t, pools[0]))
    # Graded (non-binary) outputs, e.g. ReLU units: each nonzero one drives a MAC per connection, not an AC.
    graded = [any(bool(((st != 0) & (st != 1)).any()) for st in s) for s in spikes]  # per step: small temporaries
    events = [(s != 0).to(torch.float32) if g else s for s, g in zip(spikes, graded)]
    for prev, syn, pool, g in zip(events[:-1], synapses[1:], pools[1:], graded):
        counts = prev.sum((0, 1)) / b
        counts = counts.flatten() if isinstance(syn, nn.Linear) else counts
        ops = (synaptic_ops(counts, syn, pool), synaptic_ops(counts, syn))
        synops.append(0.0 if g else ops[0])
        unfused.append(0.0 if g else ops[1])
        macs.append(ops[0] if g else 0.0)
    connections = [n_connections(shape, syn, pool) for shape, syn, pool in zip(in_shapes, synapses, pools)]
    n_spikes = [float(s.sum()) / b for s in events]
    updates = [s.numel() / b for s in spikes]
    if head is not None:
        head_ops = n_spikes[-1] * head.out_features
        synops.append(0.0 if graded[-1] else head_ops)
        unfused.append(synops[-1])
        macs.append(float(trials * head.out_features) + (head_ops if graded[-1] else 0.0))
        connections.append(float(math.prod(spikes[-1].shape[2:]) * head.out_features))
        if head_spikes is not None:
            n_spikes.append(float(head_spikes.sum()) / b)
            updates.append(head_spikes.numel() / b)
    draws = sum(updates) if stochastic else 0.0
    return OpCounts(
        tuple(synops), tuple(macs), tuple(n_spikes), tuple(updates), draws,
        synops_unfused=tuple(unfused), connections=tuple(connections),
    )
