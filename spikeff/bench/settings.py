"""What ``spikeff-bench`` runs: the methods, the default curves, the ``--quick`` sizes and
:class:`BenchSettings`, plus the settings key that ``--resume`` compares."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..baselines import BPTTConfig
from ..data import DATASETS, Splits, load_splits
from ..energy import COST_MODELS, InputOps, get_cost_model
from ..network import PRECISIONS, NetworkConfig, Precision
from ..neurons import SCAN_BACKENDS, ScanBackend
from ..trainer import TrainConfig

__all__ = ["METHODS", "TRIALS_CURVE", "NOISE_LEVELS", "BPTT_LRS", "BENCH_MODES", "QUICK", "FRONTIER_TRIALS",
           "TRAIN_TRIALS", "BenchSettings", "settings_key"]

METHODS = ("spikeff", "bptt", "ff", "random", "linear")
TRIALS_CURVE = (1, 2, 4, 8, 16)
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4)
BPTT_LRS = (3e-4, 1e-3, 3e-3)
BENCH_MODES = ("energy", "deterministic")  # the energy-trained head scored on the mean output is not reported
QUICK = {"limit": 128, "epochs": 1, "readout_epochs": 1, "channels": (8, 16), "seeds": 2,
         "trials_curve": (1, 4, 16), "noise_levels": (0.0, 0.1, 0.4), "baseline_epochs": 2}
# Trials of the spikeff trials curve that stand on the energy-accuracy frontier.
FRONTIER_TRIALS = (1, 2, 4, 8)
# Forward passes with a gradient per training input and step (spikeff: its n trials). FF's mining passes are
# not counted (they run without gradient).
TRAIN_TRIALS = {"bptt": 1, "linear": 1, "ff": 2}


@dataclass(frozen=True)
class BenchSettings:
    """What to run. ``None`` means the core's default (or the ``--quick`` value)."""

    dataset: str = "digits"
    data_dir: str | None = None
    cache_dir: str | None = None
    methods: tuple[str, ...] = METHODS
    seeds: int | None = None
    trials: int | None = None
    device: str = "cpu"
    quick: bool = False
    limit: int | None = None
    epochs: int | None = None
    readout_epochs: int | None = None
    channels: tuple[int, ...] | None = None
    hidden: tuple[int, ...] | None = None
    time_bins: int | None = None
    batch_size: int = 32
    split_seed: int = 0
    val_fraction: float = 0.2
    trials_curve: tuple[int, ...] | None = None
    noise_levels: tuple[float, ...] | None = None
    input_ops: InputOps = "events"
    cost_models: tuple[str, ...] = tuple(COST_MODELS)
    baseline_epochs: int | None = None
    bptt_lr: float = BPTTConfig.lr
    bptt_lrs: tuple[float, ...] = BPTT_LRS
    bptt_epochs: int = BPTTConfig.epochs
    input_per_trial: bool = False
    isolate: bool = True
    scan: ScanBackend = "eager"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown methods {bad}; choose from {list(METHODS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {sorted(DATASETS)}")
        if self.baseline_epochs is not None and self.baseline_epochs < 0:
            raise ValueError(f"--baseline-epochs must be >= 0, got {self.baseline_epochs}")
        if self.bptt_epochs < 1 or not self.bptt_lrs or min(self.bptt_lrs) <= 0 or self.bptt_lr <= 0:
            raise ValueError(f"--bptt-epochs must be >= 1 and BPTT learning rates positive, got {self.bptt_epochs}, "
                             f"{self.bptt_lrs}, {self.bptt_lr}")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.trials_curve is not None and (not self.trials_curve or min(self.trials_curve) < 1):
            raise ValueError(f"trials curve values must be >= 1, got {self.trials_curve}")
        if self.noise_levels is not None and (not self.noise_levels or min(self.noise_levels) < 0):
            raise ValueError(f"noise levels must be >= 0, got {self.noise_levels}")
        if self.input_ops not in ("events", "dense"):
            raise ValueError(f"input_ops must be 'events' or 'dense', got {self.input_ops!r}")
        for name in self.cost_models:
            get_cost_model(name)
        if self.scan not in SCAN_BACKENDS or self.precision not in PRECISIONS:
            raise ValueError(f"scan must be one of {SCAN_BACKENDS} and precision one of {PRECISIONS}, "
                             f"got {self.scan!r}, {self.precision!r}")

    def resolved(self) -> BenchSettings:
        """Fill the ``--quick`` values for everything not given."""
        fill = {k: v for k, v in QUICK.items() if self.quick and getattr(self, k) is None}
        out = replace(self, **fill)
        return replace(
            out, seeds=out.seeds or 3, trials_curve=out.trials_curve or TRIALS_CURVE,
            noise_levels=out.noise_levels or NOISE_LEVELS,
        )

    def train_config(self) -> TrainConfig:
        kw = {k: getattr(self, k) for k in ("epochs", "readout_epochs", "trials") if getattr(self, k) is not None}
        return TrainConfig(**kw)

    def network_config(self, splits: Splits) -> NetworkConfig:
        kw: dict[str, Any] = {}
        if self.channels is not None:
            kw["conv_channels"] = self.channels
        if self.hidden is not None:
            kw["hidden"] = self.hidden
        return NetworkConfig(input_shape=tuple(splits.frame_shape), n_classes=splits.n_classes, scan=self.scan,
                             precision=self.precision, **kw)

    def splits(self) -> Splits:
        return load_splits(
            self.dataset, self.data_dir, n_time_bins=self.time_bins, seed=self.split_seed,
            val_fraction=self.val_fraction, cache_dir=self.cache_dir, limit=self.limit,
        )



def settings_key(s: BenchSettings) -> dict[str, Any]:
    """The settings that decide a method's raw results (not which methods run, nor process isolation).

    Parameters
    ----------
    s : BenchSettings
        Resolved settings (:meth:`BenchSettings.resolved`).

    Returns
    -------
    dict
        JSON-normal settings (tuples as lists), compared with a saved ``raw_<method>.json``.
    """
    d = asdict(s)
    for k in ("methods", "isolate"):
        d.pop(k)
    return json.loads(json.dumps(d))
