"""BPTT baseline: spikeff's architecture built with snntorch and trained end to end.

Every layer is the ``Conv2d -> AvgPool2d -> snntorch.Leaky`` (or ``Linear -> Leaky``) of a
:class:`~spikeff.network.NetworkConfig`, with the same shapes and the same initial weights
as a :class:`~spikeff.network.SpikingNet` built from the same generator. The neurons are
deterministic (snntorch's ``Leaky`` with ``reset_delay=False`` is exactly spikeff's LIF at
``delta = sigma = 0``; the escape noise is not used) with a sigmoid surrogate of the same
slope (:func:`sigmoid_surrogate`: snntorch's, without its overflow). The head is the
config's: a linear readout of the top layer's spike rates (``z`` are the logits), or a
spiking ``Leaky`` layer whose spike counts are the logits. The loss is
cross-entropy on these rate-coded outputs, backpropagated through all layers and time.

The synaptic op of a layer runs on all time bins in one call (it has no state); only the
neurons loop over time, as in spikeff, so the two are timed on the same footing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..data import make_loader
from ..energy import InputOps, OpCounts, count_ops
from ..evaluation import Inference, evaluate_batches
from ..network import NetworkConfig, SpikingNet, check_input, device_of, synapse_pool
from ..neurons import _straight_through
from ..trainer import cosine_schedule

__all__ = [
    "BPTTConfig", "SnnTorchNet", "BaselineResult", "sigmoid_surrogate", "train_bptt", "evaluate_bptt", "select_bptt",
    "holdout_split",
]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class BPTTConfig:
    """Optimisation settings of the BPTT baseline: Adam at ``lr``, decayed to zero over ``epochs`` (cosine).

    The decay makes a fixed budget converge; :func:`select_bptt` picks ``lr`` on a share of the
    training data and shows whether the budget is long enough.
    """

    epochs: int = 30
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class BaselineResult:
    """A trained baseline: test accuracy, op counts per inference and training cost."""

    net: Any
    accuracy: float
    ops: OpCounts
    history: list[dict[str, Any]]
    train_seconds: float
    passes: int


def sigmoid_surrogate(slope: float) -> Callable[[Tensor], Tensor]:
    """Heaviside ``x > 0`` forward, ``d/dx sigmoid(slope * x)`` backward: snntorch's ``surrogate.sigmoid``.

    snntorch 1.0.0 computes that derivative as ``slope * exp(-slope x) / (exp(-slope x) + 1)^2``,
    which is NaN once ``slope * x < -88`` (``x < -17.7`` at slope 5; snntorch issue #427, fixed
    after 1.0.0). BPTT at 32/64 channels drives membranes that far below threshold, and the NaN
    then silenced the whole net. ``torch.sigmoid``'s own gradient saturates to zero instead.

    Parameters
    ----------
    slope : the surrogate's slope.

    Returns
    -------
    A spike function of the membrane minus the threshold, for ``snn.Leaky(spike_grad=...)``.
    """

    def spike(x: Tensor) -> Tensor:
        return _straight_through((x > 0).to(x.dtype), torch.sigmoid(slope * x))

    return spike


def _leaky(config: NetworkConfig) -> snn.Leaky:
    lif = config.lif
    return snn.Leaky(
        beta=lif.beta, threshold=lif.threshold, spike_grad=sigmoid_surrogate(lif.surrogate_slope),
        reset_mechanism=lif.reset, reset_delay=False,
    )


def run_leaky(neuron: snn.Leaky, currents: Tensor) -> Tensor:
    """Run an snntorch ``Leaky`` over time-first currents ``(T, N, ...)`` from rest; spikes ``(T, N, ...)``.

    Parameters
    ----------
    neuron : the neurons.
    currents : ``(T, N, ...)``.

    Returns
    -------
    Tensor ``(T, N, ...)``.
    """
    mem = torch.zeros_like(currents[0])
    out = []
    for current in currents.unbind(0):  # as spikeff's scan (see lif_scan): no zero-filled gradient per step
        spk, mem = neuron(current, mem)
        out.append(spk)
    return torch.stack(out)


class SnnTorchNet(nn.Module):
    """The layers of a :class:`NetworkConfig` with snntorch neurons; ``forward`` returns logits and spikes.

    Parameters
    ----------
    config : the architecture, completed for the data.
    generator : source of the initial weights (the same as :class:`SpikingNet`'s from it).

    Raises
    ------
    ValueError : ``config`` lacks ``input_shape`` or ``n_classes``.
    """

    def __init__(self, config: NetworkConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        ref = SpikingNet(config, generator)  # same shapes and same initial weights as spikeff
        self.synapses = nn.ModuleList([layer.synapse for layer in ref.layers])
        self.pools = nn.ModuleList([layer.pool if layer.pool is not None else nn.Identity() for layer in ref.layers])
        # spikeff's normalisation, with the running statistics a BPTT user keeps (momentum 0.1).
        self.norms = nn.ModuleList([
            type(layer.norm)(layer.norm.num_features, affine=False) if layer.norm is not None else nn.Identity()
            for layer in ref.layers
        ])
        self.neurons = nn.ModuleList([_leaky(config) for _ in ref.layers])
        self.head = ref.head.fc
        self.head_neurons = _leaky(config) if config.readout == "lif" else None

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """``x`` ``(T, B, C, H, W)`` -> logits ``(B, K)``, each layer's spikes, the head's spikes (or None).

        Parameters
        ----------
        x : time-first frames ``(T, B, C, H, W)``.

        Returns
        -------
        logits : ``(B, K)``.
        spikes : each layer's ``(T, B, ...)``.
        head_spikes : ``(T, B, K)`` of a spiking head, else ``None``.

        Raises
        ------
        ValueError : ``x`` does not match the config's input shape.
        """
        check_input(x, self.config)
        t, b = x.shape[:2]
        h, spikes = x, []
        for syn, pool, norm, neuron in zip(self.synapses, self.pools, self.norms, self.neurons):
            inp = h.flatten(2) if isinstance(syn, nn.Linear) else h
            cur = norm(synapse_pool(inp.flatten(0, 1), syn, pool)).unflatten(0, (t, b))
            h = run_leaky(neuron, cur)
            spikes.append(h)
        if self.head_neurons is None:
            return self.head(h.flatten(2).mean(0)), spikes, None
        out = run_leaky(self.head_neurons, self.head(h.flatten(2)))
        return out.sum(0), spikes, out


def evaluate_bptt(net: SnnTorchNet, batches: Iterable[Batch], input_ops: InputOps = "events") -> tuple[float, OpCounts]:
    """Accuracy and mean op counts per inference (one deterministic pass per input).

    Parameters
    ----------
    net : the network; switched to eval mode.
    batches : time-first inputs and labels.
    input_ops : how the first layer's input is counted (see :func:`spikeff.energy.count_ops`).

    Returns
    -------
    accuracy : float.
    ops : OpCounts.

    Raises
    ------
    DataError : ``batches`` is empty.
    """
    net.eval()

    def infer(x: Tensor) -> Inference:
        z, spikes, head_spikes = net(x)
        ops = count_ops(x, spikes, list(net.synapses), head=net.head, head_spikes=head_spikes, input_ops=input_ops,
                        pools=list(net.pools))
        return Inference({"deterministic": z.argmax(1)}, ops)

    ev = evaluate_batches(batches, device_of(net), infer)
    return ev.accuracy["deterministic"], ev.ops


def bptt_epoch(
    net: SnnTorchNet, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterable[Batch], desc: str = "bptt",
) -> dict[str, float]:
    """One epoch of BPTT with cross-entropy on the rate-coded outputs; mean loss, training accuracy, seconds.

    The statistics stay on the device until the epoch ends; the finiteness check is one sync per batch.

    Parameters
    ----------
    net : the network; switched to train mode.
    opt : its optimizer.
    sched : stepped after every batch.
    batches : time-first inputs and labels.
    desc : the progress bar's label (and the error's).

    Returns
    -------
    dict : ``loss``, ``train_accuracy``, ``seconds``.

    Raises
    ------
    RuntimeError : a non-finite loss.
    """
    device = device_of(net)
    net.train()
    total, correct, n, te = torch.zeros((), device=device), torch.zeros((), device=device), 0, time.perf_counter()
    for x, y in tqdm(batches, desc=desc, leave=False, dynamic_ncols=True):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        z, _, _ = net(x)
        loss = F.cross_entropy(z, y)
        if not bool(torch.isfinite(loss)):
            raise RuntimeError(f"non-finite BPTT loss ({desc}); try a lower learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach() * y.shape[0]
        correct += (z.detach().argmax(1) == y).sum()
        n += y.shape[0]
    n = max(n, 1)
    return {"loss": float(total) / n, "train_accuracy": float(correct) / n, "seconds": time.perf_counter() - te}


def train_bptt(
    net_config: NetworkConfig, config: BPTTConfig, train_batches: Collection[Batch], test_batches: Iterable[Batch],
    *, generator: torch.Generator, device: str | torch.device = "cpu", input_ops: InputOps = "events",
) -> BaselineResult:
    """Train end to end by BPTT with cross-entropy on the rate-coded outputs, then evaluate.

    Parameters
    ----------
    net_config : the architecture, completed for the data.
    config : epochs and learning rate.
    train_batches : training batches, with a length.
    test_batches : held-out batches.
    generator : source of the initial weights.
    device : where it trains.
    input_ops : as in :func:`evaluate_bptt`.

    Returns
    -------
    BaselineResult, with ``passes = config.epochs``.

    Raises
    ------
    RuntimeError : a non-finite loss.
    """
    device = torch.device(device)
    net = SnnTorchNet(net_config, generator).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = cosine_schedule(opt, config.epochs * len(train_batches))
    t0 = time.perf_counter()
    history = [{"epoch": e + 1,
                **bptt_epoch(net, opt, sched, train_batches, desc=f"bptt epoch {e + 1}/{config.epochs}")}
               for e in range(config.epochs)]
    train_seconds = time.perf_counter() - t0
    acc, ops = evaluate_bptt(net, test_batches, input_ops)
    return BaselineResult(net, acc, ops, history, train_seconds, config.epochs)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Fixed ``(fit, holdout)`` index lists: a seeded ``fraction`` of ``range(n)`` is held out.

    Parameters
    ----------
    n : the number of samples.
    fraction : the share held out (at least one sample).
    seed : seed of the permutation.

    Returns
    -------
    fit, holdout : sorted index lists.

    Raises
    ------
    ValueError : ``fraction`` not in (0, 1), or ``n < 2``.
    """
    if not 0 < fraction < 1 or n < 2:
        raise ValueError(f"need 0 < fraction < 1 and at least 2 samples, got {fraction} and {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(round(fraction * n)))
    return sorted(perm[k:]), sorted(perm[:k])


def select_bptt(
    net_config: NetworkConfig,
    train_set: Dataset,
    lrs: Sequence[float],
    epochs: int,
    *,
    holdout: float = 0.2,
    split_seed: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Choose BPTT's learning rate as a user would: on a held-out share of the *training* set.

    For each ``lr``, train on the rest of the training set for ``epochs`` (cosine decay) and
    score the held-out share after every epoch. The choice maximises the mean held-out accuracy
    over the last quarter of the epochs. ``converged`` says whether that mean is within one
    held-out sample of the previous quarter's (the curve is flat at the end of the budget).

    Parameters
    ----------
    net_config : the architecture, completed for the data.
    train_set : the training split.
    lrs : candidate learning rates.
    epochs : training epochs per candidate.
    holdout : the share of ``train_set`` held out.
    split_seed : seed of the held-out share.
    seed : seed of the weights and the batch order.
    batch_size : training batch size.
    device : where it trains.

    Returns
    -------
    dict : the chosen ``lr``, ``converged``, each candidate's held-out ``curves``, the split sizes and the rule.

    Raises
    ------
    ValueError : no learning rates, or a held-out split that is not possible.
    RuntimeError : a non-finite loss.
    """
    if not lrs:
        raise ValueError("select_bptt needs at least one learning rate")
    fit_idx, held_idx = holdout_split(len(train_set), holdout, split_seed)
    held = make_loader(Subset(train_set, held_idx), 128, shuffle=False, seed=0)
    q = max(1, epochs // 4)
    curves: dict[str, Any] = {}
    for lr in lrs:
        fit = make_loader(Subset(train_set, fit_idx), batch_size, shuffle=True, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        net = SnnTorchNet(net_config, gen).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = cosine_schedule(opt, epochs * len(fit))
        acc = []
        for e in range(epochs):
            bptt_epoch(net, opt, sched, fit, desc=f"bptt lr {lr:g} epoch {e + 1}/{epochs}")
            acc.append(evaluate_bptt(net, held)[0])
        last, before = sum(acc[-q:]) / q, sum(acc[-2 * q:-q]) / q if epochs >= 2 * q else float("nan")
        curves[f"{lr:g}"] = {"lr": lr, "holdout_accuracy": acc, "last_quarter": last,
                             "converged": bool(abs(last - before) <= 1.0 / len(held_idx) + 1e-12)}
    best = max(curves.values(), key=lambda c: c["last_quarter"])
    return {"lr": best["lr"], "epochs": epochs, "converged": best["converged"], "curves": curves,
            "n_fit": len(fit_idx), "n_holdout": len(held_idx), "split_seed": split_seed,
            "rule": "lr with the best mean held-out accuracy over the last quarter of the epochs; converged when "
                    "that mean is within one held-out sample of the previous quarter's"}
