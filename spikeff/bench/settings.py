"""What ``spikeff-bench`` runs: one spikeff :class:`~spikeff.config.RunConfig` that every method
shares (data, split, architecture, batch size, device), the bench's own options, the ``--quick``
overrides and the settings key that ``--resume`` compares.

Every comparison is an override of that run: one run per seed (``run.seed``), the trials
and noise curves (evaluation trials, ``run.network.lif.delta``), and the baselines on the same
data and layer shapes.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..baselines import BPTTConfig
from ..choices import check_choices
from ..config import RunConfig, flags, overrides, to_dict
from ..data import Splits
from ..energy import COST_MODELS, InputOps, get_cost_model
from ..experiment import run_splits
from ..network import NetworkConfig
from ..neurons import ReLUParams, neuron_to_dict

__all__ = ["METHODS", "SEED_METHOD", "seed_run", "TRIALS_CURVE", "NOISE_LEVELS", "BPTT_LRS", "BENCH_MODES", "QUICK",
           "FRONTIER_TRIALS", "TRAIN_TRIALS", "BenchSettings", "bench_flags", "with_quick", "settings_key"]

Method = Literal["spikeff", "bptt", "ff", "seed", "random", "linear"]
METHODS: tuple[Method, ...] = typing.get_args(Method)
# The seed's published method (Zhu et al., arXiv 2505.16649) in spikeff's loop: ReLU units, dropout 0.2 on the
# input as the only trial noise, uncentred second moments pooled over copies and positions, a random projection
# of each layer's channels (seed_run), 0.5 * ED_cons - 0.5 * ED_div raw, trained greedily.
SEED_METHOD = {"network.lif": neuron_to_dict(ReLUParams()), "train.input_dropout": 0.2, "train.objective": "seed",
               "train.schedule": "greedy"}
TRIALS_CURVE = (1, 2, 4, 8, 16)
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4)
BPTT_LRS = (3e-4, 1e-3, 3e-3)
BENCH_MODES = ("energy", "deterministic")  # the energy-trained head scored on the mean output is not reported
# --quick: overrides of the settings (dotted paths) that the command line does not give.
QUICK = {"run.data.limit": (128,), "run.train.epochs": 1, "run.eval.readout_epochs": 1,
         "run.network.conv_channels": (8, 16), "seeds": 2, "trials_curve": (1, 4, 16),
         "noise_levels": (0.0, 0.1, 0.4), "baseline_epochs": 2}
# Settings of the spikeff run that the bench sets itself: one run per seed, the control by --methods.
BENCH_OWNED = (("run", "seed"), ("run", "eval", "control"), ("run", "runtime", "checkpoint_minutes"),
               ("run", "runtime", "num_workers"))
# Trials of the spikeff trials curve that stand on the energy-accuracy frontier.
FRONTIER_TRIALS = (1, 2, 4, 8)
# Forward passes with a gradient per training input and step (spikeff: its n trials). FF's mining passes are
# not counted (they run without gradient).
TRAIN_TRIALS = {"bptt": 1, "linear": 1, "ff": 2}


@dataclass(frozen=True)
class BenchSettings:
    """What to run: the shared spikeff run and the bench's own options."""

    run: RunConfig = field(default_factory=RunConfig)
    methods: tuple[Method, ...] = field(default=METHODS, metadata={"help": "methods to run"})
    seeds: int = field(default=3, metadata={"help": "number of seeds: first_seed..first_seed+K-1"})
    first_seed: int = field(default=0, metadata={
        "help": "the first seed (to split seeds over processes; `spikeff-bench --merge` joins their folders)"})
    quick: bool = field(default=False, metadata={
        "help": "small run: " + ", ".join(f"{k.removeprefix('run.')}={v}" for k, v in QUICK.items())
                + " unless given"})
    trials_curve: tuple[int, ...] = field(default=TRIALS_CURVE, metadata={"help": "spikeff test trials to score"})
    noise_levels: tuple[float, ...] = field(default=NOISE_LEVELS, metadata={
        "help": "escape-noise temperatures (delta) to score the trained spikeff net at"})
    input_ops: InputOps = field(default="events", metadata={
        "help": "first-layer input: events as ACs or dense frame MACs"})
    cost_models: tuple[str, ...] = field(default=tuple(COST_MODELS), metadata={
        "help": "energy cost models", "choices": tuple(sorted(COST_MODELS))})
    baseline_epochs: int | None = field(default=None, metadata={
        "help": "BPTT and FF epochs, with BPTT at --bptt-lr and no learning-rate choice (quick runs; "
                "default: BPTT's choice over --bptt-lrs at --bptt-epochs, FF's own defaults)"})
    bptt_lr: float = field(default=BPTTConfig.lr, metadata={"help": "BPTT's learning rate with --baseline-epochs"})
    bptt_lrs: tuple[float, ...] = field(default=BPTT_LRS, metadata={
        "help": "BPTT learning rates to choose from on a held-out share of the training split"})
    bptt_epochs: int = field(default=BPTTConfig.epochs, metadata={"help": "BPTT's cosine budget in epochs"})
    input_per_trial: bool = field(default=False, metadata={
        "help": "charge spikeff's first-layer input events once per trial, not once per inference"})
    isolate: bool = field(default=True, metadata={
        "help": "run each method in its own process (each method's peak memory is its own)"})

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown methods {bad}; choose from {list(METHODS)}")
        if self.baseline_epochs is not None and self.baseline_epochs < 0:
            raise ValueError(f"--baseline-epochs must be >= 0, got {self.baseline_epochs}")
        if self.bptt_epochs < 1 or not self.bptt_lrs or min(self.bptt_lrs) <= 0 or self.bptt_lr <= 0:
            raise ValueError(f"--bptt-epochs must be >= 1 and BPTT learning rates positive, got {self.bptt_epochs}, "
                             f"{self.bptt_lrs}, {self.bptt_lr}")
        if self.seeds < 1 or self.first_seed < 0:
            raise ValueError(f"--seeds must be >= 1 and --first-seed >= 0, got {self.seeds}, {self.first_seed}")
        if not self.trials_curve or min(self.trials_curve) < 1:
            raise ValueError(f"trials curve values must be >= 1, got {self.trials_curve}")
        if not self.noise_levels or min(self.noise_levels) < 0:
            raise ValueError(f"noise levels must be >= 0, got {self.noise_levels}")
        check_choices(self)
        for name in self.cost_models:
            get_cost_model(name)

    @property
    def seed_range(self) -> range:
        """The seeds to run, ``first_seed`` .. ``first_seed + seeds - 1``."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def device(self) -> str:
        return self.run.runtime.device

    def run_config(self, seed: int) -> RunConfig:
        """The spikeff run of ``seed``; it fits the control when ``random`` is among the methods.

        Parameters
        ----------
        seed : the run's seed (it moves weights, noise and order; never the split).

        Returns
        -------
        RunConfig, ``run`` with ``seed`` and ``eval.control`` set.
        """
        return replace(self.run, seed=seed, eval=replace(self.run.eval, control="random" in self.methods))

    def network_config(self, splits: Splits) -> NetworkConfig:
        """The network of ``run.network`` sized for the data of ``splits``.

        Parameters
        ----------
        splits : the loaded data; their frame shape and class count are read.

        Returns
        -------
        NetworkConfig
        """
        return self.run.network.for_data(splits.frame_shape, splits.n_classes)

    def splits(self) -> Splits:
        return run_splits(self.run)


def seed_run(run: RunConfig) -> RunConfig:
    """``run`` at :data:`SEED_METHOD`'s settings, each layer's channels projected to a half (first layer)
    or a quarter (above) of their number, at least 1; the seed projects 96 -> 30, 384 -> 20, 1536 -> 10.

    Parameters
    ----------
    run : the spikeff run (data, layer sizes, epochs, trials, readout are kept).

    Returns
    -------
    RunConfig
    """
    sizes = run.network.conv_channels + run.network.hidden
    dims = tuple(max(1, c // (2 if k == 0 else 4)) for k, c in enumerate(sizes))
    return overrides(run, {**SEED_METHOD, "train.projection_dims": dims})


def bench_flags() -> list:
    """The ``spikeff-bench`` options: the bench's own and the spikeff run's, less those it sets itself."""
    return [f for f in flags(BenchSettings) if f.path not in BENCH_OWNED]


def with_quick(settings: BenchSettings, given: Collection[str] = ()) -> BenchSettings:
    """With ``settings.quick``: the :data:`QUICK` sizes for every setting not in ``given`` (dotted paths).

    Parameters
    ----------
    settings : the bench settings.
    given : the settings given on the command line, which keep their values.

    Returns
    -------
    BenchSettings; ``settings`` itself without ``quick``.
    """
    if not settings.quick:
        return settings
    return overrides(settings, {k: v for k, v in QUICK.items() if k not in given})


def settings_key(s: BenchSettings) -> dict[str, Any]:
    """The settings that decide a method's raw results (not which methods run, nor process isolation).

    Parameters
    ----------
    s : BenchSettings
        The settings.

    Returns
    -------
    dict
        JSON-normal settings (tuples as lists), compared with a saved ``raw_<method>.json``.
    """
    d = to_dict(s)
    for k in ("methods", "isolate", "quick"):
        d.pop(k)
    return json.loads(json.dumps(d))
