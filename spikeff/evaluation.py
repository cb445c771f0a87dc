"""One evaluation loop for every method: predictions, accuracy and op counts per inference.

:func:`evaluate_batches` runs a method's ``infer`` over a held-out split and gathers what it
returns (:class:`Inference`): predicted labels per readout mode, optionally the op counts of the
batch and the mean spike rate per layer. spikeff's own networks go through
:func:`evaluate`; the baselines (:mod:`spikeff.baselines`) pass their own ``infer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .data import DataError
from .energy import InputOps, OpCounts, count_ops
from .network import SpikingNet, device_of, input_parts
from .probe import FeatureCollector
from .readout import MODES, Mode, scores

__all__ = ["Inference", "Evaluation", "evaluate_batches", "evaluate", "spikeff_infer", "wilson_interval"]

Batch = tuple[Tensor, Tensor]


class Inference(NamedTuple):
    """What a method returns for one batch of ``B`` inputs."""

    predictions: dict[str, Tensor]  # readout mode -> predicted labels (B,)
    ops: OpCounts | None = None  # op counts per inference, this batch's mean
    rates: tuple[float, ...] = ()  # mean spike rate per layer in this batch
    head_rate: float | None = None  # a spiking head's mean spike rate in this batch


@dataclass
class Evaluation:
    """A method on a held-out split.

    ``accuracy`` and ``predictions`` per readout mode, ``labels`` in the split's order,
    ``ops`` the op counts per inference (mean over the inputs) when the method counts them,
    ``layer_rates`` the mean spike rate per layer, ``head_rate`` a spiking head's.
    """

    n: int
    labels: Tensor
    predictions: dict[str, Tensor]
    accuracy: dict[str, float]
    ops: OpCounts | None = None
    layer_rates: list[float] = field(default_factory=list)
    head_rate: float | None = None


@torch.no_grad()
def evaluate_batches(
    batches: Iterable[Batch], device: torch.device, infer: Callable[[Tensor], Inference]
) -> Evaluation:
    """Run ``infer`` on every batch of ``(x, y)`` moved to ``device`` and gather the results.

    Parameters
    ----------
    batches : time-first inputs ``(T, B, ...)`` and labels ``(B,)``.
    device : where ``infer`` runs.
    infer : one batch's :class:`Inference` from its inputs.

    Returns
    -------
    Evaluation, with op counts and rates weighted by batch size.

    Raises
    ------
    DataError : the split yields no inputs.
    """
    labels, preds, ops, rates, head_rates, sizes = [], {}, [], [], [], []
    for x, y in tqdm(batches, desc="evaluation", leave=False, dynamic_ncols=True):
        x, y = x.to(device), y.to(device)
        out = infer(x)
        labels.append(y.cpu())
        for mode, p in out.predictions.items():
            preds.setdefault(mode, []).append(p.cpu())
        if out.ops is not None:
            ops.append(out.ops)
        if out.rates:
            rates.append(out.rates)
        if out.head_rate is not None:
            head_rates.append(out.head_rate * y.shape[0])
        sizes.append(y.shape[0])
    if not sizes:
        raise DataError("the evaluation set is empty")
    y_all = torch.cat(labels)
    predictions = {m: torch.cat(p) for m, p in preds.items()}
    n = len(y_all)
    return Evaluation(
        n=n, labels=y_all, predictions=predictions,
        accuracy={m: (p == y_all).sum().item() / n for m, p in predictions.items()},
        ops=OpCounts.mean(ops, sizes) if ops else None,
        layer_rates=[sum(r[k] * b for r, b in zip(rates, sizes)) / n for k in range(len(rates[0]))] if rates else [],
        head_rate=sum(head_rates) / n if head_rates else None,
    )


def spikeff_infer(
    net: SpikingNet, trials: int, generator: torch.Generator, modes: tuple[Mode, ...] = MODES, *,
    count: bool = False, input_ops: InputOps = "events", input_per_trial: bool = False,
    collect: FeatureCollector | None = None,
) -> Callable[[Tensor], Inference]:
    """``infer`` for a :class:`SpikingNet`: ``trials`` noisy trials score the energy and average
    modes, one noise-free trial the deterministic mode. A batch with more input-trials than
    :data:`~spikeff.network.TRIAL_INPUTS` runs in parts of inputs (:func:`~spikeff.network.input_parts`).

    With ``count``, the batch's op counts (:func:`spikeff.energy.count_ops`) are those of the
    first mode's pass; ``input_per_trial`` charges the first layer's input once per trial
    (hardware that runs each trial separately) instead of once per inference.

    Parameters
    ----------
    net : the network.
    trials : noisy trials per input.
    generator : the neuron noise.
    modes : the readout modes to predict, some of :data:`MODES`.
    count : count the batch's ops.
    input_ops : how the input is counted (see :func:`spikeff.energy.count_ops`).
    input_per_trial : charge the first layer's input once per trial.
    collect : gathers the features of the noisy pass (``trials`` trials), batch by batch.

    Returns
    -------
    Callable, ``infer(x)`` -> :class:`Inference`.

    Raises
    ------
    ValueError : ``trials < 1``, or an unknown mode.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1 for evaluation, got {trials}")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown readout mode(s) {sorted(unknown)}; expected some of {MODES}")

    def run(x: Tensor, deterministic: bool, counted: bool) -> tuple[Tensor, list[Tensor], OpCounts | None]:
        n = 1 if deterministic else trials
        spikes = net.layer_outputs(x, generator, n, deterministic)
        head_spikes = None if net.head.kind == "linear" else net.head.spikes(spikes[-1], generator, deterministic)
        z = net.head(spikes[-1]) if head_spikes is None else head_spikes.sum(0)
        stochastic = not deterministic and any(m.lif.stochastic for m in net.neurons())
        ops = count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=n, head=net.head.fc,
                        head_spikes=head_spikes, shared_input=not input_per_trial, input_ops=input_ops,
                        stochastic=stochastic, pools=[layer.pool for layer in net.layers]) if counted else None
        return z.unflatten(0, (n, x.shape[1])), spikes, ops

    def infer(x: Tensor) -> Inference:
        sizes = input_parts(x.shape[1], trials)
        if len(sizes) == 1:
            return infer_part(x)
        parts = [infer_part(xp) for xp in x.split(sizes, dim=1)]  # the memory of one part, not of all trials

        def mean(values: list[float]) -> float:
            return sum(v * b for v, b in zip(values, sizes)) / sum(sizes)

        return Inference({m: torch.cat([p.predictions[m] for p in parts]) for m in parts[0].predictions},
                         None if parts[0].ops is None else OpCounts.mean([p.ops for p in parts], sizes),
                         tuple(mean(list(r)) for r in zip(*(p.rates for p in parts))),
                         None if parts[0].head_rate is None else mean([p.head_rate for p in parts]))

    def infer_part(x: Tensor) -> Inference:
        preds, ops, rates, head_rate = {}, None, (), None
        stochastic = [m for m in modes if m != "deterministic"]
        for deterministic in ([False] if stochastic else []) + ([True] if "deterministic" in modes else []):
            z, spikes, c = run(x, deterministic, counted=count and ops is None)
            for m in (["deterministic"] if deterministic else stochastic):
                preds[m] = scores(z, m).argmax(1)
            ops = c if ops is None else ops
            if not deterministic:
                rates = tuple(s.mean().item() for s in spikes)
                if collect is not None:
                    collect.add(x, spikes)
                if net.head.kind == "lif":  # z: spike counts over the T steps
                    head_rate = z.float().mean().item() / x.shape[0]
        return Inference(preds, ops, rates, head_rate)

    return infer


def evaluate(
    net: SpikingNet, batches: Iterable[Batch], trials: int, generator: torch.Generator,
    modes: tuple[Mode, ...] = MODES, *, count: bool = False, input_ops: InputOps = "events",
    input_per_trial: bool = False, collect: FeatureCollector | None = None,
) -> Evaluation:
    """A :class:`SpikingNet` in ``modes`` on ``batches`` (see :func:`spikeff_infer` for the op counts).

    Parameters
    ----------
    net : the network; switched to eval mode.
    batches : the held-out split.
    trials : noisy trials per input for the energy and average modes.
    generator : the noise.
    modes : readout modes to score.
    count, input_ops, input_per_trial, collect : as in :func:`spikeff_infer`.

    Returns
    -------
    Evaluation
    """
    net.eval()
    device = device_of(net)
    infer = spikeff_infer(net, trials, generator, modes, count=count, input_ops=input_ops,
                          input_per_trial=input_per_trial, collect=collect)
    return evaluate_batches(batches, device, infer)


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``p`` observed on ``n`` samples.

    Parameters
    ----------
    p : float
        The observed proportion, in [0, 1].
    n : int
        Number of samples (>= 1).
    z : float
        Normal quantile (1.96 for 95 %).

    Returns
    -------
    tuple of float
        ``(low, high)``, clipped to [0, 1].

    Raises
    ------
    ValueError
        If ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"a Wilson interval needs n >= 1, got {n}")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
