"""Operation counts and energy per inference under documented cost models.

Counting (per inference = one input, all of its trials; :func:`count_ops`):

* **synaptic ops** (accumulates, ACs): every input spike times its fan-out. For a
  ``Conv2d`` (stride 1, zero padding ``p``) the fan-out of a spike at ``(i, j)`` is
  ``out_channels * n_h(i) * n_w(j)``, where ``n_h(i)`` counts the output rows whose kernel
  window covers row ``i`` (``k`` in the interior, fewer at the edges); edges are counted
  exactly (:func:`conv_fanout_map`). An ``AvgPool2d`` after the conv does not change
  this: the ops are the conv's (pooling the currents is a fixed sum per output neuron,
  which is not counted). For a ``Linear`` the fan-out is ``out_features``.
* **first layer**: the input is a frame of event counts per time bin. With
  ``input_ops="events"`` (default) each event is one spike into the first layer, so a bin
  holding ``c`` events at a pixel costs ``c * fan-out`` ACs (event-driven hardware sees
  ``c`` events). With ``input_ops="dense"`` the first layer is a dense frame convolution
  instead: ``T * C_in * sum(fan-out map)`` MACs whatever the content. When the trials of
  a method share the input (``shared_input``), the first layer's synaptic op runs once
  per inference, not once per trial (as :class:`spikeff.network.SpikingLayer` does).
* **neuron updates**: every neuron of every layer, every time bin, every trial; they are
  split into active (the neuron spiked) and inactive updates for chips that price them
  differently. A stochastic neuron draws one random number per update.
* **head**: a linear readout of spike counts is event-driven: each top-layer spike adds a
  weight column (``n_classes`` ACs); the per-trial scaling, bias and score (squaring or
  averaging) are counted as ``n_classes`` MACs per trial. A spiking head adds its neurons.

Cost models (:class:`CostModel`, presets in :data:`COST_MODELS`) turn counts into picojoules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "CostModel",
    "COST_MODELS",
    "OpCounts",
    "InputOps",
    "conv_fanout_map",
    "fanout_map",
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

    def breakdown(self, ops: "OpCounts") -> dict[str, float]:
        """Energy in pJ per kind of operation."""
        spikes, updates = ops.total("spikes"), ops.total("neuron_updates")
        return {
            "synops": ops.total("synops") * self.synop_pj,
            "macs": ops.total("macs") * self.mac_pj,
            "inactive_updates": (updates - spikes) * self.neuron_update_pj,
            "active_updates": spikes * self.active_pj,
            "random_draws": ops.random_draws * self.random_draw_pj,
        }

    def energy_pj(self, ops: "OpCounts") -> float:
        """Total energy per inference in pJ."""
        return float(sum(self.breakdown(ops).values()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active_update_pj": self.active_pj}


COST_MODELS: dict[str, CostModel] = {
    "cmos45": CostModel(
        "cmos45", synop_pj=0.9, mac_pj=4.6, neuron_update_pj=4.6,
        reference="Horowitz, ISSCC 2014, 45 nm CMOS, 32-bit float: add (AC) 0.9 pJ, mult 3.7 + add 0.9 = "
        "MAC 4.6 pJ. A neuron update (beta * v + I) is counted as one MAC; random draws are free.",
    ),
    "cmos45-synaptic": CostModel(
        "cmos45-synaptic", synop_pj=0.9, mac_pj=4.6,
        reference="Horowitz, ISSCC 2014 (AC 0.9 pJ, MAC 4.6 pJ), synaptic ops only, neuron updates free: "
        "the convention of most SNN energy estimates.",
    ),
    "loihi": CostModel(
        "loihi", synop_pj=23.6, mac_pj=23.6, neuron_update_pj=52.0, active_update_pj=81.0,
        reference="Davies et al., IEEE Micro 2018 (Loihi): 23.6 pJ per synaptic op, 52 pJ per inactive and "
        "81 pJ per active neuron update. Loihi has no MAC unit: a dense MAC is priced as one synaptic op; "
        "on-chip noise is free.",
    ),
}


def get_cost_model(name: str) -> CostModel:
    """A preset from :data:`COST_MODELS`, with a clear error for unknown names."""
    try:
        return COST_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown cost model {name!r}; presets: {sorted(COST_MODELS)}") from None


@dataclass(frozen=True)
class OpCounts:
    """Operations per inference. Tuples hold one entry per stage (layers, then the head)."""

    synops: tuple[float, ...]
    macs: tuple[float, ...]
    spikes: tuple[float, ...]
    neuron_updates: tuple[float, ...]
    random_draws: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def total(self, name: str) -> float:
        return float(sum(getattr(self, name)))

    def to_dict(self, models: Sequence[CostModel] = ()) -> dict[str, Any]:
        d: dict[str, Any] = {k: list(getattr(self, k)) for k in ("synops", "macs", "spikes", "neuron_updates")}
        d["random_draws"] = self.random_draws
        d.update({f"total_{k}": self.total(k) for k in ("synops", "macs", "spikes", "neuron_updates")})
        if self.extra:
            d["extra"] = dict(self.extra)
        if models:
            d["energy_pj"] = {m.name: m.energy_pj(self) for m in models}
        return d

    @staticmethod
    def mean(counts: Sequence["OpCounts"], weights: Sequence[float] | None = None) -> "OpCounts":
        """Weighted mean (e.g. over batches weighted by their sizes)."""
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
        )


def _covering(n_in: int, kernel: int, padding: int) -> Tensor:
    """For each input index, the number of output positions whose window covers it (stride 1)."""
    n_out = n_in + 2 * padding - kernel + 1
    i = torch.arange(n_in)
    lo = torch.clamp(i + padding - kernel + 1, min=0)
    hi = torch.clamp(i + padding, max=n_out - 1)
    return torch.clamp(hi - lo + 1, min=0)


def conv_fanout_map(height: int, width: int, out_channels: int, kernel_size: int, padding: int) -> Tensor:
    """Exact synapses driven by one input spike at each pixel ``(H, W)`` of one input channel."""
    return out_channels * torch.outer(_covering(height, kernel_size, padding), _covering(width, kernel_size, padding)).double()


def _check_conv(conv: nn.Conv2d) -> tuple[int, int]:
    k, p = conv.kernel_size, conv.padding
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or isinstance(p, str):
        raise ValueError("op counting supports stride-1, undilated, ungrouped convolutions with numeric padding")
    if k[0] != k[1] or p[0] != p[1]:
        raise ValueError(f"op counting supports square kernels and padding, got {k}, {p}")
    return k[0], p[0]


def fanout_map(synapse: nn.Module, in_shape: Sequence[int]) -> Tensor:
    """Fan-out of one spike on each input element, broadcastable to ``in_shape``."""
    if isinstance(synapse, nn.Conv2d):
        k, p = _check_conv(synapse)
        return conv_fanout_map(in_shape[-2], in_shape[-1], synapse.out_channels, k, p)
    if isinstance(synapse, nn.Linear):
        return torch.tensor(float(synapse.out_features), dtype=torch.float64)
    raise TypeError(f"op counting supports nn.Conv2d and nn.Linear synapses, got {type(synapse).__name__}")


def synaptic_ops(input_counts: Tensor, synapse: nn.Module) -> float:
    """ACs for input spike counts (one inference, summed over time and trials): ``(C, H, W)`` or ``(F,)``."""
    counts = input_counts.detach().double().cpu()
    if isinstance(synapse, nn.Conv2d):
        if counts.dim() != 3:
            raise ValueError(f"a conv layer needs input counts (C, H, W), got {tuple(counts.shape)}")
        return float((counts.sum(0) * fanout_map(synapse, counts.shape)).sum())
    return float(counts.sum() * fanout_map(synapse, counts.shape))


def dense_macs(in_shape: Sequence[int], synapse: nn.Module, time_steps: int) -> float:
    """MACs of a dense (frame-based) synaptic op over ``time_steps`` on inputs of shape ``in_shape``."""
    fan = fanout_map(synapse, in_shape)
    if isinstance(synapse, nn.Conv2d):
        return float(time_steps * in_shape[0] * fan.sum())
    return float(time_steps * torch.tensor(in_shape).prod() * fan)


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
) -> OpCounts:
    """Mean op counts per inference for one batch.

    Args:
        inputs: event counts ``(T, B, C, H, W)`` fed to the first synapse.
        spikes: each layer's spikes ``(T, trials * B, ...)`` (trial-major; the layer's output
            after pooling, i.e. one entry per neuron).
        synapses: each layer's ``Conv2d`` / ``Linear`` (the first one sees ``inputs``).
        trials: trials per input (``n`` noisy trials, or FF's label passes).
        head: a linear readout on the top layer's spike counts, if any.
        head_spikes: spikes ``(T, trials * B, K)`` of a spiking head, if any.
        shared_input: the first synaptic op runs once for all trials (else once per trial).
        input_ops: ``"events"`` (input events are ACs) or ``"dense"`` (frame MACs).
        stochastic: each neuron update draws one random number.
    """
    if len(spikes) != len(synapses) or not spikes:
        raise ValueError(f"need one spike tensor per synapse, got {len(spikes)} and {len(synapses)}")
    if input_ops not in ("events", "dense"):
        raise ValueError(f"input_ops must be 'events' or 'dense', got {input_ops!r}")
    t, b = inputs.shape[:2]
    inputs, spikes = inputs.detach(), [s.detach() for s in spikes]
    head_spikes = None if head_spikes is None else head_spikes.detach()
    for s in spikes:
        if s.shape[1] != trials * b:
            raise ValueError(f"spikes of shape {tuple(s.shape)} do not hold {trials} trials of {b} inputs")
    first_repeat = 1 if shared_input else trials
    synops, macs = [], []
    if input_ops == "events":
        synops.append(first_repeat * synaptic_ops(inputs.sum((0, 1)) / b, synapses[0]))
        macs.append(0.0)
    else:
        synops.append(0.0)
        macs.append(first_repeat * dense_macs(tuple(inputs.shape[2:]), synapses[0], t))
    for prev, syn in zip(spikes[:-1], synapses[1:]):
        counts = prev.sum((0, 1)) / b
        synops.append(synaptic_ops(counts.flatten() if isinstance(syn, nn.Linear) else counts, syn))
        macs.append(0.0)
    n_spikes = [float(s.sum()) / b for s in spikes]
    updates = [s.numel() / b for s in spikes]
    if head is not None:
        synops.append(n_spikes[-1] * head.out_features)
        macs.append(float(trials * head.out_features))
        if head_spikes is not None:
            n_spikes.append(float(head_spikes.sum()) / b)
            updates.append(head_spikes.numel() / b)
    draws = sum(updates) if stochastic else 0.0
    return OpCounts(tuple(synops), tuple(macs), tuple(n_spikes), tuple(updates), draws)
