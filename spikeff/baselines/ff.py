"""Forward-Forward baseline (Hinton, 2022) on spikeff's spiking layers.

* **Layers**: the :class:`~spikeff.network.SpikingLayer` stack of a
  :class:`~spikeff.network.NetworkConfig` (same conv/pool/linear shapes) with spikeff's
  deterministic LIF (``delta = sigma = 0``), built with ``norm="none"``. A data-dependent
  initialisation scales each layer's synapse once, on the first training batch, so that its
  currents have zero mean and unit variance per channel (a batch norm whose statistics are
  frozen at initialisation and folded into the weights); after that nothing depends on the batch.
* **Label embedding**: ``n_classes`` extra input channels hold the one-hot label times
  ``label_scale``, constant over space and time, so every first-layer neuron sees it. Its
  contribution to the first layer's currents is a fixed map per label, ``L_y``; the data part
  ``W x + b`` is computed once and shared by all the labels a sample is paired with. The
  *neutral* label sets every label channel to ``label_scale / n_classes``.
* **Layer normalisation**: with ``c_l`` the spike counts of layer ``l`` over the ``T`` bins
  (``N_l`` neurons), layer ``l + 1`` receives the spikes ``s_l * sqrt(N_l) / ||c_l||`` (per
  sample), so it sees the pattern of activity, not its magnitude.
* **Goodness** of a layer: ``g_l = mean_i c_i^2`` (Hinton's sum of squares over ``N_l``). Loss per
  layer (``FFConfig.loss``), averaged over the batch, with ``a = sharpness``:

  - ``"symba"`` (default; Lee & Song, 2023): ``softplus(-a (g_pos - g_neg))``, each positive
    against the negative of the same input;
  - ``"threshold"`` (Hinton's): ``p(positive) = sigmoid(a (g_l - theta_l))`` with the threshold
    where the goodness of the initialised net lies, ``theta_l = threshold * mean g_l`` on the first
    training batch (true labels) right after the data-dependent init:
    ``softplus(-a (g_pos - theta)) + softplus(a (g_neg - theta))``.

  ``g_l`` is a mean over many neurons: from sample to sample it moves by about 0.1 (N-MNIST,
  conv 64/128), so at ``a = 1`` the logistic stays in its linear part (loss ~ 2 log 2), where
  Adam, blind to the loss's scale, just raises the mean gap; ``a = 10`` puts the gaps in its
  curved part. On N-MNIST the label maps ``L_y`` dominate the goodness at initialisation (its
  spread over labels is ~20x its spread over inputs), which the first epoch mostly undoes.
* **More label inputs** (``label_layers="all"``): every layer ``l > 1`` also adds ``E_l^T v`` to its
  currents, ``v`` the label vector (one-hot times ``label_scale``, or neutral): the contribution of
  ``K`` constant label inputs (label channels of a conv, away from its borders), its own parameters,
  stepped by that layer's optimizer.
* **Fully connected FF layers** (``FFConfig.hidden``) can be stacked on the network's layers
  (Hinton's FF is fully connected); the head then reads the last of them.
* **Negatives**: the same input with a wrong label. With probability ``hard_fraction`` it is
  the hardest one, ``argmax_{k != y} sum_l g_l(x, k)``, mined without gradient by the current
  net on every batch, among all wrong labels (``mine_candidates=None``) or among
  ``mine_candidates`` distinct wrong labels drawn uniformly (a cheaper mining pass); otherwise a
  uniformly drawn wrong label. All draws come from one seeded generator.
* **Training** is layer-local: each layer gets its (normalised) input detached and steps its
  own Adam optimizer on every batch, the learning rate decaying to zero over the epochs
  (cosine). Inside a layer the gradient flows over time through the LIF surrogate.
* **Prediction** (``FFConfig.predict``):

  - ``"goodness"``: ``argmax_k sum_l g_l(x, k)`` over all layers, one pass per label
    (``n_classes`` passes per inference);
  - ``"goodness_top"``: the same over layers ``2..L`` (Hinton's choice for deep nets);
  - ``"head"``: one pass with the neutral label and a softmax (linear) head
    ``z = W c_L / ||c_L|| * sqrt(N_L) + b`` on the top layer's normalised spike counts,
    fitted by cross-entropy after FF training (the counterpart of spikeff's linear head).
    ``head_layers`` widens its input to the concatenated normalised counts
    ``c_l / ||c_l|| * sqrt(N_l)`` of layers ``2..L`` (``"upper"``, Hinton's softmax on the
    normalised activities of the layers but the first) or of every layer (``"all"``).

  Op counts (:func:`spikeff.energy.count_ops`) cover every pass; ``extra`` adds the label
  map (one add per first-layer neuron and bin per pass, ``label_bias_adds``) and the
  normalisation and goodness arithmetic (``norm_macs``: per pass, one square per neuron of a
  normalised or scored layer and one scaling per current of the next layer and bin; a head on
  several layers adds ``n_classes`` scalings per layer it reads), which are also added to
  ``synops`` and ``macs``. A head on several layers also gets ``n_classes`` adds per spike of
  each layer it reads (``head_synops``). Layer normalisation needs a layer's full spike
  counts before the next layer runs: the layers run one after another over all ``T`` bins.

The method's variants (losses, label placement, fully connected layers, mining) share one
training loop and its op accounting, so they stay in this one module (over 400 lines).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..choices import check_choices
from ..energy import InputOps, OpCounts, count_ops
from ..evaluation import Inference, evaluate_batches
from ..network import (
    NetworkConfig,
    SpikingLayer,
    SpikingNet,
    _box_pool_size,
    check_input,
    device_of,
    fused_conv_pool,
    init_fan_in_,
)
from ..neurons import LIFParams
from ..trainer import cosine_schedule
from .bptt import BaselineResult

__all__ = ["FFConfig", "FFNet", "PREDICT_MODES", "goodness", "ff_loss", "symba_loss", "train_ff", "fit_head",
           "evaluate_ff"]

Batch = tuple[Tensor, Tensor]
PredictMode = Literal["goodness", "goodness_top", "head"]
PREDICT_MODES: tuple[PredictMode, ...] = ("goodness", "goodness_top", "head")
LabelLayers = Literal["first", "all"]
LossKind = Literal["threshold", "symba"]
HeadLayers = Literal["top", "upper", "all"]


@dataclass(frozen=True)
class FFConfig:
    """Settings of the Forward-Forward baseline (defaults chosen on a validation share of N-MNIST's
    training split, ``benchmarks/ff_nmnist.py``)."""

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
    label_layers: LabelLayers = "first"
    loss: LossKind = "symba"
    head_layers: HeadLayers = "top"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))  # JSON gives lists
        if min(self.hidden, default=1) < 1:
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        check_choices(self)
        if self.epochs < 0 or self.head_epochs < 0:
            raise ValueError(f"epochs and head_epochs must be >= 0, got {self.epochs}, {self.head_epochs}")
        values = (self.lr, self.threshold, self.sharpness, self.label_scale, self.head_lr)
        if min(values) <= 0:
            raise ValueError(f"lr, threshold, sharpness, label_scale and head_lr must be positive, got {values}")
        if self.mine_candidates is not None and self.mine_candidates < 1:
            raise ValueError(f"mine_candidates must be >= 1 or None, got {self.mine_candidates}")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {self.hard_fraction}")


def goodness(spikes: Tensor) -> Tensor:
    """Mean squared spike count per neuron: ``(T, N, ...) -> (N,)``.

    Parameters
    ----------
    spikes : one layer's time-first spikes ``(T, N, ...)``.

    Returns
    -------
    Tensor ``(N,)``: each sample's goodness.
    """
    return spikes.sum(0).flatten(1).pow(2).mean(1)


def ff_loss(g_pos: Tensor, g_neg: Tensor, threshold: float, sharpness: float) -> Tensor:
    """``mean softplus(-a (g_pos - theta)) + mean softplus(a (g_neg - theta))``.

    Parameters
    ----------
    g_pos, g_neg : goodness of the positive and of the negative samples.
    threshold : ``theta``, the layer's goodness threshold.
    sharpness : ``a``, the logistic's slope.

    Returns
    -------
    Tensor, the 0-d loss.
    """
    return F.softplus(-sharpness * (g_pos - threshold)).mean() + F.softplus(sharpness * (g_neg - threshold)).mean()


def symba_loss(g_pos: Tensor, g_neg: Tensor, sharpness: float) -> Tensor:
    """``mean softplus(-a (g_pos - g_neg))`` over pairs of the same input (Lee & Song, 2023): no threshold,
    the positive's goodness against its own negative's.

    Parameters
    ----------
    g_pos, g_neg : goodness ``(B,)`` of each positive and of the negative of the same input.
    sharpness : ``a``, the logistic's slope.

    Returns
    -------
    Tensor, the 0-d loss.
    """
    return F.softplus(-sharpness * (g_pos - g_neg)).mean()


def normalise(spikes: Tensor) -> Tensor:
    """Per-sample layer normalisation of spikes ``(T, N, ...)``: ``s * sqrt(D) / ||c||``, ``c`` the counts.

    Parameters
    ----------
    spikes : a layer's spikes ``(T, N, ...)``.

    Returns
    -------
    Tensor, the scaled spikes, same shape.
    """
    c = spikes.sum(0).flatten(1)
    scale = math.sqrt(c.shape[1]) / c.norm(dim=1).clamp_min(1e-6)
    return spikes * scale.view(1, -1, *[1] * (spikes.dim() - 2))


def _conv_pool(x: Tensor, weight: Tensor, bias: Tensor | None, layer: SpikingLayer) -> Tensor:
    """``layer.pool(conv(x))`` with the given weights (a conv and its average pool as one strided conv)."""
    syn = layer.synapse
    if isinstance(syn, nn.Linear):
        return F.linear(x.flatten(1), weight, bias)
    p = _box_pool_size(syn, layer.pool)
    if p is None:
        y = F.conv2d(x, weight, bias, padding=syn.padding)
        return y if layer.pool is None else layer.pool(y)
    return fused_conv_pool(x, weight, bias, syn.padding, p)


class FFNet(nn.Module):
    """Spiking layers of a :class:`NetworkConfig` whose first layer also sees the label channels,
    plus the linear head of the ``"head"`` prediction."""

    def __init__(self, config: NetworkConfig, ff: FFConfig = FFConfig(),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config, self.ff = config, ff
        c, h, w = config.input_shape
        body = SpikingNet(replace(config, input_shape=(c + config.n_classes, h, w), norm="none",
                                  hidden=config.hidden + ff.hidden), generator)
        self.layers = body.layers
        self.set_head(ff.head_layers, generator)
        # label_layers="all": layer l > 1 adds E_l^T v (v the label vector) to its currents, the
        # contribution of K label inputs (constant channels for a conv, away from the borders), drawn as
        # the first layer's label weights are: a kernel's sum of fan-in uniform weights over (C_in + K) inputs
        self.label_maps = nn.ParameterList()
        if ff.label_layers == "all":
            k = config.n_classes
            for layer in self.layers[1:]:
                wt = layer.synapse.weight
                taps = wt[0, 0].numel() if wt.dim() == 4 else 1
                bound = 1.0 / math.sqrt((wt.shape[1] + k) * taps)
                draw = torch.empty(k, wt.shape[0], taps).uniform_(-bound, bound, generator=generator).sum(2)
                self.label_maps.append(nn.Parameter(draw))
        # theta_l: ``threshold`` times layer l's mean goodness after the data-dependent init
        self.register_buffer("thresholds", torch.full((len(self.layers),), float(ff.threshold)))

    def head_layer_indices(self, head_layers: HeadLayers) -> list[int]:
        """The layers (0-based) whose normalised counts a head on ``head_layers`` reads.

        Parameters
        ----------
        head_layers : ``"top"``, ``"upper"`` or ``"all"`` (as :attr:`FFConfig.head_layers`).

        Returns
        -------
        list of int, ascending.
        """
        n = len(self.layers)
        return {"top": [n - 1], "upper": list(range(min(1, n - 1), n)), "all": list(range(n))}[head_layers]

    def set_head(self, head_layers: HeadLayers, generator: torch.Generator | None = None) -> None:
        """A new (unfitted, fan-in initialised) linear head on the layers ``head_layers``; ``ff`` follows.

        Parameters
        ----------
        head_layers : ``"top"``, ``"upper"`` or ``"all"`` (as :attr:`FFConfig.head_layers`).
        generator : a CPU generator for the head's initial weights, or ``None`` for the global one.
        """
        self.ff = replace(self.ff, head_layers=head_layers)
        #: the layers whose normalised counts the head reads (``FFConfig.head_layers``)
        self.head_layers = self.head_layer_indices(head_layers)
        sizes = self.layer_sizes()
        device = device_of(self)
        self.head = nn.Linear(sum(sizes[i] for i in self.head_layers), self.config.n_classes, device=device)
        init_fan_in_(self.head, generator)

    @torch.no_grad()
    def layer_sizes(self) -> list[int]:
        """Neurons per layer (after pooling), from one zero bin through the synapses."""
        c, h, w = self.config.input_shape
        x, sizes = torch.zeros(1, 1, c + self.config.n_classes, h, w, device=device_of(self)), []
        for layer in self.layers:
            x = layer.currents(x)
            sizes.append(x[0, 0].numel())
        return sizes

    def _autocast(self, x: Tensor) -> contextlib.AbstractContextManager:
        bf16 = self.config.precision == "bf16"
        return torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def label_vectors(self, labels: Tensor | None, n: int = 0) -> Tensor:
        """``(M, K)``: the one-hot ``labels`` ``(M,)`` times ``label_scale``, or ``n`` neutral ones (``None``).

        Parameters
        ----------
        labels : class indices ``(M,)``, or ``None`` for the neutral label.
        n : the number of neutral vectors (read only when ``labels`` is ``None``).

        Returns
        -------
        Tensor ``(M, K)``, or ``(n, K)`` for the neutral label.
        """
        k = self.config.n_classes
        if labels is None:
            return torch.full((n, k), self.ff.label_scale / k, device=device_of(self))
        return F.one_hot(labels, k).float() * self.ff.label_scale

    def label_inputs(self, labels: Tensor | None, n: int = 0) -> Tensor:
        """The label channels ``(M, K, H, W)`` for ``labels`` ``(M,)``, or ``n`` neutral ones (``labels=None``).

        Parameters
        ----------
        labels, n : as for :meth:`label_vectors`.

        Returns
        -------
        Tensor ``(M, K, H, W)`` (``(n, K, H, W)`` for the neutral label), an expanded view.
        """
        _, h, w = self.config.input_shape
        v = self.label_vectors(labels, n)
        return v.view(*v.shape, 1, 1).expand(-1, -1, h, w)

    def upper_currents(self, i: int, below: Tensor, labels: Tensor | None) -> Tensor:
        """Layer ``i``'s (``i >= 1``) currents for the spikes ``below`` ``(T, M, ...)`` of layer ``i - 1``
        (normalised here), plus its label map for ``labels`` ``(M,)`` (neutral if ``None``) with
        ``label_layers="all"``.

        Parameters
        ----------
        i : the layer, 0-based, ``>= 1``.
        below : the spikes ``(T, M, ...)`` of layer ``i - 1``, not normalised.
        labels : class indices ``(M,)``, or ``None`` for the neutral label.

        Returns
        -------
        Tensor, the currents ``(T, M, ...)``.
        """
        cur = self.layers[i].currents(normalise(below))
        if not self.label_maps:
            return cur
        bias = self.label_vectors(labels, below.shape[1]) @ self.label_maps[i - 1]  # (M, C)
        return cur + bias.to(cur.dtype).view(1, *bias.shape, *[1] * (cur.dim() - 3))

    def layer_parameters(self, i: int) -> list[nn.Parameter]:
        """What layer ``i``'s own optimizer trains: its synapse, and its label map if it has one.

        Parameters
        ----------
        i : the layer, 0-based.

        Returns
        -------
        list of nn.Parameter.
        """
        extra = [self.label_maps[i - 1]] if self.label_maps and i > 0 else []
        return list(self.layers[i].parameters()) + extra

    def embed(self, x: Tensor, labels: Tensor) -> Tensor:
        """``(T, B, C, H, W)`` -> ``(T, B, C + K, H, W)`` with the one-hot ``labels`` as constant channels.

        Parameters
        ----------
        x : input frames ``(T, B, C, H, W)``.
        labels : class indices ``(B,)``.

        Returns
        -------
        Tensor ``(T, B, C + K, H, W)``.

        Raises
        ------
        ValueError : ``x`` does not match the config's input shape.
        """
        check_input(x, self.config)
        lab = self.label_inputs(labels).to(x.dtype)
        return torch.cat([x, lab.unsqueeze(0).expand(x.shape[0], *lab.shape)], dim=2)

    def first_currents(self, x: Tensor, labels: Tensor | None, repeat: int = 1) -> Tensor:
        """First-layer currents ``(T, M, ...)`` for ``x`` ``(T, B, ...)`` with ``M = repeat * B`` labels
        (label-major), or ``repeat`` neutral passes (``labels=None``): the data part once, plus ``L_y``.

        Parameters
        ----------
        x : input frames ``(T, B, ...)``.
        labels : class indices ``(repeat * B,)``, label-major, or ``None`` for neutral passes.
        repeat : passes per sample.

        Returns
        -------
        Tensor ``(T, repeat * B, ...)``.

        Raises
        ------
        ValueError : ``x`` does not match the config's input shape.
        """
        check_input(x, self.config)
        layer, c = self.layers[0], self.config.input_shape[0]
        t, b = x.shape[:2]
        w, bias = layer.synapse.weight, layer.synapse.bias
        data_w, label_w = (w[:, :c], w[:, c:]) if w.dim() == 4 else _split_linear(w, self.config)
        with self._autocast(x):
            data = _conv_pool(x.flatten(0, 1), data_w, bias, layer).unflatten(0, (t, b))
            maps = _conv_pool(self.label_inputs(labels, repeat * b), label_w, None, layer)
        data = data.float() if self.config.precision == "bf16" else data
        data = data.unsqueeze(1).expand(t, repeat, *data.shape[1:]).flatten(1, 2)
        return data + maps.to(data.dtype).unsqueeze(0)

    def layer_spikes(self, x: Tensor, labels: Tensor | None, repeat: int = 1) -> list[Tensor]:
        """Each layer's spikes (not normalised) for ``x`` with ``labels`` (see :meth:`first_currents`).

        Parameters
        ----------
        x, labels, repeat : as for :meth:`first_currents`.

        Returns
        -------
        list of Tensor, one ``(T, repeat * B, ...)`` per layer.
        """
        out = [self._scan(self.layers[0], self.first_currents(x, labels, repeat))]
        for i, layer in enumerate(self.layers[1:], 1):
            out.append(self._scan(layer, self.upper_currents(i, out[-1], labels)))
        return out

    @staticmethod
    def _scan(layer: SpikingLayer, currents: Tensor) -> Tensor:
        if torch.is_grad_enabled() and currents.requires_grad:
            return layer.scan(currents, layer.lif.deterministic())[0]
        return _lif_nograd(currents, layer.lif)

    @torch.no_grad()
    def init_from_batch(self, x: Tensor, labels: Tensor) -> None:
        """Data-dependent initialisation: scale each synapse so that its currents on this batch have
        zero mean and unit variance per channel (over time, batch and positions).

        Parameters
        ----------
        x : the first training batch ``(T, B, ...)``.
        labels : its true labels ``(B,)``.
        """
        h = None
        for i, layer in enumerate(self.layers):
            cur = self.first_currents(x, labels) if i == 0 else self.upper_currents(i, h, labels)
            dims = [d for d in range(cur.dim()) if d != 2]
            mean, std = cur.mean(dims), cur.std(dims).clamp_min(1e-6)
            syn = layer.synapse
            syn.weight.div_(std.view(-1, *[1] * (syn.weight.dim() - 1)))
            syn.bias.sub_(mean).div_(std)
            if self.label_maps and i > 0:
                self.label_maps[i - 1].div_(std)
            cur = (cur - mean.view(1, 1, -1, *[1] * (cur.dim() - 3))) / std.view(1, 1, -1, *[1] * (cur.dim() - 3))
            h = self._scan(layer, cur)
            self.thresholds[i] = self.ff.threshold * goodness(h).mean().clamp_min(1e-3)

    @torch.no_grad()
    def label_goodness(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Goodness ``(L, K, B)`` of every layer for every label, and the spikes of the ``K`` passes.

        Parameters
        ----------
        x : input frames ``(T, B, ...)``.

        Returns
        -------
        Tensor ``(L, K, B)``, and per layer the spikes ``(T, K * B, ...)`` (label-major).
        """
        k, b = self.config.n_classes, x.shape[1]
        labels = torch.arange(k, device=x.device).repeat_interleave(b)
        spikes = self.layer_spikes(x, labels, repeat=k)
        return torch.stack([goodness(s).view(k, b) for s in spikes]), spikes

    @torch.no_grad()
    def head_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The head's input ``(B, sum N_l)``: the neutral pass's normalised counts of the layers it reads
        (``head_layers``), concatenated; and the pass's spikes.

        Parameters
        ----------
        x : input frames ``(T, B, ...)``.

        Returns
        -------
        Tensor ``(B, sum N_l)``, and per layer the neutral pass's spikes ``(T, B, ...)``.
        """
        spikes = self.layer_spikes(x, None)
        feats = []
        for i in self.head_layers:
            c = spikes[i].sum(0).flatten(1)
            feats.append(c * math.sqrt(c.shape[1]) / c.norm(dim=1, keepdim=True).clamp_min(1e-6))
        return torch.cat(feats, 1), spikes

    @torch.no_grad()
    def predict(self, x: Tensor, mode: PredictMode | None = None) -> tuple[Tensor, list[Tensor]]:
        """Predicted labels ``(B,)`` and the spikes of the passes that gave them.

        Parameters
        ----------
        x : input frames ``(T, B, ...)``.
        mode : ``"goodness"``, ``"goodness_top"`` or ``"head"``; ``None``: ``ff.predict``.

        Returns
        -------
        Tensor ``(B,)`` of labels, and per layer the spikes of the passes.
        """
        mode = self.ff.predict if mode is None else mode
        if mode == "head":
            f, spikes = self.head_features(x)
            return self.head(f).argmax(1), spikes
        g, spikes = self.label_goodness(x)
        first = 1 if mode == "goodness_top" and len(self.layers) > 1 else 0
        return g[first:].sum(0).argmax(0), spikes


def _lif_nograd(currents: Tensor, p: LIFParams) -> Tensor:
    """The deterministic LIF's spikes without autograd (in place, the same numbers as
    :func:`~spikeff.neurons.lif_scan` at ``delta = sigma = 0``)."""
    cur = currents.to(torch.promote_types(currents.dtype, torch.float32))
    v = torch.zeros_like(cur[0])
    out = torch.empty_like(cur)
    for t in range(cur.shape[0]):
        v.mul_(p.beta).add_(cur[t])
        s = v >= p.threshold
        out[t] = s
        if p.reset == "zero":
            v.masked_fill_(s, 0.0)
        else:
            v.sub_(s, alpha=p.threshold)
    return out


def _split_linear(w: Tensor, config: NetworkConfig) -> tuple[Tensor, Tensor]:
    c, h, ww = config.input_shape
    return w[:, : c * h * ww], w[:, c * h * ww:]


def hardest_wrong(g: Tensor, labels: Tensor, y: Tensor) -> Tensor:
    """``labels[argmax_j g[j]]`` over the candidates ``j`` whose label is not ``y``; ``g``, ``labels`` ``(J, B)``.

    Parameters
    ----------
    g : the candidates' scores ``(J, B)``.
    labels : the candidates' labels ``(J, B)``.
    y : the true labels ``(B,)``.

    Returns
    -------
    Tensor ``(B,)``.
    """
    g = g.masked_fill(labels == y.unsqueeze(0), float("-inf"))
    return labels.gather(0, g.argmax(0, keepdim=True))[0]


@torch.no_grad()
def mine_negatives(net: FFNet, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, int]:
    """Negative labels for ``(x, y)``, and how many true labels had the highest goodness.

    With probability ``hard_fraction`` a sample's negative is the hardest wrong label,
    ``argmax_{k != y} sum_l g_l(x, k)`` under the current net (among all wrong labels, or among
    ``mine_candidates`` uniformly drawn distinct ones); otherwise a uniformly drawn wrong label.

    Parameters
    ----------
    net : the FF net; its ``ff`` settings choose the mining.
    x : input frames ``(T, B, ...)``.
    y : the true labels ``(B,)``.
    generator : the source of every random draw.

    Returns
    -------
    Tensor ``(B,)`` of negative labels, and the count (int; 0 unless every wrong label is mined).
    """
    ff, k, b = net.ff, net.config.n_classes, y.shape[0]
    dev = generator.device
    rand = (y + torch.randint(1, k, (b,), generator=generator, device=dev).to(y.device)) % k
    pick = torch.rand(b, generator=generator, device=dev).to(y.device) < ff.hard_fraction
    if ff.hard_fraction == 0:
        return rand, 0
    right = 0
    if ff.mine_candidates is None or ff.mine_candidates >= k - 1:
        g, _ = net.label_goodness(x)
        score, labels = g.sum(0), torch.arange(k, device=y.device).unsqueeze(1).expand(k, b)
        right = int((score.argmax(0) == y).sum())
    else:
        m = ff.mine_candidates
        offsets = torch.rand(b, k - 1, generator=generator, device=dev).argsort(1)[:, :m].to(y.device) + 1
        labels = ((y.unsqueeze(1) + offsets) % k).T.contiguous()  # (m, B), label-major
        spikes = net.layer_spikes(x, labels.flatten(), repeat=m)
        score = sum(goodness(s) for s in spikes).view(m, b)
    return torch.where(pick, hardest_wrong(score, labels, y), rand), right


def fit_head(net: FFNet, batches: Iterable[Batch], generator: torch.Generator) -> list[float]:
    """Fit the linear head by cross-entropy on the neutral pass's normalised counts of the layers that
    ``head_layers`` names (cached once; Adam with a cosine decay over ``head_epochs`` shuffled
    passes); returns the epoch losses.

    Parameters
    ----------
    net : the trained FF net; its head is fitted in place.
    batches : the training ``(x, y)`` batches, read once.
    generator : shuffles the cached features.

    Returns
    -------
    list of float, one mean loss per epoch; empty without batches or with ``head_epochs = 0``.
    """
    device = device_of(net)
    feats, labels, bs = [], [], 1
    for x, y in batches:
        feats.append(net.head_features(x.to(device))[0])
        labels.append(y.to(device))
        bs = max(bs, y.shape[0])
    if not feats or net.ff.head_epochs == 0:
        return []
    f, y = torch.cat(feats), torch.cat(labels)
    opt = torch.optim.Adam(net.head.parameters(), lr=net.ff.head_lr)
    sched = cosine_schedule(opt, net.ff.head_epochs * math.ceil(y.shape[0] / bs))
    losses = []
    for _ in range(net.ff.head_epochs):
        total, n = 0.0, 0
        for part in torch.randperm(y.shape[0], generator=generator, device=generator.device).to(device).split(bs):
            loss = F.cross_entropy(net.head(f[part]), y[part])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        losses.append(total / n)
    return losses


def evaluate_ff(
    net: FFNet, batches: Iterable[Batch], input_ops: InputOps = "events", mode: PredictMode | None = None
) -> tuple[float, OpCounts]:
    """Accuracy and mean op counts per inference: ``n_classes`` label passes for the goodness modes,
    one neutral pass and the head for ``"head"``.

    Parameters
    ----------
    net : the trained FF net.
    batches : the test ``(x, y)`` batches.
    input_ops : how the input is counted, ``"events"`` or ``"dense"`` (see :func:`spikeff.energy.count_ops`).
    mode : the prediction mode; ``None``: ``net.ff.predict``.

    Returns
    -------
    float accuracy, and OpCounts, the mean per inference.
    """
    mode = net.ff.predict if mode is None else mode
    passes = 1 if mode == "head" else net.config.n_classes
    scored = len(net.layers) - (1 if mode == "goodness_top" and len(net.layers) > 1 else 0)

    def infer(x: Tensor) -> Inference:
        pred, spikes = net.predict(x, mode)
        b = x.shape[1]
        c = count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=passes, shared_input=True,
                      input_ops=input_ops, head=net.head if mode == "head" else None,
                      pools=[layer.pool for layer in net.layers])
        per = [s.numel() / b for s in spikes]  # neurons x T x passes, per layer
        neurons = [p / x.shape[0] for p in per]  # neurons x passes
        # one add per neuron of a labelled layer (the first, or all), bin and pass
        labelled = [p if i == 0 or net.label_maps else 0.0 for i, p in enumerate(per)]
        label_adds = sum(labelled)
        # layer l -> l + 1: one square per neuron of l, one scaling per current of l + 1 and bin
        norm = [0.0] + [neurons[i - 1] + per[i] for i in range(1, len(per))]
        head_adds, head_links = 0.0, 0.0
        if mode == "head":  # ||c_L|| (lower layers' norms are counted above) and one scaling per class and layer
            k = net.config.n_classes
            norm.append(neurons[-1] + k * len(net.head_layers))
            # the head's adds from the layers below the top (count_ops counts the top's)
            lower = [i for i in net.head_layers if i != len(per) - 1]
            head_adds = sum((float(spikes[i].sum()) / b for i in lower), 0.0) * k
            head_links = sum((math.prod(spikes[i].shape[2:]) for i in lower), 0) * k
        else:  # goodness: one square per neuron of every scored layer
            for i in range(len(per) - scored, len(per)):
                norm[i] += neurons[i]
        head = [head_adds] if mode == "head" else []
        synops = tuple(s + a for s, a in zip(c.synops, labelled + head))
        unfused = tuple(s + a for s, a in zip(c.synops_unfused, labelled + head))
        macs = tuple(m + n for m, n in zip(c.macs, norm))
        links = c.connections[:len(per)] + tuple(n + head_links for n in c.connections[len(per):])
        extra = {"label_bias_adds": label_adds, "norm_macs": float(sum(norm)), "passes": float(passes),
                 "head_synops": head_adds}
        return Inference({mode: pred}, replace(c, synops=synops, synops_unfused=unfused, macs=macs, extra=extra,
                                               connections=links))

    ev = evaluate_batches(batches, device_of(net), infer)
    return ev.accuracy[mode], ev.ops


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
    """Layer-local FF training (positive: true label; negative: a hard or random wrong label), the
    head's fit when ``config.predict == "head"``, then evaluation on ``test_batches``.

    Parameters
    ----------
    net_config : the layers' architecture.
    config : the FF settings.
    train_batches, test_batches : ``(x, y)`` batches; the training ones are read once per epoch (and for the head).
    generator : seeds the net's initialisation and the training and head noise.
    device : where the net is trained.
    input_ops : as for :func:`evaluate_ff`.

    Returns
    -------
    BaselineResult; its ``history`` holds each epoch's layer losses, then the head's fit.

    Raises
    ------
    RuntimeError : a layer's FF loss is not finite.
    """
    device = torch.device(device)
    net = FFNet(net_config, config, generator).to(device)
    noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    head_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    history = train_layers(net, train_batches, noise)
    t0 = time.perf_counter()
    if config.predict == "head":
        losses = fit_head(net, train_batches, head_gen)
        history.append({"head_losses": losses, "seconds": time.perf_counter() - t0})
    train_seconds = sum(rec["seconds"] for rec in history)
    acc, ops = evaluate_ff(net, test_batches, input_ops)
    return BaselineResult(net, acc, ops, history, train_seconds, config.epochs)


def train_layers(net: FFNet, train_batches: Iterable[Batch], noise: torch.Generator) -> list[dict[str, float]]:
    """Data-dependent init on the first batch, then ``epochs`` of layer-local FF; the per-epoch history.

    Parameters
    ----------
    net : the FF net, trained in place.
    train_batches : ``(x, y)`` batches, read once per epoch.
    noise : the source of the negatives' draws.

    Returns
    -------
    list of dict, one per epoch: ``epoch``, ``seconds``, ``layer<k>/loss``, ``g_pos``, ``g_neg``,
    ``goodness_gap``, and ``train_goodness_accuracy`` when every wrong label is mined.

    Raises
    ------
    RuntimeError : a layer's FF loss is not finite.
    """
    config, device = net.ff, device_of(net)
    opts = [torch.optim.Adam(net.layer_parameters(i), lr=config.lr) for i in range(len(net.layers))]
    steps = config.epochs * len(train_batches) if hasattr(train_batches, "__len__") else 0
    scheds = [cosine_schedule(opt, steps) for opt in opts] if steps else []
    n_layers, history, initialised = len(net.layers), [], False
    for epoch in range(config.epochs):
        net.train()
        stats = {key: [0.0] * n_layers for key in ("loss", "g_pos", "g_neg")}
        n, hard_right, te = 0, 0, time.perf_counter()
        for x, y in tqdm(train_batches, desc=f"ff epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True):
            x, y = x.to(device), y.to(device)
            b = y.shape[0]
            if not initialised:
                net.init_from_batch(x, y)
                initialised = True
            neg, right = mine_negatives(net, x, y, noise)
            hard_right += right
            both = torch.cat([y, neg])
            h = net.first_currents(x, both, repeat=2)
            for i, (layer, opt) in enumerate(zip(net.layers, opts)):
                s = net._scan(layer, h if i == 0 else net.upper_currents(i, h, both))
                g = goodness(s)
                loss = (symba_loss(g[:b], g[b:], config.sharpness) if config.loss == "symba"
                        else ff_loss(g[:b], g[b:], float(net.thresholds[i]), config.sharpness))
                if not torch.isfinite(loss):
                    raise RuntimeError(f"non-finite FF loss in layer {i + 1}; try a lower learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                stats["loss"][i] += loss.item() * b
                stats["g_pos"][i] += g[:b].sum().item()
                stats["g_neg"][i] += g[b:].sum().item()
                h = s.detach()
            for sched in scheds:
                sched.step()
            n += b
        rec: dict[str, float] = {"epoch": epoch + 1, "seconds": time.perf_counter() - te}
        if config.hard_fraction > 0 and config.mine_candidates is None:
            rec["train_goodness_accuracy"] = hard_right / max(n, 1)
        for i in range(n_layers):
            for key, vals in stats.items():
                rec[f"layer{i + 1}/{key}"] = vals[i] / max(n, 1)
            rec[f"layer{i + 1}/goodness_gap"] = rec[f"layer{i + 1}/g_pos"] - rec[f"layer{i + 1}/g_neg"]
        history.append(rec)
    return history
