"""One training run, shared by ``spikeff train`` and ``spikeff-bench``.

Train the layers by ED compression, fit the readout with the layers frozen, evaluate the
three readout modes on the held-out split, and do the same for the control: the same
network with its untrained initial weights and the same readout budget. The numbers are
those of the last epoch; nothing is selected on the held-out split.

With a ``state_path`` the run is resumable: a state file (model, optimizers, position in the
schedule, every generator and the loader's shuffling state) is written
atomically after every epoch (and every greedy layer pass), between the phases
``layers -> readout -> control`` and, with ``checkpoint_minutes``, after the first batch
that ends that long after the last save. A resumed run continues where the file left off
and gives the same numbers as an uninterrupted one.

Mid-pass, the file holds the trainer's position (batches done in the pass, the sums of
their statistics) and the loader's state *at the start of the pass*: on resume the loader
draws the same order again and the trainer drops the batches already trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .checkpoint import read_payload
from .config import RunConfig, to_dict
from .data import Splits, load_splits, make_loader
from .distributed import DistContext
from .evaluation import Evaluation, evaluate
from .fileio import atomic_write
from .label_efficiency import compact_label_efficiency
from .network import NetworkConfig, SpikingNet
from .probe import FeatureCollector, FrozenFeatures, frozen_features
from .readout_fit import calibrate_norm, fit_readout
from .records import EpochRecord, warn_if_head_silent
from .trainer import LayerTrainer

__all__ = [
    "EVAL_BATCH_SIZE", "STATE_FORMAT", "RunResult", "seeded_generators", "untrained_control", "train_and_evaluate",
    "load_state", "run_splits",
]

STATE_FORMAT = "spikeff-train-state"
STATE_VERSION = 4  # 2: mid-pass positions; 3: the whole RunConfig in meta["config"]; 4: the features in "result"

# Fixed so that `spikeff eval` draws the same noise as the run that wrote the checkpoint.
EVAL_BATCH_SIZE = 64


@dataclass
class RunResult:
    """A finished run: the trained ``net``, its ``metrics`` and the per-epoch ``history``."""

    net: SpikingNet
    metrics: dict[str, Any]
    history: list[EpochRecord]


def seeded_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """Independent generators for init, training noise, evaluation noise and the control.

    Parameters
    ----------
    seed : the run's seed.
    device : where the noise generators live (``"init"`` is always on the CPU).

    Returns
    -------
    dict : ``"init"``, ``"train"``, ``"eval"``, ``"control"`` -> generator.
    """
    return {
        name: torch.Generator(device=device if name != "init" else "cpu").manual_seed(seed * 1000 + i)
        for i, name in enumerate(("init", "train", "eval", "control"))
    }


def untrained_control(
    config: NetworkConfig, seed: int, device: torch.device, batches: Any, generator: torch.Generator
) -> SpikingNet:
    """The control of the run with ``seed``: its initial weights, normalisation statistics calibrated
    on ``batches`` (no readout fitted).

    Parameters
    ----------
    config : the run's network config (completed for the data).
    seed : the run's seed.
    device : where the network runs.
    batches : training batches ``(x, y)`` for the calibration.
    generator : noise of the calibration passes.

    Returns
    -------
    SpikingNet
    """
    ctrl = SpikingNet(config, seeded_generators(seed, device)["init"]).to(device)
    calibrate_norm(ctrl, batches, generator)
    return ctrl


def _loader_state(loader: DataLoader) -> dict[str, Any]:
    return {
        "generator": loader.generator.get_state(), "epoch": getattr(loader.sampler, "epoch", None),
        # Persistent workers draw their seed from the generator only when first started.
        "started": loader.persistent_workers and getattr(loader, "_iterator", None) is not None,
    }


def _set_loader_state(loader: DataLoader, state: dict[str, Any]) -> None:
    if state.get("started") and loader.persistent_workers:
        iter(loader)  # start the workers now, so that the next pass draws only its order, as it did
    loader.generator.set_state(state["generator"])
    if state["epoch"] is not None:
        loader.sampler.set_epoch(state["epoch"])


class _PassStart:
    """Re-iterable ``batches`` that notes ``loader``'s state whenever a pass over them begins."""

    def __init__(self, batches: Any, loader: DataLoader) -> None:
        self.batches, self.loader = batches, loader
        self.state = _loader_state(loader)

    def __iter__(self) -> Iterator[Any]:
        self.state = _loader_state(self.loader)
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _summary(ev: Evaluation) -> dict[str, Any]:
    """The plain-typed part of an evaluation that a run records (and its state file holds)."""
    return {**ev.accuracy, "n": ev.n, "layer_rates": ev.layer_rates, "head_rate": ev.head_rate}


def _collector(config: RunConfig) -> FeatureCollector | None:
    """What gathers the evaluation pass's features for the label-efficient readouts (``None`` without them)."""
    return FeatureCollector(config.test_trials, keep_trials=True) if config.eval.label_draws else None


def _net_features(
    net: SpikingNet, readout: dict[str, Any], train_batches: Any, trials: int, generator: torch.Generator,
    collect: FeatureCollector | None, ev: Evaluation,
) -> tuple[FrozenFeatures, FrozenFeatures] | None:
    """A net's training and test features for the label-efficient readouts, from the passes the run makes
    anyway: the readout fit's and the evaluation's (``collect``). Only where the fit kept none (a spiking
    head streams its readout; no readout epochs) does the training split get a pass of its own."""
    if collect is None:
        return None
    train = readout["features"]
    if train is None:
        train = frozen_features(net, train_batches, trials, generator)
    return train, collect.result(ev.labels)


def run_splits(config: RunConfig) -> Splits:
    """The train and held-out splits a run's config names (:func:`spikeff.data.load_splits`).

    Parameters
    ----------
    config : the run's config; its ``data`` part and the runtime's folders are read.

    Returns
    -------
    Splits
    """
    return load_splits(**to_dict(config.data), data_dir=config.runtime.data_dir, cache_dir=config.runtime.cache_dir)


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a run's state file (``weights_only=True``); raise ``ValueError`` if it is not one.

    Parameters
    ----------
    path : the state file.
    map_location : passed to :func:`torch.load`.

    Returns
    -------
    dict, for ``resume=`` of :func:`train_and_evaluate`.

    Raises
    ------
    ValueError : no such file, not a readable run state, or one of a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no run state to resume (the run finished, or never wrote one)")
    state = read_payload(path, STATE_FORMAT, "spikeff run state", ValueError, map_location)
    if state.get("version", 1) > STATE_VERSION:
        raise ValueError(f"{path} was written by a newer spikeff (state version {state['version']} > {STATE_VERSION})")
    return state


def train_and_evaluate(
    splits: Splits,
    config: RunConfig,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    state_path: str | Path | None = None,
    resume: dict[str, Any] | None = None,
    state_meta: dict[str, Any] | None = None,
    parallel: DistContext | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Train, fit the readout, evaluate; with ``config.eval.control`` the untrained control too.

    The network is ``config.network`` sized for ``splits``; it runs on ``config.runtime.device``
    (or ``parallel``'s device) with ``config.runtime.num_workers`` loader processes.

    ``state_path`` makes the run resumable (see the module doc); ``resume`` is a state read by
    :func:`load_state`; ``state_meta`` (plain types) is stored in the state file as is. With
    ``config.runtime.checkpoint_minutes`` > 0 the state is also saved after any batch ending at
    least that long (by ``clock``) after the last save; under ``parallel`` rank 0's clock decides.

    ``parallel`` (:func:`spikeff.distributed.init_from_env`) trains the layers data-parallel:
    each rank takes its part of every batch and draws its own noise (rank ``r`` > 0 reseeds
    the training generator with ``rank_seed``); only rank 0 writes the state file, fits the
    readout and evaluates; the other ranks return after layer training with empty metrics.

    Parameters
    ----------
    splits : the train and held-out splits.
    config : the run's settings.
    on_epoch : called with each epoch's record.
    state_path : where the run state is written, or ``None`` (not resumable).
    resume : a state from :func:`load_state` to continue from.
    state_meta : stored in the state file as is.
    parallel : the process group, or ``None`` for one process.
    clock : the clock of the timed saves.

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError : a state written by another number of processes, or a batch too small to split
        over the processes.
    """
    train_config, net_config = config.train, config.network.for_data(splits.frame_shape, splits.n_classes)
    seed, batch_size, num_workers = config.seed, train_config.batch_size, config.runtime.num_workers
    checkpoint_seconds = 60.0 * config.runtime.checkpoint_minutes
    ctx = parallel or DistContext(0, 1, torch.device(config.runtime.device))
    device = ctx.device
    gens = seeded_generators(seed, device)
    net = SpikingNet(net_config, gens["init"]).to(device)
    sync = ctx.data_parallel(net, len(splits.train), batch_size)
    train_loader = make_loader(splits.train, batch_size, shuffle=True, seed=seed, num_workers=num_workers)
    test_loader = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=seed, num_workers=num_workers)
    trials = config.test_trials

    trainer = LayerTrainer(net, train_config, gens["train"], sync)
    ctx.own_noise(gens["train"])  # after the trainer drew its projections, identical on all ranks
    batches = _PassStart(ctx.shard(train_loader), train_loader)
    phase, train_seconds, result = "layers", 0.0, None
    if resume is not None:
        if resume.get("world", 1) != ctx.world:
            raise ValueError(
                f"the run state was written by {resume.get('world', 1)} process(es); resume it with as many"
            )
        net.load_state_dict(resume["model"])
        trainer.load_state_dict(resume["trainer"])
        _set_loader_state(train_loader, resume["loader"])
        for name, g in gens.items():
            g.set_state(resume["generators"][name])
        if resume.get("rank_generators"):  # this rank's own training noise
            gens["train"].set_state(resume["rank_generators"][ctx.rank])
        phase, train_seconds, result = resume["phase"], resume["train_seconds"], resume["result"]
    t0 = time.perf_counter()
    last_save = clock()

    def save(next_phase: str) -> None:
        nonlocal last_save
        if state_path is not None:
            write_state(next_phase)
            last_save = clock()

    def write_state(next_phase: str) -> None:
        # Collective: every rank's noise state, while all ranks still train (not at "control").
        rank_gens = ctx.gather(gens["train"].get_state()) if next_phase != "control" else None
        if not ctx.is_main:
            return
        payload = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "phase": next_phase, "meta": state_meta or {},
            "world": ctx.world, "rank_generators": rank_gens,
            "model": net.state_dict(), "trainer": trainer.state_dict(),
            # Mid-pass: where this pass's loader started, so that resuming draws the same order.
            "loader": batches.state if trainer.batches_done else _loader_state(train_loader),
            "generators": {name: g.get_state() for name, g in gens.items()},
            "train_seconds": train_seconds + (time.perf_counter() - t0 if next_phase != "control" else 0.0),
            "result": result,
        }
        atomic_write(state_path, lambda f: torch.save(payload, f))

    def epoch_done(record: EpochRecord) -> None:
        save("layers")
        if on_epoch is not None:
            on_epoch(record)

    def batch_done() -> None:
        # A collective under DDP: every rank calls it after every batch and follows rank 0.
        if ctx.agree(clock() - last_save >= checkpoint_seconds):
            save("layers")

    timed = state_path is not None and checkpoint_seconds > 0
    if phase == "layers":
        trainer.fit(batches, epoch_done, on_stage=lambda: save("layers"), on_batch=batch_done if timed else None)
        save("readout")
        phase = "readout"
    # No collective follows, so every rank leaves the group here, together: ranks that
    # left while rank 0 still held the group sometimes aborted at exit (gloo).
    ctx.leave()
    if not ctx.is_main:
        return RunResult(net, {}, trainer.history)
    if phase == "readout":
        calibrate_norm(net, train_loader, gens["train"])
        readout = fit_readout(net, train_loader, train_config, gens["train"], config.eval.readout_epochs,
                              config.eval.readout_lrs, keep_layers=bool(config.eval.label_draws))
        train_seconds += time.perf_counter() - t0
        collect = _collector(config)
        ev = evaluate(net, test_loader, trials, gens["eval"], collect=collect)
        result = _summary(ev)
        result["readout"] = {k: readout[k] for k in ("lr", "selection")}
        # In the state file too, so that a resumed run's label-efficient readouts read the same features.
        own = _net_features(net, readout, train_loader, train_config.trials, gens["train"], collect, ev)
        result["features"] = None if own is None else [f.to_tensors() for f in own]
        save("control")
    history = trainer.history

    metrics: dict[str, Any] = {
        "dataset": splits.spec.name,
        "test_split": splits.test_name,
        "n_train": len(splits.train),
        "n_test": len(splits.test),
        "time_bins": splits.n_time_bins,
        "test_accuracy": {m: result[m] for m in ("energy", "average", "deterministic")},
        "layer_rates": result["layer_rates"],
        "head_rate": result.get("head_rate"),
        "readout": result.get("readout"),
        "epochs": train_config.epochs,
        "readout_epochs": config.eval.readout_epochs,
        "trials": train_config.trials,
        "eval_trials": trials,
        "seed": seed,
        "device": str(device),
        "batch_size": batch_size,
        "train_seconds": train_seconds,
        "network": to_dict(net_config),
    }
    nets = {"trained": net}
    stored = result.get("features")  # None without label draws
    if "features" not in result and config.eval.label_draws:  # a version-3 state: passes of their own
        stored = [frozen_features(net, batches, n, gens[g], keep_trials=True).to_tensors()
                  for batches, n, g in ((train_loader, train_config.trials, "train"), (test_loader, trials, "eval"))]
    features = {"trained": stored and tuple(map(FrozenFeatures.from_tensors, stored))}
    if config.eval.control:
        ctrl = nets["control"] = untrained_control(net_config, seed, device, train_loader, gens["control"])
        ctrl_readout = fit_readout(ctrl, train_loader, train_config, gens["control"],
                                   train_config.epochs + config.eval.readout_epochs, config.eval.readout_lrs,
                                   keep_layers=bool(config.eval.label_draws))
        collect = _collector(config)
        ev = evaluate(ctrl, test_loader, trials, gens["eval"], collect=collect)
        features["control"] = _net_features(ctrl, ctrl_readout, train_loader, train_config.trials, gens["control"],
                                            collect, ev)
        c = _summary(ev)
        metrics["control_accuracy"] = {m: c[m] for m in ("energy", "average", "deterministic")}
        metrics["control_layer_rates"] = c["layer_rates"]
        metrics["control_head_rate"] = c["head_rate"]
        metrics["control_readout"] = {k: ctrl_readout[k] for k in ("lr", "selection")}
    if config.eval.label_draws:
        metrics["label_efficiency"] = compact_label_efficiency(
            nets, {name: (train, {"clean": test}) for name, (train, test) in features.items()}, test_loader, config)
    warn_if_head_silent(metrics)
    return RunResult(net, metrics, history)
