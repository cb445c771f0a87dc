"""Layer-local training: the schedules and the per-layer and head steps.

Every layer learns from its own objective (:mod:`spikeff.objectives`; by default ED compression,
:mod:`spikeff.ed`) on its own spike counts. Its
input is detached, so no gradient crosses layers; within a layer the gradient flows
through time by the surrogate. Each layer's loss is backpropagated and stepped before the
next layer runs, so only one layer's graph is alive at a time.

Schedules:

* ``greedy`` (the paper's): every epoch makes one pass per layer, training layer ``k``
  with layers ``< k`` frozen (run without a graph); the head learns in the last pass.
* ``simultaneous``: one pass per epoch; every layer and the head learn on every batch.

The readout head is trained with cross-entropy on the detached top-layer spikes, so it
too is local. Other layer-local methods reuse the loop as it is: ``objective`` may differ per
layer, ``feed(k, h, labels)`` maps each layer's input before it runs (Forward-Forward,
:mod:`spikeff.baselines.ff`, builds its positive and negative passes and its label inputs there)
and ``head=False`` leaves the head out. The readout's fit on frozen layers is in
:mod:`spikeff.readout_fit`; what a run records (per-layer statistics, epoch records, the pass
cursor) is in :mod:`spikeff.records`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .choices import check_choices
from .ed import EDLossConfig, random_projection
from .network import SpikingNet, device_of, spike_counts
from .noise import TrialNoise, trial_noise
from .objectives import Objective, ObjectiveName, make_objective, project
from .readout import Mode, scores
from .records import Diagnostic, EpochRecord, LayerStats, PassCursor, warn_if_silent

if TYPE_CHECKING:
    from .distributed import DataParallel

__all__ = ["TrainConfig", "TrainingError", "LayerTrainer", "Feed", "cosine_schedule", "optimizer_step", "head_step"]

Batch = tuple[Tensor, Tensor]
#: ``feed(k, h, labels)``: layer ``k``'s input from the batch's frames (``k = 0``; ``(T, B, ...)``, or
#: its trials after the trial noise) or from the spikes of layer ``k - 1``, and the batch's labels.
#: The first layer makes the trials its input lacks, so a feed may build them itself.
Feed = Callable[[int, Tensor, Tensor], Tensor]
Schedule = Literal["greedy", "simultaneous"]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss)."""


@dataclass(frozen=True)
class TrainConfig:
    """What the layer-local loop reads: its optimisation, trials, objective and schedule.

    The run-level settings (seed, readout fit, evaluation) are in :mod:`spikeff.config`.
    """

    epochs: int = field(default=3, metadata={"help": "epochs of layer training"})
    trials: int = field(default=8, metadata={"help": "noisy trials per input (n)"})
    input_keep: float = field(default=1.0, metadata={
        "help": "share of the input events each training trial keeps (event drop per trial; 1: none)"})
    input_shift: int = field(default=0, metadata={
        "help": "largest random translation of each training trial's input, in pixels (0: none)"})
    input_dropout: float = field(default=0.0, metadata={
        "help": "share of the input entries each training trial zeroes, the rest scaled up (dropout; 0: none)"})
    batch_size: int = field(default=32, metadata={"help": "inputs per batch"})
    lr: float = field(default=1e-3, metadata={"help": "layer learning rate (Adam)"})
    head_lr: float = field(default=1e-2, metadata={
        "help": "head learning rate while the layers train (and for a spiking head's readout)"})
    schedule: Schedule = field(default="simultaneous", metadata={
        "help": "greedy: one pass per layer and epoch; simultaneous: every layer learns on every batch"})
    objective: ObjectiveName = field(default="ed", metadata={
        "help": "each layer's local objective (spikeff.objectives): ed (ED compression as --form, --covariance, "
                "--diversity say), seed (the published method's fixed settings), ed_guarded (ed plus a variance "
                "floor and a decorrelation penalty)"})
    loss: EDLossConfig = field(default_factory=EDLossConfig)
    projection_dims: tuple[int, ...] = field(default=(), metadata={
        "flag": "--projection", "help": "random projection dims per layer, e.g. 30,20"})
    train_mode: Literal["energy", "average"] = field(default="energy", metadata={
        "help": "head training target: the energy or the average of the trial outputs"})

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.trials < 2 and self.objective != "seed" and (
            (self.loss.covariance == "trial" and not self.loss.supervised) or self.loss.diversity == "signal"
        ):
            raise ValueError(
                "the trial-to-trial and signal covariances need --trials >= 2 "
                "(or use covariance='second_moment' and diversity='covariance')"
            )
        if not 0.0 < self.input_keep <= 1.0 or self.input_shift < 0 or not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"input_keep must be in (0, 1], input_shift >= 0 and input_dropout in [0, 1), got "
                             f"{self.input_keep}, {self.input_shift}, {self.input_dropout}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        check_choices(self)


def optimizer_step(opt: torch.optim.Optimizer, loss: Tensor, sync: DataParallel | None = None) -> None:
    """One optimiser step on ``loss``; under ``sync`` the gradients are averaged over the ranks first.

    Parameters
    ----------
    opt : the optimizer of the parameters ``loss`` depends on.
    loss : the 0-d loss.
    sync : the data-parallel reducer; ``None`` on one process.
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync.average_gradients(p for group in opt.param_groups for p in group["params"])
    opt.step()


def head_step(net: SpikingNet, opt: torch.optim.Optimizer, top: Tensor, y: Tensor, trials: int,
              mode: Mode, generator: torch.Generator, sync: DataParallel | None = None) -> Tensor:
    """One cross-entropy step of the head on the detached top-layer spikes ``top``; returns the loss.

    Under ``sync`` the loss is the mean over the global batch.

    Parameters
    ----------
    net : the network whose head is trained.
    opt : the head's optimizer.
    top : the top layer's spikes ``(T, trials * B, ...)``.
    y : the batch's labels ``(B,)``.
    trials : trials per sample in ``top``.
    mode : the readout mode that scores the trials (:func:`scores`).
    generator : the head's neuron noise.
    sync : as for :func:`optimizer_step`.

    Returns
    -------
    Tensor, the detached 0-d loss.
    """
    z = net.head(top.detach(), generator).unflatten(0, (trials, y.shape[0]))
    if sync is None:
        loss = F.cross_entropy(scores(z, mode), y)
    else:  # the mean over the global batch
        loss = sync.mean(F.cross_entropy(scores(z, mode), y, reduction="sum"), y.shape[0])
    optimizer_step(opt, loss, sync)
    return loss.detach()


class LayerTrainer:
    """Trains a :class:`SpikingNet` layer by layer. One instance holds one run's optimizers.

    Parameters
    ----------
    net : the network; its layers and head are trained in place.
    config : the optimisation settings.
    generator : the training noise (and the random projections' seed).
    sync : :class:`spikeff.distributed.DataParallel` to train on batches split across processes:
        global-batch losses and gradients averaged over the ranks before each step.
    progress : show a progress bar per pass.
    diagnostics : called after every epoch with its record and the earlier records (default:
        :func:`warn_if_silent`).
    objective : every layer's objective (:class:`spikeff.objectives.Objective`), or one per layer;
        default: the one ``config.objective`` names, built from ``config.loss``.
    feed : maps each layer's input before it runs (:data:`Feed`); default: none.
    head : train the head beside the layers (in the pass of the top layer).
    noise : the sensor-level trial noise (:class:`spikeff.noise.TrialNoise`); default: the one the
        ``config.input_*`` settings select.

    Raises
    ------
    ValueError : ``config.projection_dims`` or a sequence of objectives is given but not one entry per layer.
    """

    def __init__(
        self, net: SpikingNet, config: TrainConfig, generator: torch.Generator, sync: DataParallel | None = None,
        *, progress: bool = True, diagnostics: Sequence[Diagnostic] = (warn_if_silent,),
        objective: Objective | Sequence[Objective] | None = None, feed: Feed | None = None, head: bool = True,
        noise: TrialNoise | None = None,
    ) -> None:
        self.net, self.config, self.generator, self.sync = net, config, generator, sync
        self.progress, self.diagnostics, self.feed, self.train_head = progress, tuple(diagnostics), feed, head
        self.layer_opts = [torch.optim.Adam(layer.parameters(), lr=config.lr) for layer in net.layers]
        self.head_opt = torch.optim.Adam(net.head.parameters(), lr=config.head_lr)
        if isinstance(objective, Sequence) and len(objective) != len(net.layers):
            raise ValueError(f"need one objective per layer ({len(net.layers)}), got {len(objective)}")
        dims = config.projection_dims
        if dims and len(dims) != len(net.layers):
            raise ValueError(f"projection_dims needs one entry per layer ({len(net.layers)}), got {dims}")
        seed = torch.randint(2**31, (1,), generator=generator, device=generator.device)
        proj_gen = torch.Generator().manual_seed(int(seed))
        self.projections = [
            random_projection(layer.out_channels, d, proj_gen).to(device_of(net)) if d else None
            for layer, d in zip(net.layers, dims or [0] * len(net.layers))
        ]
        self.objective = make_objective(config.objective, config.loss) if objective is None else objective
        self.noise = noise if noise is not None else trial_noise(config.input_keep, config.input_shift,
                                                                 config.input_dropout)
        self.cursor = PassCursor()
        self.history: list[EpochRecord] = []

    @property
    def batches_done(self) -> int:
        """Batches already trained in the current pass (0 between passes)."""
        return self.cursor.batches

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the cursor, optimizers, noise generator, projections, history.

        Returns
        -------
        dict, for :meth:`load_state_dict` (saved with ``torch.save``).
        """
        return {
            **self.cursor.state_dict(),
            "history": [r.to_dict() for r in self.history],
            "layer_opts": [o.state_dict() for o in self.layer_opts],
            "head_opt": self.head_opt.state_dict(),
            "generator": self.generator.get_state(),
            "projections": self.projections,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, into a trainer built for the same net and config.

        Parameters
        ----------
        state : as :meth:`state_dict` wrote it.
        """
        self.cursor.load_state_dict(state)
        self.history = [EpochRecord.from_dict(r) for r in state["history"]]
        for opt, sd in zip(self.layer_opts, state["layer_opts"]):
            opt.load_state_dict(sd)
        self.head_opt.load_state_dict(state["head_opt"])
        self.generator.set_state(state["generator"])
        self.projections = list(state["projections"])

    def layer_step(self, k: int, inp: Tensor, y: Tensor, trials_in: int) -> tuple[Tensor, LayerStats]:
        """Forward layer ``k`` (0-based) on detached ``inp`` and step its optimizer on its objective.

        Parameters
        ----------
        k : the layer.
        inp : its input spikes ``(T, trials_in * B, ...)``; detached here, so no gradient leaves the layer.
        y : the batch's labels (for objectives that read them, e.g. the supervised consistency).
        trials_in : the trials the layer makes of each input (``config.trials`` for a first layer's
            input without its trials, else 1).

        Returns
        -------
        The layer's detached spikes and its statistics as 0-d tensors (read once per pass: no
        device sync per step).
        """
        cfg, layer = self.config, self.net.layers[k]
        objective = self.objective[k] if isinstance(self.objective, Sequence) else self.objective
        spikes = layer(inp.detach(), self.generator, trials_in)
        counts = project(spike_counts(spikes, cfg.trials), self.projections[k])
        loss, named = objective(counts, y, None if self.sync is None else self.sync.reduce)
        optimizer_step(self.layer_opts[k], loss, self.sync)
        rate = spikes.detach().mean()
        named = {n: named[n].detach() for n in objective.names}
        stats = LayerStats(loss.detach(), rate, rate * spikes[0, 0].numel(), named)
        return spikes.detach(), stats

    def _check_finite(self, losses: dict[int, Tensor]) -> None:
        """Stop on a non-finite layer loss or weight after a step, naming the first such layer; one
        device sync per batch."""
        if not losses:
            return
        weights = [torch.stack([p.isfinite().all() for p in self.net.layers[k].parameters()]).all() for k in losses]
        finite = torch.isfinite(torch.stack(list(losses.values()))) & torch.stack(weights)
        if not bool(finite.all()):
            k = list(losses)[int((~finite).nonzero()[0, 0])]
            what = "loss" if not bool(torch.isfinite(losses[k])) else "weights after the step"
            raise TrainingError(
                f"non-finite {what} in layer {k + 1} at epoch {self.cursor.epoch + 1}; "
                "try a lower --lr or a different noise level (--delta)"
            )

    def _pass(
        self, batches: Iterable[Batch], train: list[int], *, head: bool, desc: str,
        on_batch: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One pass over ``batches``; returns the mean stats and the pass's seconds.

        A pass interrupted after ``batches_done`` batches continues with the next one: the
        batches already trained are read and dropped (no forward pass, no noise drawn), so
        ``batches`` must yield the same sequence again (the caller restores the loader).
        """
        cfg, net, cur = self.config, self.net, self.cursor
        device = device_of(net)
        last = max(train)
        start, seconds = cur.batches, cur.seconds
        it = iter(batches)
        skipped = sum(1 for _ in itertools.islice(it, start))
        if skipped < start:
            raise TrainingError(
                f"the run state is at batch {start} of a pass, but the training set now yields only {skipped} batches"
            )
        t0 = time.perf_counter()
        total = len(batches) if hasattr(batches, "__len__") else None
        bar = tqdm(it, desc=desc, leave=False, dynamic_ncols=True, initial=start, total=total,
                   disable=not self.progress)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            h = self.noise.apply(x, cfg.trials, self.generator) if self.noise else x
            losses: dict[int, Tensor] = {}
            for k in range(last + 1):
                h = h if self.feed is None else self.feed(k, h, y)
                trials_in = cfg.trials * x.shape[1] // h.shape[1]  # the trials the input lacks: 1 after the first layer
                if k in train:
                    h, stats = self.layer_step(k, h, y, trials_in)
                    losses[k] = stats.loss
                    for key, v in stats.items(k + 1).items():
                        cur.sums[key] = cur.sums.get(key, 0.0) + v
                else:
                    with torch.no_grad():
                        h = net.layers[k](h, self.generator, trials_in)
            self._check_finite(losses)
            if head:
                loss = head_step(net, self.head_opt, h, y, cfg.trials, cfg.train_mode, self.generator, self.sync)
                cur.sums["head/loss"] = cur.sums.get("head/loss", 0.0) + loss.detach()
            cur.batches += 1
            cur.seconds = seconds + time.perf_counter() - t0
            if on_batch is not None:
                on_batch()
        n_batches, sums, seconds = cur.batches, cur.sums, seconds + time.perf_counter() - t0
        cur.end_pass()
        if n_batches == 0:
            raise TrainingError("the training set yielded no batches")
        return {**{k: float(v) / n_batches for k, v in sums.items()}, "seconds": seconds}

    def train_epoch(
        self,
        batches: Iterable[Batch],
        on_stage: Callable[[], None] | None = None,
        on_batch: Callable[[], None] | None = None,
    ) -> EpochRecord:
        """One epoch under the configured schedule; returns and records per-layer mean stats.

        In greedy mode ``on_stage`` is called after each layer's pass but the last (e.g. to
        checkpoint); an interrupted epoch resumes at the next layer. ``on_batch`` is called
        after every batch, when :meth:`state_dict` holds the position inside the pass (e.g.
        for timed checkpoints); an interrupted pass resumes at the next batch.

        Parameters
        ----------
        batches : re-iterable training batches ``(x, y)``, time-first.
        on_stage : called after each greedy layer pass but the last.
        on_batch : called after every batch.

        Returns
        -------
        EpochRecord, the epoch's record.

        Raises
        ------
        TrainingError : a non-finite layer loss or weight, no batches, or fewer batches than the
            resumed position.
        """
        n_layers, cur = len(self.net.layers), self.cursor
        self.net.train()
        ep = f"epoch {cur.epoch + 1}/{self.config.epochs}"
        passes = [list(range(n_layers))] if self.config.schedule == "simultaneous" else [[k] for k in range(n_layers)]
        for p in passes[cur.stage:]:
            desc = ep if len(passes) == 1 else f"{ep} layer {p[0] + 1}"
            stats = self._pass(batches, p, head=self.train_head and p[-1] == n_layers - 1, desc=desc,
                               on_batch=on_batch)
            seconds = stats.pop("seconds")
            cur.done.update(stats)
            cur.done["seconds"] = cur.done.get("seconds", 0.0) + seconds
            if p[-1] < n_layers - 1:
                cur.stage += 1
                if on_stage is not None:
                    on_stage()
        record = EpochRecord.from_dict({**cur.done, "epoch": cur.epoch + 1})
        cur.epoch, cur.stage, cur.done = cur.epoch + 1, 0, {}
        for diagnose in self.diagnostics:
            diagnose(record, self.history)
        self.history.append(record)
        return record

    def fit(
        self,
        batches: Iterable[Batch],
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_stage: Callable[[], None] | None = None,
        on_batch: Callable[[], None] | None = None,
    ) -> list[EpochRecord]:
        """Train until ``config.epochs`` epochs are done (``batches`` is re-iterated each pass).

        Parameters
        ----------
        batches, on_stage, on_batch : as in :meth:`train_epoch`.
        on_epoch : called with each epoch's record.

        Returns
        -------
        list of EpochRecord, the records of all epochs (:attr:`history`).

        Raises
        ------
        TrainingError : as :meth:`train_epoch`.
        """
        while self.cursor.epoch < self.config.epochs:
            record = self.train_epoch(batches, on_stage, on_batch)
            if on_epoch is not None:
                on_epoch(record)
        return self.history


def cosine_schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Decay ``opt``'s learning rates to zero over ``steps`` scheduler steps (half a cosine).

    Parameters
    ----------
    opt : the optimizer.
    steps : the number of scheduler steps (at least 1 is used).

    Returns
    -------
    LRScheduler
    """
    steps = max(steps, 1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps)))
