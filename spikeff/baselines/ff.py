"""Forward-Forward baseline (Hinton, 2022) on spikeff's spiking layers.

* **Layers**: the :class:`~spikeff.network.SpikingLayer` stack of a
  :class:`~spikeff.network.NetworkConfig` (same conv/pool/linear shapes), with the
  deterministic LIF (``delta = sigma = 0``, classic FF uses deterministic units) unless
  ``FFConfig.stochastic``. The first synapse has ``n_classes`` extra input channels.
* **Label embedding**: the label is a one-hot of ``n_classes`` extra input channels, constant
  (``label_scale``) over space and time, so every first-layer neuron sees it (a corner
  one-hot, as in Hinton's MNIST net, would reach only the corner of a conv layer). The
  label channels' contribution to a first-layer current is a fixed map per label, so op
  counting prices it as one add per first-layer neuron and time bin (``label_bias_adds``),
  not as dense input events.
* **Goodness** of a layer: the mean over its neurons of the squared spike count,
  ``g = mean_i c_i^2``; ``p(positive) = sigmoid(g - threshold)`` (Hinton's sum of squares
  minus a threshold equal to the number of units is the same up to the neuron count).
* **Negatives**: the same input with a wrong label, drawn uniformly from the other classes
  by a seeded generator. Loss per layer: ``softplus(threshold - g_pos) + softplus(g_neg - threshold)``.
* **Training** is layer-local: each layer gets its input detached and steps its own Adam
  optimizer on every batch (no normalisation between layers: spikes are already binary; the body
  is built with ``norm="none"``).
* **Prediction**: run the net once per candidate label and pick the label with the highest
  goodness summed over layers. An inference therefore costs ``n_classes`` passes; the data
  part of the first synaptic op is shared by all of them (it does not depend on the label).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..energy import InputOps, OpCounts, count_ops
from ..network import NetworkConfig, SpikingNet, check_input
from .bptt import BaselineResult, evaluate_batches

__all__ = ["FFConfig", "FFNet", "goodness", "train_ff", "evaluate_ff"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class FFConfig:
    """Settings of the Forward-Forward baseline."""

    epochs: int = 8
    lr: float = 3e-3
    threshold: float = 1.0
    label_scale: float = 1.0
    stochastic: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0 or self.threshold <= 0 or self.label_scale <= 0:
            raise ValueError(f"lr, threshold and label_scale must be positive, got {self.lr}, "
                             f"{self.threshold}, {self.label_scale}")


def goodness(spikes: Tensor) -> Tensor:
    """Mean squared spike count per neuron: ``(T, N, ...) -> (N,)``."""
    return spikes.sum(0).flatten(1).pow(2).mean(1)


class FFNet(nn.Module):
    """Spiking layers of a :class:`NetworkConfig` whose input carries a one-hot label."""

    def __init__(self, config: NetworkConfig, ff: FFConfig = FFConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config, self.ff = config, ff
        c, h, w = config.input_shape
        body = SpikingNet(replace(config, input_shape=(c + config.n_classes, h, w), norm="none"), generator)
        self.layers = body.layers

    def embed(self, x: Tensor, labels: Tensor) -> Tensor:
        """``(T, B, C, H, W)`` -> ``(T, B, C + K, H, W)`` with the one-hot ``labels`` as constant channels."""
        check_input(x, self.config)
        t, b, _, h, w = x.shape
        onehot = F.one_hot(labels, self.config.n_classes).to(x.dtype) * self.ff.label_scale
        return torch.cat([x, onehot.view(1, b, -1, 1, 1).expand(t, b, -1, h, w)], dim=2)

    def layer_spikes(self, x: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Each layer's spikes for inputs ``x`` paired with ``labels`` (no training)."""
        h, out = self.embed(x, labels), []
        for layer in self.layers:
            h = layer(h, generator, deterministic=not self.ff.stochastic)
            out.append(h)
        return out

    @torch.no_grad()
    def predict(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
        """Predicted labels ``(B,)`` and the spikes of all ``K`` label passes (label-major, ``(T, K * B, ...)``)."""
        k, b = self.config.n_classes, x.shape[1]
        labels = torch.arange(k, device=x.device).repeat_interleave(b)
        spikes = self.layer_spikes(x.repeat(1, k, 1, 1, 1), labels, generator)
        g = sum(goodness(s) for s in spikes).view(k, b)
        return g.argmax(0), spikes


def evaluate_ff(
    net: FFNet, batches: Iterable[Batch], generator: torch.Generator | None = None, input_ops: InputOps = "events"
) -> tuple[float, OpCounts]:
    """Accuracy and mean op counts per inference (all ``n_classes`` label passes)."""
    k = net.config.n_classes

    def infer(x: Tensor, y: Tensor) -> tuple[Tensor, OpCounts]:
        pred, spikes = net.predict(x, generator)
        c = count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=k, shared_input=True,
                      input_ops=input_ops, stochastic=net.ff.stochastic)
        label_adds = spikes[0].numel() / y.shape[0]  # one add per first-layer neuron, bin and label pass
        synops = (c.synops[0] + label_adds,) + c.synops[1:]
        return pred, replace(c, synops=synops, extra={"label_bias_adds": label_adds})

    return evaluate_batches(batches, next(net.parameters()).device, infer)


def train_ff(
    net_config: NetworkConfig,
    config: FFConfig,
    train_batches: Iterable[Batch],
    test_batches: Iterable[Batch],
    *,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    input_ops: InputOps = "events",
) -> BaselineResult:
    """Layer-local FF training (positive: true label, negative: a random wrong label), then evaluation."""
    device = torch.device(device)
    net = FFNet(net_config, config, generator).to(device)
    noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    opts = [torch.optim.Adam(layer.parameters(), lr=config.lr) for layer in net.layers]
    k, history = net_config.n_classes, []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        sums = [0.0] * len(net.layers)
        gaps = [0.0] * len(net.layers)
        n, te = 0, time.perf_counter()
        for x, y in tqdm(train_batches, desc=f"ff epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True):
            x, y = x.to(device), y.to(device)
            b = y.shape[0]
            wrong = (y + torch.randint(1, k, y.shape, generator=noise, device=device)) % k
            h = net.embed(torch.cat([x, x], dim=1), torch.cat([y, wrong]))
            for i, (layer, opt) in enumerate(zip(net.layers, opts)):
                s = layer(h.detach(), noise, deterministic=not config.stochastic)
                g = goodness(s)
                loss = F.softplus(config.threshold - g[:b]).mean() + F.softplus(g[b:] - config.threshold).mean()
                if not torch.isfinite(loss):
                    raise RuntimeError(f"non-finite FF loss in layer {i + 1}; try a lower learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums[i] += loss.item() * b
                gaps[i] += (g[:b] - g[b:]).mean().item() * b
                h = s.detach()
            n += b
        rec = {"epoch": epoch + 1, "seconds": time.perf_counter() - te}
        for i in range(len(net.layers)):
            rec[f"layer{i + 1}/loss"] = sums[i] / max(n, 1)
            rec[f"layer{i + 1}/goodness_gap"] = gaps[i] / max(n, 1)
        history.append(rec)
    train_seconds = time.perf_counter() - t0
    acc, ops = evaluate_ff(net, test_batches, noise, input_ops)
    return BaselineResult(net, acc, ops, history, train_seconds, config.epochs)
