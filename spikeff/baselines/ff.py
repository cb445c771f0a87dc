"""Forward-Forward (Hinton, 2022): a label embedding and an objective on spikeff's layer-local loop.

The :class:`~spikeff.network.SpikingLayer` stack of a :class:`~spikeff.network.NetworkConfig` (``norm="none"``,
deterministic LIF, plus ``FFConfig.hidden`` fully connected layers) learns by :class:`~spikeff.trainer.LayerTrainer`
(no head) on :class:`~spikeff.objectives.GoodnessObjective` (``loss``: ``"symba"``, Hinton's ``"threshold"``), each
layer's Adam decaying to zero (cosine). FF adds:

* **label inputs** (:meth:`FFNet.feed`, the trainer's feed): ``K = n_classes`` channels, constant over space and
  time, hold the one-hot label times ``label_scale`` (label ``-1``, *neutral*: ``label_scale / K`` each), for
  the first layer or (``label_layers="all"``) every layer; layer ``l + 1`` reads layer ``l``'s spikes
  normalised per sample, ``s sqrt(N_l) / ||c_l||`` (``c_l`` the counts);
* **init** on the first batch: each synapse scaled to currents of zero mean and unit variance per channel,
  then the threshold loss's ``theta_l = threshold * mean g_l`` (``g_l`` the goodness of layer ``l``);
* **negatives** (:func:`mine_negatives`): trial 0 is the positive pass, trial 1 the input with a wrong label,
  with probability ``hard_fraction`` the hardest, ``argmax_{k != y} sum_l g_l(x, k)``, else a uniform one;
* **prediction** (``predict``): ``argmax_k sum_l g_l(x, k)`` over all layers (``"goodness"``, ``K`` passes) or
  ``2..L`` (``"goodness_top"``), or one neutral pass and a linear head (``"head"``) on the normalised counts
  of the ``head_layers`` (``top``; ``upper``: ``2..L``; ``all``) fitted by :func:`~spikeff.readout_fit.fit_linear_head`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..choices import check_choices
from ..energy import InputOps, OpCounts, count_ops
from ..evaluation import Inference, evaluate_batches
from ..network import NetworkConfig, SpikingNet, check_input, device_of, expand_trials, init_fan_in_, spike_counts
from ..objectives import GoodnessObjective, goodness
from ..readout_fit import fit_linear_head
from ..trainer import LayerTrainer, TrainConfig, cosine_schedule
from .bptt import BaselineResult

__all__ = ["FFConfig", "FFNet", "PREDICT_MODES", "normalise", "mine_negatives", "train_layers", "fit_head",
           "evaluate_ff", "train_ff"]

Batch = tuple[Tensor, Tensor]
PredictMode = Literal["goodness", "goodness_top", "head"]
PREDICT_MODES: tuple[PredictMode, ...] = ("goodness", "goodness_top", "head")
HeadLayers = Literal["top", "upper", "all"]


@dataclass(frozen=True)
class FFConfig:
    """Forward-Forward's settings (defaults chosen on a share of N-MNIST's training set, benchmarks/ff_nmnist.py)."""

    epochs: int = 4
    lr: float = 1e-2
    threshold: float = 1.0
    sharpness: float = 10.0
    label_scale: float = 1.0
    hard_fraction: float = 0.5
    mine_candidates: int | None = 2
    predict: PredictMode = "head"
    head_epochs: int = 30
    head_lr: float = 3e-3
    hidden: tuple[int, ...] = ()
    label_layers: Literal["first", "all"] = "first"
    loss: Literal["threshold", "symba"] = "symba"
    head_layers: HeadLayers = "top"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))  # JSON gives lists
        check_choices(self)
        values = (self.lr, self.threshold, self.sharpness, self.label_scale, self.head_lr)
        if min(values) <= 0 or min(self.hidden, default=1) < 1:
            raise ValueError(f"lr, threshold, sharpness, label_scale, head_lr and hidden layer sizes must be positive, "
                             f"got {values}, {self.hidden}")
        if min(self.epochs, self.head_epochs) < 0 or not 0.0 <= self.hard_fraction <= 1.0 or (
                self.mine_candidates is not None and self.mine_candidates < 1):
            raise ValueError(f"need epochs, head_epochs >= 0, hard_fraction in [0, 1], mine_candidates >= 1 or None; "
                             f"got {self.epochs}, {self.head_epochs}, {self.hard_fraction}, {self.mine_candidates}")


def normalise(spikes: Tensor) -> Tensor:
    """Per-sample layer normalisation of spikes ``(T, N, ...)``: ``s * sqrt(D) / ||c||``, ``c`` the counts."""
    c = spikes.sum(0).flatten(1)
    scale = math.sqrt(c.shape[1]) / c.norm(dim=1).clamp_min(1e-6)
    return spikes * scale.view(1, -1, *[1] * (spikes.dim() - 2))


class FFNet(nn.Module):
    """Spiking layers of a :class:`NetworkConfig` with FF's label inputs, and the ``"head"`` prediction's head."""

    def __init__(self, config: NetworkConfig, ff: FFConfig = FFConfig(),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config, self.ff = config, ff
        (c, h, w), k = config.input_shape, config.n_classes
        self.layers = SpikingNet(replace(config, input_shape=(c + k, h, w), norm="none", lif=config.lif.deterministic(),
                                         hidden=config.hidden + ff.hidden), generator).layers
        for layer in self.layers[1:] if ff.label_layers == "all" else []:  # K label inputs more
            s = layer.synapse
            layer.synapse = (nn.Conv2d(s.in_channels + k, s.out_channels, s.kernel_size, padding=s.padding)
                             if isinstance(s, nn.Conv2d) else nn.Linear(s.in_features + k, s.out_features))
            init_fan_in_(layer.synapse, generator)
        self.set_head(ff.head_layers, generator)
        self.register_buffer("thresholds", torch.full((len(self.layers),), float(ff.threshold)))  # by init_from_batch

    def set_head(self, head_layers: HeadLayers, generator: torch.Generator | None = None) -> None:
        """A new (fan-in initialised) linear head on the layers ``head_layers`` names; ``ff`` follows."""
        n = len(self.layers)
        self.ff = replace(self.ff, head_layers=head_layers)
        #: the layers (0-based) whose normalised counts the head reads
        self.head_layers = {"top": [n - 1], "upper": list(range(min(1, n - 1), n)), "all": list(range(n))}[head_layers]
        one = torch.zeros(1, 1, *self.config.input_shape, device=device_of(self))
        sizes = [s[0, 0].numel() for s in self.layer_spikes(one, torch.full((1,), -1, device=one.device))]
        self.head = nn.Linear(sum(sizes[i] for i in self.head_layers), self.config.n_classes, device=one.device)
        init_fan_in_(self.head, generator)

    def feed(self, k: int, h: Tensor, labels: Tensor) -> Tensor:
        """Layer ``k``'s input (the trainer's :data:`~spikeff.trainer.Feed`), with label inputs where it has them.

        ``h`` is, for ``k = 0``, the frames ``(T, B, ...)``, run in the ``M / B`` label-major passes of
        ``labels`` ``(M,)`` (``-1``: neutral); else layer ``k - 1``'s spikes ``(T, M, ...)``, normalised here.
        """
        if k == 0:
            check_input(h, self.config)
            h = expand_trials(h, labels.shape[0] // h.shape[1])
        elif self.ff.label_layers == "first":
            return normalise(h)
        else:
            h = normalise(h).flatten(2) if isinstance(self.layers[k].synapse, nn.Linear) else normalise(h)
        n = self.config.n_classes
        v = torch.where(labels.unsqueeze(1) < 0, 1.0 / n, F.one_hot(labels.clamp_min(0), n).float())
        v = (v * self.ff.label_scale).to(h.dtype).view(1, labels.shape[0], n, *[1] * (h.dim() - 3))
        return torch.cat([h, v.expand(h.shape[0], -1, -1, *h.shape[3:])], 2)

    @torch.no_grad()
    def layer_spikes(self, x: Tensor, labels: Tensor) -> list[Tensor]:
        """Each layer's spikes ``(T, M, ...)`` for ``x`` ``(T, B, ...)`` in the passes of ``labels`` (:meth:`feed`)."""
        out, h = [], x
        for k, layer in enumerate(self.layers):
            h = layer(self.feed(k, h, labels))
            out.append(h)
        return out

    @torch.no_grad()
    def init_from_batch(self, x: Tensor, labels: Tensor) -> None:
        """Scale each synapse so that its currents on ``x`` with ``labels`` ``(B,)`` have zero mean and unit
        variance per channel (over time, batch and positions); then set ``thresholds``."""
        h = x
        for k, layer in enumerate(self.layers):
            h = self.feed(k, h, labels)
            cur = layer.currents(h).float().movedim(2, 0).flatten(1)  # (channels, T x M x positions)
            mean, std = cur.mean(1), cur.std(1).clamp_min(1e-6)
            layer.synapse.weight.div_(std.view(-1, *[1] * (layer.synapse.weight.dim() - 1)))
            layer.synapse.bias.sub_(mean).div_(std)
            h = layer(h)
            self.thresholds[k] = self.ff.threshold * goodness(spike_counts(h, 1)).mean().clamp_min(1e-3)

    def label_goodness(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Goodness ``(L, K, B)`` of every layer for every label, and the spikes of the ``K`` label-major passes."""
        k, b = self.config.n_classes, x.shape[1]
        spikes = self.layer_spikes(x, torch.arange(k, device=x.device).repeat_interleave(b))
        return torch.stack([goodness(spike_counts(s, k)) for s in spikes]), spikes

    def head_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The head's input ``(B, sum N_l)``: the neutral pass's normalised counts of its layers; and the spikes."""
        spikes = self.layer_spikes(x, torch.full((x.shape[1],), -1, device=x.device))
        return torch.cat([normalise(spikes[i].sum(0, keepdim=True))[0].flatten(1) for i in self.head_layers], 1), spikes

    @torch.no_grad()
    def predict(self, x: Tensor, mode: PredictMode | None = None) -> tuple[Tensor, list[Tensor]]:
        """Predicted labels ``(B,)`` in ``mode`` (default ``ff.predict``), and the spikes of the passes."""
        mode = self.ff.predict if mode is None else mode
        if mode == "head":
            f, spikes = self.head_features(x)
            return self.head(f).argmax(1), spikes
        g, spikes = self.label_goodness(x)
        return g[1 if mode == "goodness_top" and len(self.layers) > 1 else 0:].sum(0).argmax(0), spikes


@torch.no_grad()
def mine_negatives(net: FFNet, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
    """Negative labels ``(B,)`` for ``(x, y)``, as ``net.ff`` says (``hard_fraction``, ``mine_candidates``)."""
    ff, k, b, dev = net.ff, net.config.n_classes, y.shape[0], generator.device
    rand = (y + torch.randint(1, k, (b,), generator=generator, device=dev).to(y.device)) % k
    pick = torch.rand(b, generator=generator, device=dev).to(y.device) < ff.hard_fraction
    if ff.hard_fraction == 0:
        return rand
    if ff.mine_candidates is None or ff.mine_candidates >= k - 1:
        score, labels = net.label_goodness(x)[0].sum(0), torch.arange(k, device=y.device).unsqueeze(1).expand(k, b)
    else:
        m = ff.mine_candidates
        offsets = torch.rand(b, k - 1, generator=generator, device=dev).argsort(1)[:, :m].to(y.device) + 1
        labels = ((y.unsqueeze(1) + offsets) % k).T.contiguous()  # (m, B), label-major
        score = sum(goodness(spike_counts(s, m)) for s in net.layer_spikes(x, labels.flatten()))
    score = score.masked_fill(labels == y.unsqueeze(0), float("-inf"))  # the hardest wrong label
    return torch.where(pick, labels.gather(0, score.argmax(0, keepdim=True))[0], rand)


def train_layers(net: FFNet, batches: Collection[Batch], noise: torch.Generator) -> list[dict[str, float]]:
    """The data-dependent init on the first batch, then ``epochs`` of FF on :class:`LayerTrainer` (negatives
    drawn from ``noise``); per epoch ``epoch``, ``seconds`` and ``layer<k>/`` ``loss``, ``g_pos``, ``g_neg``,
    ``goodness_gap``, ``rate``, ``spikes_per_bin``. Raises :class:`~spikeff.trainer.TrainingError` on a
    non-finite loss."""
    ff, device = net.ff, device_of(net)
    if ff.epochs == 0 or len(batches) == 0:
        return []
    first = iter(batches)
    x0, y0 = next(first)
    net.init_from_batch(x0.to(device), y0.to(device))
    objectives = [GoodnessObjective(ff.loss, ff.sharpness, float(t)) for t in net.thresholds]
    gen = torch.Generator(device).manual_seed(0)  # no draw from it matters: deterministic neurons
    trainer = LayerTrainer(net, TrainConfig(epochs=ff.epochs, trials=2, lr=ff.lr, schedule="simultaneous"), gen,
                           diagnostics=(), objective=objectives, feed=net.feed, head=False)
    scheds = [cosine_schedule(opt, ff.epochs * len(batches)) for opt in trainer.layer_opts]

    def paired(source: Iterable[Batch]) -> Iterator[Batch]:  # (x, [y, negatives]), mined by the net as it is then
        for x, y in source:
            x, y = x.to(device), y.to(device)
            yield x, torch.cat([y, mine_negatives(net, x, y, noise)])

    def step() -> None:  # the cosine decay, after every batch
        for sched in scheds:
            sched.step()

    for epoch in range(ff.epochs):  # the first pass goes on from the init batch
        trainer.train_epoch(paired(itertools.chain([(x0, y0)], first) if epoch == 0 else batches), on_batch=step)
    return [{k: v for k, v in r.to_dict().items() if k != "head/loss"} for r in trainer.history]


def fit_head(net: FFNet, batches: Iterable[Batch], generator: torch.Generator) -> list[float]:
    """Fit the head on :meth:`FFNet.head_features` of ``batches`` (cached once) for ``head_epochs`` at ``head_lr``
    (:func:`~spikeff.readout_fit.fit_linear_head`, ``generator`` a CPU one); the epoch losses."""
    data = [(net.head_features(x.to(device_of(net)))[0].cpu(), y.cpu()) for x, y in batches]
    if not data or net.ff.head_epochs == 0:
        return []
    features, targets = torch.cat([f for f, _ in data]).unsqueeze(0), torch.cat([y for _, y in data])
    return fit_linear_head(net.head, features, targets, lr=net.ff.head_lr, epochs=net.ff.head_epochs,
                           batch_size=max(y.shape[0] for _, y in data), generator=generator)


def evaluate_ff(net: FFNet, batches: Iterable[Batch], input_ops: InputOps = "events",
                mode: PredictMode | None = None) -> tuple[float, OpCounts]:
    """Accuracy and mean op counts per inference in ``mode`` (default ``net.ff.predict``; ``input_ops`` as for
    :func:`~spikeff.energy.count_ops`): every pass (``n_classes`` for the goodness modes, one neutral one for
    ``"head"``), plus the label map (``label_bias_adds``), the normalisation and goodness arithmetic
    (``norm_macs``) and a multi-layer head's adds from the layers below the top (``head_synops``)."""
    mode = net.ff.predict if mode is None else mode
    passes = 1 if mode == "head" else net.config.n_classes
    skip = 1 if mode == "goodness_top" and len(net.layers) > 1 else 0  # layers the goodness leaves out

    def infer(x: Tensor) -> Inference:
        pred, spikes = net.predict(x, mode)
        b, top = x.shape[1], len(spikes) - 1
        c = count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=passes, shared_input=True,
                      input_ops=input_ops, head=net.head if mode == "head" else None,
                      pools=[layer.pool for layer in net.layers])
        per = [s.numel() / b for s in spikes]  # neurons x T x passes, per layer
        neurons = [p / x.shape[0] for p in per]  # neurons x passes
        # one label add per neuron of a labelled layer, bin and pass; from layer l to l + 1 one square per
        # neuron of l (its norm) and one scaling per current of l + 1 and bin
        adds = [p if i == 0 or net.ff.label_layers == "all" else 0.0 for i, p in enumerate(per)]
        norm, links = [0.0] + [neurons[i - 1] + per[i] for i in range(1, len(per))], list(c.connections)
        if mode == "head":  # ||c_L||, a scaling per class and layer read, the adds from the layers below the top
            k, lower = net.config.n_classes, [i for i in net.head_layers if i != top]
            norm.append(neurons[-1] + k * len(net.head_layers))
            adds.append(k * sum((float(spikes[i].sum()) / b for i in lower), 0.0))
            links[-1] += k * sum((math.prod(spikes[i].shape[2:]) for i in lower), 0)
        else:  # goodness: one square per neuron of every scored layer
            norm = [n + (m if i >= skip else 0.0) for i, (n, m) in enumerate(zip(norm, neurons))]
        extra = {"label_bias_adds": sum(adds[:len(per)]), "norm_macs": float(sum(norm)), "passes": float(passes),
                 "head_synops": adds[-1] if mode == "head" else 0.0}
        synops, unfused, macs = (tuple(u + v for u, v in zip(ops, more))
                                 for ops, more in ((c.synops, adds), (c.synops_unfused, adds), (c.macs, norm)))
        return Inference({mode: pred}, replace(c, synops=synops, synops_unfused=unfused, macs=macs, extra=extra,
                                               connections=tuple(links)))

    ev = evaluate_batches(batches, device_of(net), infer)
    return ev.accuracy[mode], ev.ops


def train_ff(net_config: NetworkConfig, config: FFConfig, train_batches: Collection[Batch],
             test_batches: Iterable[Batch], *, generator: torch.Generator, device: str | torch.device = "cpu",
             input_ops: InputOps = "events") -> BaselineResult:
    """:func:`train_layers`, the head's fit (``predict="head"``), then :func:`evaluate_ff` on ``test_batches``.
    ``generator`` seeds the net, the negatives and the head's fit; ``history``: the epochs, then the head's fit."""
    device = torch.device(device)
    net = FFNet(net_config, config, generator).to(device)
    noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    head_gen = torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    history: list[dict] = train_layers(net, train_batches, noise)
    t0 = time.perf_counter()
    if config.predict == "head":
        history.append({"head_losses": fit_head(net, train_batches, head_gen), "seconds": time.perf_counter() - t0})
    acc, ops = evaluate_ff(net, test_batches, input_ops)
    return BaselineResult(net, acc, ops, history, sum(rec["seconds"] for rec in history), config.epochs)
