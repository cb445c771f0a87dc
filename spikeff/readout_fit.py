"""Fitting the readout on frozen layers, after layer training and for the untrained control.

:func:`calibrate_norm` fixes each layer's normalisation statistics; :func:`fit_readout` then
trains only the head (the linear head on cached features, its learning rate chosen on a
share of the *training* inputs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .network import SpikingNet, device_of, init_fan_in_
from .probe import FeatureCollector
from .readout import Mode, scores
from .trainer import TrainConfig, cosine_schedule, head_step, optimizer_step

__all__ = ["READOUT_HOLDOUT", "calibrate_norm", "fit_readout", "fit_linear_head", "linear_head_accuracy"]

Batch = tuple[Tensor, Tensor]


@torch.no_grad()
def calibrate_norm(net: SpikingNet, batches: Iterable[Batch], generator: torch.Generator) -> None:
    """Set every layer's normalisation statistics to their mean over one pass of ``batches``.

    Training normalises each batch by its own statistics; evaluation, the readout and NIR
    export use these fixed ones. The layers' norms average (``momentum=None``) the batch
    statistics of one single-trial pass with the final weights, each layer seeing the layer
    below as it was trained. A network without normalisation is left as it is.

    Parameters
    ----------
    net : the network; left in eval mode when it has normalisation.
    batches : training batches ``(x, y)``, time-first.
    generator : the neuron noise of the pass.
    """
    norms = [layer.norm for layer in net.layers if layer.norm is not None]
    if not norms:
        return
    device = device_of(net)
    for norm in norms:
        norm.reset_running_stats()
    net.train()
    for x, _ in tqdm(batches, desc="norm statistics", leave=False, dynamic_ncols=True):
        net.layer_outputs(x.to(device), generator)
    net.eval()


READOUT_HOLDOUT = 0.2  # share of the training inputs that picks the linear head's learning rate


def fit_readout(
    net: SpikingNet, batches: Collection[Batch], config: TrainConfig, generator: torch.Generator, epochs: int,
    lrs: Sequence[float], keep_layers: bool = False,
) -> dict[str, Any]:
    """Train only the head for ``epochs`` passes with every layer frozen; returns the per-epoch
    losses, the learning rate used and, for the linear head, the held-out accuracy of each candidate.

    The learning rate decays to zero over the passes (cosine), so the head ends converged rather
    than wherever the last large step left it. Used after layer training, and with the same budget
    for the untrained control. A linear head sees only the top layer's spike counts, so the frozen
    layers run once: one draw of ``n`` trials per training input is kept (as float16 on the CPU;
    counts / T are exact) and every epoch reshuffles it. Its learning rate is chosen among
    ``lrs`` by the readout accuracy on a seeded ``READOUT_HOLDOUT`` share of the
    *training* inputs, then the head is fitted on all of them; each fit starts from the same freshly
    initialised head (uniform fan-in, drawn from ``generator``'s stream), so the trained network
    and the control are read out alike. A spiking head streams the spike trains, continues from
    its current weights and uses ``config.head_lr``.

    Parameters
    ----------
    net : the network; its head is trained in place, the rest left in eval mode.
    batches : training batches ``(x, y)``, time-first, with a length.
    config : ``trials``, ``train_mode`` and ``head_lr`` are read.
    generator : the neuron noise, and the seed of the head's init and the shuffling.
    epochs : passes over the training inputs (0: nothing is trained).
    lrs : the linear head's candidate learning rates (``EvalConfig.readout_lrs``).
    keep_layers : also keep every layer's trial-mean counts from the linear head's pass (for the
        label-efficient readouts).

    Returns
    -------
    dict : ``losses`` (per epoch), ``lr`` (``None`` when ``epochs == 0``), ``selection``
    (candidate learning rate -> held-out accuracy; empty for a spiking head) and ``features``: with
    ``keep_layers``, the :class:`~spikeff.probe.FrozenFeatures` of the linear head's one pass (in the
    loader's order), which the label-efficient readouts reuse; else, and for a spiking head or without
    epochs, ``None``.
    """
    device = device_of(net)
    net.eval()  # the frozen layers as they run in evaluation (fixed normalisation statistics)
    if epochs == 0:
        return {"losses": [], "lr": None, "selection": {}, "features": None}
    if net.head.kind != "linear":
        opt = torch.optim.Adam(net.head.parameters(), lr=config.head_lr)
        sched = cosine_schedule(opt, epochs * len(batches))
        losses = []
        for epoch in range(epochs):
            total, n = 0.0, 0
            for x, y in tqdm(batches, desc=f"readout {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True):
                x, y = x.to(device), y.to(device)
                with torch.no_grad():
                    top = net.layer_outputs(x, generator, config.trials)[-1]
                total += head_step(net, opt, top, y, config.trials, config.train_mode, generator)
                sched.step()
                n += 1
            losses.append(float(total) / max(n, 1))
        return {"losses": losses, "lr": config.head_lr, "selection": {}, "features": None}

    collect, batch_size = FeatureCollector(config.trials, keep_trials=True, keep_layers=keep_layers), 1
    with torch.no_grad():
        for x, y in tqdm(batches, desc="readout features", leave=False, dynamic_ncols=True):
            x = x.to(device)
            collect.add(x, net.layer_outputs(x, generator, config.trials), y)
            batch_size = max(batch_size, y.shape[0])
    frozen = collect.result()
    features, targets = frozen.top_trials, torch.from_numpy(frozen.labels)
    order_gen = torch.Generator().manual_seed(
        int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
    # A fresh head: the one trained beside the layers saw drifting features, and the control's is untrained.
    init_fan_in_(net.head.fc, order_gen)
    fit = _LinearHeadFit(net.head.fc, features, targets, config.train_mode, batch_size, epochs, order_gen)
    lr, selection = lrs[0], {}
    if len(lrs) > 1:
        perm = torch.randperm(targets.shape[0], generator=order_gen)
        n_held = max(1, int(round(READOUT_HOLDOUT * targets.shape[0])))
        held, kept = perm[:n_held], perm[n_held:]
        start = copy.deepcopy(net.head.fc.state_dict())
        for candidate in lrs:
            net.head.fc.load_state_dict(start)
            fit.run(kept, candidate)
            selection[candidate] = fit.accuracy(held)
        lr = max(lrs, key=lambda c: selection[c])  # the first of equals
        net.head.fc.load_state_dict(start)
    losses = fit.run(torch.arange(targets.shape[0]), lr)
    return {"losses": losses, "lr": lr, "selection": selection, "features": frozen if keep_layers else None}


def fit_linear_head(fc: torch.nn.Linear, features: Tensor, targets: Tensor, *, lr: float, epochs: int,
                    batch_size: int, generator: torch.Generator, mode: Mode = "average",
                    inputs: Tensor | None = None) -> list[float]:
    """Fit ``fc`` in place by cross-entropy on cached features: Adam with a cosine decay from ``lr``
    over ``epochs`` passes over the inputs, each in a new order; returns the epoch losses.

    Parameters
    ----------
    fc : the linear head, on any device.
    features : ``(n, N, D)``: ``n`` trials of ``N`` inputs, on the CPU (any float dtype).
    targets : the classes ``(N,)``, on the CPU.
    lr, epochs, batch_size : the optimisation.
    generator : a CPU generator for the orders.
    mode : how the ``n`` trials' outputs are scored (:func:`spikeff.readout.scores`).
    inputs : the indices of the inputs fitted on (default: all ``N``).

    Returns
    -------
    list of float, one mean loss per epoch.
    """
    fit = _LinearHeadFit(fc, features, targets, mode, batch_size, epochs, generator)
    return fit.run(torch.arange(targets.shape[0]) if inputs is None else inputs, lr)


@torch.no_grad()
def linear_head_accuracy(fc: torch.nn.Linear, features: Tensor, targets: Tensor, mode: Mode = "average") -> float:
    """The accuracy of ``fc`` on cached features ``(n, N, D)`` (CPU) against ``targets`` ``(N,)``, the
    ``n`` trials scored in ``mode``.

    Parameters
    ----------
    fc, features, targets, mode : as in :func:`fit_linear_head`.

    Returns
    -------
    float
    """
    z = fc(features.to(fc.weight.device, torch.float32))
    return float((scores(z, mode).argmax(1).cpu() == targets).float().mean())


class _LinearHeadFit:
    """Fits a linear head on cached trial features ``(n, N, D)`` on the CPU (float16 for :func:`fit_readout`)."""

    def __init__(self, fc: torch.nn.Linear, features: Tensor, targets: Tensor, mode: Mode, batch_size: int,
                 epochs: int, order_gen: torch.Generator) -> None:
        self.fc, self.features, self.targets, self.mode = fc, features, targets, mode
        self.batch_size, self.epochs, self.order_gen = batch_size, epochs, order_gen
        self.device = fc.weight.device

    def run(self, idx: Tensor, lr: float) -> list[float]:
        """Adam with a cosine decay from ``lr`` over ``epochs`` shuffled passes over the inputs ``idx``."""
        opt = torch.optim.Adam(self.fc.parameters(), lr=lr)
        sched = cosine_schedule(opt, self.epochs * math.ceil(idx.numel() / self.batch_size))
        losses = []
        for _ in tqdm(range(self.epochs), desc=f"readout fit (lr {lr:g})", leave=False, dynamic_ncols=True):
            total, n = 0.0, 0
            for part in idx[torch.randperm(idx.numel(), generator=self.order_gen)].split(self.batch_size):
                z = self.fc(self.features.index_select(1, part).to(self.device, torch.float32))
                loss = F.cross_entropy(scores(z, self.mode), self.targets[part].to(self.device))
                optimizer_step(opt, loss)
                sched.step()
                total, n = total + loss.detach(), n + 1
            losses.append(float(total) / n)
        return losses

    def accuracy(self, idx: Tensor) -> float:
        return linear_head_accuracy(self.fc, self.features.index_select(1, idx), self.targets[idx], self.mode)
