"""``spikeff-bench``: spikeff against BPTT (snntorch), Forward-Forward, untrained weights and raw counts.

Every method sees the same data, split, time bins and layer shapes, in the same run:

* ``spikeff``: :func:`spikeff.experiment.train_and_evaluate`, read out in energy mode (``n``
  noisy trials) and deterministic mode (one noise-free trial);
* ``random``: the untrained-weights control that ``train_and_evaluate`` computes alongside
  (same readout fit); it is not trained twice;
* ``bptt``: :mod:`spikeff.baselines.bptt`, end to end with snntorch; its learning rate is
  chosen on a held-out share of the *training* split (:func:`~spikeff.baselines.bptt.select_bptt`)
  over a fixed cosine budget whose curve the report shows;
* ``ff``: :mod:`spikeff.baselines.ff`, layer-local Forward-Forward;
* ``linear``: :mod:`spikeff.baselines.linear`, logistic regression on the raw event counts.

Per method: test accuracy per seed, its median and a 95 % Wilson interval (nothing is
selected on the test split), op counts and energy per inference (:mod:`spikeff.energy`),
training wall time, throughput per input and per trial, and peak memory (each method in a
fresh process by default). For spikeff also accuracy against the number of trials and the
noise level, ED per layer over training and a linear probe per layer. The energy-accuracy
frontier puts spikeff at 1, 2, 4, 8 trials and deterministic beside every baseline and names
the cheapest spikeff point that matches BPTT.

Each method's raw results are saved as ``raw_<method>.json`` when it finishes; ``--resume``
reuses those whose settings match. Outputs in ``--out``: ``report.json``, ``report.md`` and
PNG figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import re
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .baselines import BPTTConfig
from .data import DATASETS, DataError, Splits, load_splits, make_loader
from .energy import COST_MODELS, CostModel, InputOps, OpCounts, count_ops, get_cost_model
from .experiment import EVAL_BATCH_SIZE, seeded_generators, train_and_evaluate, untrained_control
from .fileio import atomic_write, write_json
from .network import PRECISIONS, NetworkConfig, Precision, SpikingNet
from .neurons import SCAN_BACKENDS, ScanBackend
from .probe import layer_probes
from .provenance import device_name, git_commit
from .readout import scores
from .trainer import TrainConfig, TrainingError

__all__ = ["METHODS", "BenchSettings", "measure_spikeff", "run_method", "run_bench", "write_outputs", "main"]

METHODS = ("spikeff", "bptt", "ff", "random", "linear")
TRIALS_CURVE = (1, 2, 4, 8, 16)
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4)
BPTT_LRS = (3e-4, 1e-3, 3e-3)
BENCH_MODES = ("energy", "deterministic")  # the energy-trained head scored on the mean output is not reported
QUICK = {"limit": 128, "epochs": 1, "readout_epochs": 1, "channels": (8, 16), "seeds": 2,
         "trials_curve": (1, 4, 16), "noise_levels": (0.0, 0.1, 0.4), "baseline_epochs": 2}


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


# ----------------------------------------------------------------------------- measurement


def _gen(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def measure_spikeff(
    net: SpikingNet,
    batches,
    trials: int,
    generator: torch.Generator,
    *,
    deterministic: bool = False,
    input_ops: InputOps = "events",
    input_per_trial: bool = False,
) -> tuple[float, OpCounts]:
    """Accuracy and op counts per inference of a :class:`SpikingNet`.

    Stochastic: ``trials`` noisy trials scored in energy mode; deterministic: one noise-free
    trial. ``input_per_trial`` charges the first layer's input once per trial (hardware that
    runs each trial separately) instead of once per inference.
    """
    net.eval()
    device = next(net.parameters()).device
    n = 1 if deterministic else trials
    lif = net.config.lif.deterministic() if deterministic else net.config.lif
    mode = "deterministic" if deterministic else "energy"
    correct = 0
    ops, sizes = [], []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        spikes = net.layer_outputs(x, generator, n, deterministic)
        top = spikes[-1]
        if net.head.kind == "linear":
            z, head_spikes = net.head.fc(net.head.features(top)), None
        else:
            head_spikes = net.head.spikes(top, lif, generator)
            z = head_spikes.sum(0)
        z = z.unflatten(0, (n, y.shape[0]))
        correct += (scores(z, mode).argmax(1) == y).sum().item()
        ops.append(count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=n, head=net.head.fc,
                             head_spikes=head_spikes, shared_input=not input_per_trial, input_ops=input_ops,
                             stochastic=lif.stochastic, pools=[layer.pool for layer in net.layers]))
        sizes.append(y.shape[0])
    if not sizes:
        raise TrainingError("the evaluation set is empty")
    return correct / sum(sizes), OpCounts.mean(ops, sizes)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # a high-water mark of the whole process
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _raster(net: SpikingNet, x: Tensor, generator: torch.Generator) -> dict[str, Any]:
    """Spikes of one sample, one trial: input events and each layer, as (T, neurons) lists of indices."""
    with torch.no_grad():
        spikes = net.layer_outputs(x[:, :1], generator, 1)
    rows = [("input events", (x[:, 0] > 0).flatten(1))] + [(f"layer {i + 1}", s[:, 0].flatten(1) > 0)
                                                           for i, s in enumerate(spikes)]
    return {name: {"neurons": int(a.shape[1]), "events": a.nonzero().tolist()} for name, a in rows}


def _run_spikeff(s: BenchSettings, splits: Splits, device: torch.device, models: list[CostModel]) -> dict[str, Any]:
    net_cfg, train_cfg = s.network_config(splits), s.train_config()

    def measure(net: SpikingNet, trials: int, gen: torch.Generator, deterministic: bool = False) -> tuple[float, dict]:
        acc, ops = measure_spikeff(net, test, trials, gen, deterministic=deterministic, input_ops=s.input_ops,
                                   input_per_trial=s.input_per_trial)
        return acc, ops.to_dict(models)

    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    train = make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    curve = sorted(set(s.trials_curve) | {train_cfg.trials})
    lif0 = net_cfg.lif
    levels = sorted(set(s.noise_levels) | {lif0.delta})
    seeds_out = []
    for seed in tqdm(range(s.seeds), desc="spikeff seeds", dynamic_ncols=True):
        run = train_and_evaluate(splits, net_cfg, train_cfg, seed=seed, device=device, batch_size=s.batch_size,
                                 control="random" in s.methods)
        net, m = run.net, run.metrics
        g = lambda j, seed=seed: _gen(device, seed * 1000 + 100 + j)  # noqa: E731 -- measurement noise, apart from training's
        acc = m["test_accuracy"]
        rec: dict[str, Any] = {"seed": seed, "accuracy": {mode: acc[mode] for mode in BENCH_MODES},
                               "train_seconds": m["train_seconds"], "layer_rates": m["layer_rates"],
                               "history": run.history}
        by_trials = {}
        for j, n in enumerate(tqdm(curve, desc="trials curve", leave=False, dynamic_ncols=True)):
            acc_n, ops = measure(net, n, g(j))
            by_trials[n] = {"accuracy": acc_n, "ops": ops}
        rec["ops"] = {"energy": by_trials[train_cfg.trials]["ops"], "deterministic": measure(net, 1, g(50), True)[1]}
        rec["trials_curve"] = by_trials
        noise = {}
        try:
            for j, d in enumerate(tqdm(levels, desc="noise curve", leave=False, dynamic_ncols=True)):
                net.with_lif(replace(lif0, delta=d))
                acc_d, ops = measure(net, train_cfg.trials, g(200 + j))
                noise[d] = {"accuracy": acc_d, "ops": ops}
        finally:
            net.with_lif(lif0)
        rec["noise_curve"] = noise
        if seed == 0:
            x, _ = next(iter(test))
            rec["raster"] = _raster(net, x.to(device), g(300))
        rec["probes"] = {"trained": layer_probes(net, train, test, train_cfg.trials, g(500))}
        if "random" in s.methods:
            ctrl = untrained_control(net_cfg, seed, device, train, g(402))
            rec["probes"]["control"] = layer_probes(ctrl, train, test, train_cfg.trials, g(501))
            c_acc = m["control_accuracy"]
            rec["control"] = {"accuracy": {mode: c_acc[mode] for mode in BENCH_MODES},
                              "layer_rates": m["control_layer_rates"],
                              "ops": {"energy": measure(ctrl, train_cfg.trials, g(400))[1],
                                      "deterministic": measure(ctrl, 1, g(401), True)[1]}}
        seeds_out.append(rec)
    return {"seeds": seeds_out, "network": net_cfg.to_dict(), "train_config": asdict(train_cfg),
            "passes": _network_passes(train_cfg, net), "trials": train_cfg.trials}


def _network_passes(train_cfg: TrainConfig, net: SpikingNet) -> int:
    """Passes of the training set through the network: one per layer epoch (per layer in greedy
    mode), plus the readout's: one to cache a linear head's features, or one per epoch for a
    spiking head."""
    layer = train_cfg.epochs * (1 if train_cfg.schedule == "simultaneous" else len(net.layers))
    readout = min(train_cfg.readout_epochs, 1) if net.head.kind == "linear" else train_cfg.readout_epochs
    return layer + readout


def _run_baseline(method: str, s: BenchSettings, splits: Splits, device: torch.device,
                  models: list[CostModel]) -> dict[str, Any]:
    from .baselines import FFConfig, select_bptt, train_bptt, train_ff, train_linear

    net_cfg = s.network_config(splits)
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    out: dict[str, Any] = {"trials": 1}  # passes per inference
    if method == "bptt":
        if s.baseline_epochs is None:
            sel = select_bptt(net_cfg, splits.train, s.bptt_lrs, s.bptt_epochs, holdout=s.val_fraction,
                              split_seed=s.split_seed, batch_size=s.batch_size, device=device)
            config, out["selection"] = BPTTConfig(epochs=s.bptt_epochs, lr=sel["lr"]), sel
        else:
            config = BPTTConfig(epochs=s.baseline_epochs, lr=s.bptt_lr)
        out["config"] = asdict(config)
    elif method == "ff":
        ff = FFConfig() if s.baseline_epochs is None else replace(FFConfig(), epochs=s.baseline_epochs)
        out["config"] = asdict(ff)
        out["trials"] = 1 if ff.predict == "head" else net_cfg.n_classes  # a neutral pass, or one per label
    seeds_out = []
    for seed in tqdm(range(1 if method == "linear" else s.seeds), desc=f"{method} seeds", dynamic_ncols=True):
        train = (make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0) if method == "linear"
                 else make_loader(splits.train, s.batch_size, shuffle=True, seed=seed))
        gen = seeded_generators(seed, device)["init"]
        if method == "bptt":
            res = train_bptt(net_cfg, config, train, test, generator=gen, device=device, input_ops=s.input_ops)
        elif method == "ff":
            res = train_ff(net_cfg, ff, train, test, generator=gen, device=device, input_ops=s.input_ops)
        else:  # deterministic given the data: one fit stands for every seed
            res = train_linear(train, test, net_cfg.n_classes)
        seeds_out.append({"seed": seed, "accuracy": res.accuracy, "train_seconds": res.train_seconds,
                          "ops": res.ops.to_dict(models), "history": res.history})
    out.update(seeds=seeds_out, passes=res.passes)
    return out


def _settings_key(s: BenchSettings) -> dict[str, Any]:
    """The settings that decide a method's raw results (not which methods run, nor process isolation)."""
    d = asdict(s)
    for k in ("methods", "isolate"):
        d.pop(k)
    return json.loads(json.dumps(d))


def run_method(method: str, settings: BenchSettings) -> dict[str, Any]:
    """Run one method (``random`` runs inside ``spikeff``) for all seeds; returns raw per-seed results."""
    s = settings.resolved()
    device = torch.device(s.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    splits = s.splits()
    models = [get_cost_model(n) for n in s.cost_models]
    t0 = time.perf_counter()
    if method == "spikeff":
        out = _run_spikeff(s, splits, device, models)
    elif method in ("bptt", "ff", "linear"):
        out = _run_baseline(method, s, splits, device, models)
    else:
        raise ValueError(f"run_method runs {[m for m in METHODS if m != 'random']} ('random' runs inside "
                         f"'spikeff'), got {method!r}")
    out.update(method=method, wall_seconds=time.perf_counter() - t0, peak_memory_mib=_peak_memory_mib(device),
               isolated=settings.isolate, n_train=len(splits.train), n_test=len(splits.test),
               time_bins=splits.n_time_bins, test_split=splits.test_name, frame_shape=list(splits.frame_shape),
               settings=_settings_key(s), **git_commit())
    return out


# ----------------------------------------------------------------------------- aggregation


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``p`` observed on ``n`` samples."""
    if n < 1:
        raise ValueError(f"a Wilson interval needs n >= 1, got {n}")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = [float(x) for x in values]
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": mean, "std": std, "median": statistics.median(v), "min": min(v), "max": max(v), "per_seed": v}


def _accuracy(values: Sequence[float], n_test: int) -> dict[str, Any]:
    """Seed statistics, plus the Wilson interval of the median on the ``n_test`` test samples."""
    st = _stats(values)
    return {**st, "ci95": list(wilson_interval(st["median"], n_test)), "n_test": n_test}


def _layer_means(ops: list[dict[str, Any]], key: str) -> list[float | None]:
    cols = zip(*[o.get(key) or [] for o in ops])
    return [None if None in col else _stats(col)["mean"] for col in cols]


def _mode_entry(accs: list[float], ops: list[dict[str, Any]], models: list[str], n_test: int) -> dict[str, Any]:
    return {
        "accuracy": _accuracy(accs, n_test),
        "synops_per_inference": _stats([o["total_synops"] for o in ops])["mean"],
        "synops_unfused_per_inference": _stats([o.get("total_synops_unfused", o["total_synops"]) for o in ops])["mean"],
        "macs_per_inference": _stats([o["total_macs"] for o in ops])["mean"],
        "random_draws_per_inference": _stats([o["random_draws"] for o in ops])["mean"],
        "neuron_updates_per_inference": _stats([o["total_neuron_updates"] for o in ops])["mean"],
        "per_stage": {k: _layer_means(ops, k) for k in ("spikes", "synops", "synops_unfused", "connections",
                                                        "spikes_per_synapse", "activation_sparsity")},
        "energy_pj_per_inference": {m: _stats([o["energy_pj"][m] for o in ops])["mean"] for m in models},
        "energy_pj_std": {m: _stats([o["energy_pj"][m] for o in ops])["std"] for m in models},
    }


# Forward passes with a gradient per training input and step (spikeff: its n trials). FF's mining passes are
# not counted (they run without gradient).
TRAIN_TRIALS = {"bptt": 1, "linear": 1, "ff": 2}


def _method_entry(raw: dict[str, Any], models: list[str], control: bool = False) -> dict[str, Any]:
    seeds, n_test = raw["seeds"], raw["n_test"]
    n_train, passes = raw["n_train"], raw["passes"]
    if raw["method"] == "spikeff":
        src = [r["control"] if control else r for r in seeds]
        modes = {mode: _mode_entry([r["accuracy"][mode] for r in src], [r["ops"][mode] for r in src], models, n_test)
                 for mode in BENCH_MODES}
        entry: dict[str, Any] = {"primary_mode": "energy", **modes["energy"], "readout_modes": modes,
                                 "trials": raw["trials"]}
    else:
        entry = {**_mode_entry([r["accuracy"] for r in seeds], [r["ops"] for r in seeds], models, n_test),
                 "trials": raw["trials"]}
        entry.update({k: raw[k] for k in ("selection", "config") if k in raw})
    if control:
        entry.update(train_seconds=None, samples_per_second=None, trial_samples_per_second=None,
                     note="readout fitted on untrained layers inside the spikeff run (same readout fit); "
                          "not timed separately; peak memory is the spikeff process's")
    else:
        secs = _stats([r["train_seconds"] for r in seeds])
        sps = n_train * passes / secs["mean"]
        per_input = TRAIN_TRIALS.get(raw["method"], raw["trials"])
        entry.update(train_seconds=secs["mean"], train_seconds_detail=secs, samples_per_second=sps,
                     trial_samples_per_second=sps * per_input, passes_over_train_set=passes)
    entry.update(peak_memory_mib=raw["peak_memory_mib"], peak_memory_isolated=raw["isolated"],
                 wall_seconds_all_seeds=raw["wall_seconds"], commit=raw.get("commit"))
    return entry


def _curve(seeds: list[dict[str, Any]], key: str, models: list[str], n_test: int) -> dict[str, Any]:
    xs = sorted(seeds[0][key], key=float)
    out: dict[str, Any] = {"x": [float(x) for x in xs]}
    out["energy"] = [_accuracy([r[key][x]["accuracy"] for r in seeds], n_test) for x in xs]
    out["energy_pj_per_inference"] = {m: [_stats([r[key][x]["ops"]["energy_pj"][m] for r in seeds])["mean"]
                                          for x in xs] for m in models}
    out["synops_per_inference"] = [_stats([r[key][x]["ops"]["total_synops"] for r in seeds])["mean"] for x in xs]
    return out


FRONTIER_TRIALS = (1, 2, 4, 8)


def _frontier(trials_curve: dict[str, Any] | None, methods: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """Operating points (accuracy with its interval, energy per cost model) and the cheapest spikeff
    point that matches BPTT's median accuracy under each cost model."""
    points: list[dict[str, Any]] = []

    def add(name: str, family: str, acc: dict[str, Any], energy: dict[str, float], synops: float) -> None:
        points.append({"name": name, "family": family, "accuracy": acc, "energy_pj": energy, "synops": synops})

    c = trials_curve or {"x": []}
    for i, x in enumerate(c["x"]):
        if int(x) in FRONTIER_TRIALS:
            add(f"spikeff n={int(x)}", "spikeff", c["energy"][i],
                {m: c["energy_pj_per_inference"][m][i] for m in models}, c["synops_per_inference"][i])
    for name, e in methods.items():
        modes = e.get("readout_modes", {"": e})
        for mode, m_e in modes.items():
            if name == "spikeff" and mode == "energy":
                continue  # already on the trials curve
            label = name if not mode else f"{name} {'n=' + str(e['trials']) if mode == 'energy' else mode}"
            add(label, "spikeff" if name == "spikeff" else name, m_e["accuracy"], m_e["energy_pj_per_inference"],
                m_e["synops_per_inference"])
    matched: dict[str, Any] = {}
    ref = next((p for p in points if p["name"] == "bptt"), None)
    if ref is not None:
        target = ref["accuracy"]["median"]
        for m in models:
            own = sorted((p for p in points if p["family"] == "spikeff"), key=lambda p: p["energy_pj"][m])
            hit = next((p for p in own if p["accuracy"]["median"] >= target), None)
            basis = "median at or above BPTT's"
            if hit is None:
                hit = next((p for p in own if p["accuracy"]["ci95"][1] >= target), None)
                basis = "within noise: BPTT's median inside its 95 % interval"
            matched[m] = None if hit is None else {
                "point": hit["name"], "basis": basis, "accuracy": hit["accuracy"]["median"], "bptt_accuracy": target,
                "energy_pj": hit["energy_pj"][m], "bptt_energy_pj": ref["energy_pj"][m],
                "energy_vs_bptt": hit["energy_pj"][m] / ref["energy_pj"][m]}
    return {"points": points, "matched_bptt": matched}


def _ed_history(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    hist = [r["history"] for r in seeds]
    layers = sorted({k.split("/")[0] for h in hist for rec in h for k in rec if k.startswith("layer")},
                    key=lambda n: int(n[5:]))
    out: dict[str, Any] = {"epoch": [rec["epoch"] for rec in hist[0]]}
    for layer in layers:
        out[layer] = {}
        for term in ("consistency", "diversity"):
            key = f"{layer}/ed_{term}"
            if all(key in rec for h in hist for rec in h):
                st = [_stats([h[e][key] for h in hist]) for e in range(len(hist[0]))]
                out[layer][term] = {"mean": [v["mean"] for v in st], "std": [v["std"] for v in st]}
    return out


def _probes(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Linear-probe accuracy per representation (input, layer 1, ...): mean and std over seeds."""
    out: dict[str, Any] = {"method": "logistic regression on the input's event counts and on each layer's counts "
                                     "(averaged over the trials), C cross-validated on the training split"}
    for net in ("trained", "control"):
        runs = [r["probes"][net] for r in seeds if net in r.get("probes", {})]
        if runs:
            st = [_stats(list(v)) for v in zip(*runs)]
            out[net] = {"mean": [v["mean"] for v in st], "std": [v["std"] for v in st]}
    return out


def build_report(raw: dict[str, dict[str, Any]], settings: BenchSettings, command: str) -> dict[str, Any]:
    """The report dict from the raw per-method results of :func:`run_method`."""
    s = settings.resolved()
    models = list(s.cost_models)
    first = next(iter(raw.values()))
    methods = {name: _method_entry(raw["spikeff" if name == "random" else name], models, control=name == "random")
               for name in METHODS if name in s.methods}
    report: dict[str, Any] = {
        "dataset": s.dataset,
        "device": str(torch.device(s.device)),
        "device_name": device_name(s.device),
        **git_commit(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "data": {k: first[k] for k in ("n_train", "n_test", "time_bins", "test_split", "frame_shape")},
        "cost_models": {n: get_cost_model(n).to_dict() for n in models},
        "methods": methods,
        "trials_curve": None,
        "noise_curve": None,
        "ed_history": None,
        "probes": None,
    }
    if "spikeff" in raw:
        sf = raw["spikeff"]
        report["network"], report["train_config"] = sf["network"], sf["train_config"]
        n_test = sf["n_test"]
        report["trials_curve"] = {**_curve(sf["seeds"], "trials_curve", models, n_test),
                                  "note": "the trained nets evaluated with n trials in energy mode (training used "
                                          f"{sf['trials']})"}
        report["noise_curve"] = {**_curve(sf["seeds"], "noise_curve", models, n_test),
                                 "method": "evaluated at each escape-noise temperature delta without retraining "
                                           f"(trained at delta={sf['network']['lif']['delta']}), "
                                           f"{sf['trials']} trials"}
        report["ed_history"] = _ed_history(sf["seeds"])
        report["probes"] = _probes(sf["seeds"])
    report["frontier"] = _frontier(report["trials_curve"], methods, models)
    report["notes"] = NOTES
    return report


NOTES = [
    "Accuracy: median over seeds on the test split, with the 95 % Wilson interval of that median on the n test "
    "samples and the seeds' range. Two methods whose intervals overlap are level within noise. linear is "
    "deterministic given the data and is fitted once.",
    "Op counts are per inference (one test input, all of its trials), averaged over the test split. Synaptic ops "
    "= input spikes x fan-out on the op that runs: a conv followed by its average pool runs as one stride-2 conv "
    "(kernel k + 1), edges exact; the stride-1 count that papers use is kept as synops_unfused. "
    "spikes_per_synapse = synops / synapses of the unrolled op (a dense net uses each weight T times).",
    "First layer: with input_ops='events' each input event is one spike (event count x fan-out ACs); with "
    "'dense' it is a frame convolution counted as MACs. spikeff's first synaptic op runs once for all trials "
    "unless --input-per-trial (hardware that runs each trial separately).",
    "Linear readout of spike counts: each top-layer spike adds one weight column (n_classes ACs); scaling, bias "
    "and score are n_classes MACs per trial. linear: each input event adds one weight column.",
    "Neuron updates = neurons x T x trials; a stochastic neuron draws one random number per update, priced by "
    "each cost model's random_draw_pj (see cost_models for the source or assumption).",
    "bptt: the learning rate is chosen on a held-out share of the training split over a fixed cosine budget "
    "(selection.curves shows its held-out accuracy per epoch), then trained on the whole training split. "
    "--baseline-epochs skips the choice (quick runs). BPTT and FF use deterministic LIF neurons.",
    "samples_per_second = training inputs x passes through the network / train_seconds (per input; spikeff: "
    "layer epochs, plus one pass that caches a linear head's features or one per readout epoch for a spiking "
    "head; train_seconds includes the readout fit). trial_samples_per_second multiplies by the forward passes "
    "per input (spikeff: n trials; FF: its positive and negative passes; BPTT and linear: 1).",
    "spikeff's and random's accuracies are train_and_evaluate's; the op counts, the trials curve, the frontier's "
    "spikeff points and the noise curve come from separate evaluation passes over the same test split with their "
    "own seeded noise, so the same setting can differ by a few test samples between them.",
    "The energy mode of a head trained on energy scores is reported; its average-mode score is not (that head "
    "was not trained for it). deterministic: one noise-free trial through the same head.",
    "Wall-clock timings depend on the load of the machine; on a shared CPU they are noisy. Peak memory: CUDA max "
    "allocated, or on CPU the process peak RSS; with isolation each method runs in a fresh process; random "
    "shares spikeff's process.",
]


# ----------------------------------------------------------------------------- outputs


def _fmt_e(pj: float) -> str:
    return f"{pj / 1e6:.3g} uJ" if pj >= 1e6 else f"{pj / 1e3:.3g} nJ"


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, e in report["methods"].items():
        if "readout_modes" in e:
            rows += [(f"{name}/{mode}", {**e, **e["readout_modes"][mode]}) for mode in BENCH_MODES]
        else:
            rows.append((name, e))
    return rows


def _fmt_acc(a: dict[str, Any]) -> str:
    lo, hi = a["ci95"]
    spread = f", seeds {a['min']:.3f}-{a['max']:.3f}" if len(a["per_seed"]) > 1 else ""
    return f"{a['median']:.3f} [{lo:.3f}, {hi:.3f}]{spread}"


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])


def summary_table(report: dict[str, Any], markdown: bool = False) -> str:
    """One row per method (and readout mode): accuracy with its interval, ops, energy, cost of training."""
    models = list(report["cost_models"])
    head = ["method", "accuracy [95 % CI]", "synops/inf", *[f"E {m}" for m in models], "train s",
            "inputs/s", "trial-samples/s", "peak MiB"]
    rows = []
    for name, e in _rows(report):
        opt = lambda k, f, e=e: "-" if e[k] is None else format(e[k], f)  # noqa: E731
        rows.append([name, _fmt_acc(e["accuracy"]), f"{e['synops_per_inference']:.3g}",
                     *[_fmt_e(e["energy_pj_per_inference"][m]) for m in models],
                     opt("train_seconds", ".1f"), opt("samples_per_second", ".1f"),
                     opt("trial_samples_per_second", ".1f"), f"{e['peak_memory_mib']:.0f}"])
    return _table(head, rows, markdown)


def frontier_table(report: dict[str, Any], markdown: bool = False) -> str:
    """The energy-accuracy operating points, cheapest first under the first cost model."""
    models = list(report["cost_models"])
    points = sorted(report["frontier"]["points"], key=lambda p: p["energy_pj"][models[0]])
    head = ["operating point", "accuracy [95 % CI]", "synops/inf", *[f"E {m}" for m in models]]
    rows = [[p["name"], _fmt_acc(p["accuracy"]), f"{p['synops']:.3g}", *[_fmt_e(p["energy_pj"][m]) for m in models]]
            for p in points]
    return _table(head, rows, markdown)


def matched_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per cost model: the cheapest spikeff point that matches BPTT, and its energy ratio."""
    out = []
    for m, hit in report["frontier"]["matched_bptt"].items():
        if hit is None:
            out.append(f"{m}: no spikeff operating point reaches BPTT's median accuracy, even within noise.")
        else:
            out.append(f"{m}: {hit['point']} ({hit['accuracy']:.3f} vs BPTT {hit['bptt_accuracy']:.3f}; "
                       f"{hit['basis']}) costs {_fmt_e(hit['energy_pj'])} per inference, "
                       f"{hit['energy_vs_bptt']:.2f}x BPTT's {_fmt_e(hit['bptt_energy_pj'])}.")
    return out


def layer_table(report: dict[str, Any], markdown: bool = False) -> str:
    """Per stage (layers, then the head): synops, spikes per synapse per inference, activation sparsity."""
    rows = []
    for name, e in _rows(report):
        st = e["per_stage"]
        for i, syn in enumerate(st["synops"]):
            sps, sp = st["spikes_per_synapse"][i], (st["activation_sparsity"] + [None] * len(st["synops"]))[i]
            stage = "head" if i >= len(st["activation_sparsity"]) else f"layer {i + 1}"
            rows.append([name, stage, f"{syn:.3g}", f"{st['synops_unfused'][i]:.3g}",
                         "-" if sps is None else f"{sps:.3g}", "-" if sp is None else f"{sp:.3f}"])
    return _table(["method", "stage", "synops", "synops unfused", "spikes/synapse", "sparsity"], rows, markdown)


def _plots(report: dict[str, Any], raster: dict[str, Any] | None, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figs: dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs[name.removesuffix(".png")] = name

    def ci(a: dict[str, Any]) -> list[list[float]]:
        return [[a["median"] - a["ci95"][0]], [a["ci95"][1] - a["median"]]]

    models = list(report["cost_models"])
    fr = report["frontier"]["points"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        curve = sorted((p for p in fr if p["name"].startswith("spikeff n=")), key=lambda p: p["energy_pj"][m])
        if curve:
            ax.plot([p["energy_pj"][m] / 1e3 for p in curve], [p["accuracy"]["median"] for p in curve], "-",
                    color="C0", alpha=0.5)
        for i, p in enumerate(fr):
            ax.errorbar(p["energy_pj"][m] / 1e3, p["accuracy"]["median"], yerr=ci(p["accuracy"]), fmt="o",
                        capsize=3, color="C0" if p["family"] == "spikeff" else f"C{i % 9 + 1}", label=p["name"])
            ax.annotate(p["name"], (p["energy_pj"][m] / 1e3, p["accuracy"]["median"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel=f"energy per inference (nJ, {m})", ylabel="test accuracy (median, 95 % CI)",
               title=m)
        ax.grid(alpha=0.3)
    save(fig, "frontier.png")

    sel = report["methods"].get("bptt", {}).get("selection")
    if sel:
        fig, ax = plt.subplots(figsize=(5, 4))
        for c in sel["curves"].values():
            ax.plot(range(1, len(c["holdout_accuracy"]) + 1), c["holdout_accuracy"], marker=".",
                    label=f"lr {c['lr']:g}" + (" (chosen)" if c["lr"] == sel["lr"] else ""))
        ax.set(xlabel="epoch", ylabel=f"held-out accuracy ({sel['n_holdout']} training samples)",
               title="BPTT: learning-rate choice on the training split")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "bptt_selection.png")

    for key, xlabel, fname in (("trials_curve", "trials n", "accuracy_vs_trials.png"),
                               ("noise_curve", "escape-noise temperature delta", "accuracy_vs_noise.png")):
        c = report.get(key)
        if not c:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        med = [a["median"] for a in c["energy"]]
        ax.errorbar(c["x"], med, yerr=[[m - a["ci95"][0] for m, a in zip(med, c["energy"])],
                                       [a["ci95"][1] - m for m, a in zip(med, c["energy"])]],
                    marker="o", capsize=3, label="spikeff energy mode")
        if key == "trials_curve":
            ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, ylabel="test accuracy (median, 95 % CI)", title=f"{report['dataset']}: {xlabel}")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, fname)

    ed = report.get("ed_history")
    if ed and ed.get("epoch"):
        layers = [k for k in ed if k.startswith("layer")]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, term in zip(axes, ("consistency", "diversity")):
            for layer in layers:
                if term in ed[layer]:
                    ax.errorbar(ed["epoch"], ed[layer][term]["mean"], yerr=ed[layer][term]["std"], marker="o",
                                capsize=3, label=layer)
            ax.set(xlabel="epoch", ylabel=f"ED {term}", title=f"ED {term} per layer (mean over batches)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        save(fig, "ed_per_layer.png")

    pr = report.get("probes")
    if pr and "trained" in pr:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = ["input"] + [f"layer {k}" for k in range(1, len(pr["trained"]["mean"]))]
        for net in ("trained", "control"):
            if net in pr:
                ax.errorbar(range(len(names)), pr[net]["mean"], yerr=pr[net]["std"], marker="o", capsize=3,
                            label=f"spikeff {net}" if net == "trained" else "untrained control")
        ax.set_xticks(range(len(names)), names)
        ax.set(ylabel="linear probe accuracy (test)", title=f"{report['dataset']}: linear probe per layer")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "probes_per_layer.png")

    if raster:
        fig, axes = plt.subplots(len(raster), 1, figsize=(7, 1.8 * len(raster)), sharex=True)
        for ax, (name, r) in zip(axes, raster.items()):
            ev = torch.tensor(r["events"], dtype=torch.float32).reshape(-1, 2)
            ax.scatter(ev[:, 0], ev[:, 1], s=2, marker="|", color="k")
            ax.set(ylabel=f"{name}\n({r['neurons']})", ylim=(-0.5, r["neurons"] - 0.5))
        axes[-1].set_xlabel("time bin")
        axes[0].set_title("spikeff: one test sample, one trial (seed 0)")
        save(fig, "spike_raster.png")
    return figs


def _markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    d = report["data"]
    lines = [
        f"# spikeff-bench: {report['dataset']}",
        "",
        f"- command: `{report['command']}`",
        f"- commit: `{report['commit']}`" + (" (with uncommitted changes)" if report.get("dirty") else ""),
        f"- date: {report['date']}",
        "- each method ran at commit: " + ", ".join(f"{k} `{e.get('commit')}`" for k, e in report["methods"].items()),
        f"- device: {report['device']} — {report['device_name']}",
        f"- data: {d['n_train']} train / {d['n_test']} {d['test_split']} samples, T={d['time_bins']}, "
        f"frames {d['frame_shape']}",
        f"- seeds: {s['seeds']}; network: {report.get('network', {}).get('conv_channels')} conv channels, "
        f"hidden {report.get('network', {}).get('hidden')}; "
        f"spikeff trials {report.get('train_config', {}).get('trials')}, "
        f"epochs {report.get('train_config', {}).get('epochs')} "
        f"+ readout {report.get('train_config', {}).get('readout_epochs')}",
        "",
        "## Results",
        "",
        f"Accuracy: median over seeds [95 % Wilson interval on {d['n_test']} samples], seeds' range. "
        "E = energy per inference under each cost model (see `report.json` → `cost_models`). inputs/s counts "
        "training inputs; trial-samples/s counts each noisy trial (or FF pass) as a sample.",
        "",
        summary_table(report, markdown=True),
        "",
    ]
    if report["frontier"]["points"]:
        lines += ["## Energy-accuracy frontier", "", "Cheapest first under the first cost model.", "",
                  frontier_table(report, markdown=True), ""]
        if report["frontier"]["matched_bptt"]:
            lines += ["Matched-accuracy operating point (the cheapest spikeff point that reaches BPTT's median "
                      "accuracy):", ""] + [f"- {x}" for x in matched_lines(report)] + [""]
    lines += ["## Per layer", "", "Mean over seeds and test inputs. spikes/synapse = synops / synapses of the "
              "unrolled executed op (a dense net uses each weight T times per inference); sparsity = 1 - "
              "spikes / neuron updates.", "", layer_table(report, markdown=True), ""]
    sel = report["methods"].get("bptt", {}).get("selection")
    if sel:
        lines += ["## BPTT learning-rate choice", "",
                  f"On {sel['n_holdout']} held-out training samples (fit on {sel['n_fit']}), {sel['epochs']} epochs "
                  f"of cosine decay; rule: {sel['rule']}. Chosen: lr {sel['lr']:g}, "
                  f"{'converged' if sel['converged'] else 'NOT converged'}.", "",
                  "| lr | held-out accuracy, last 5 epochs | mean, last quarter | converged |", "|---|---|---|---|"]
        lines += [f"| {c['lr']:g} | {', '.join(f'{a:.3f}' for a in c['holdout_accuracy'][-5:])} | "
                  f"{c['last_quarter']:.3f} | {c['converged']} |" for c in sel["curves"].values()]
        lines.append("")
    model = next(iter(report["cost_models"]))
    for key, title, x_name in (("trials_curve", "Accuracy vs trials (spikeff)", "trials n"),
                               ("noise_curve", "Accuracy vs noise (spikeff)", "delta")):
        c = report.get(key)
        if c:
            lines += [f"## {title}", "", c.get("method", c.get("note", "")), "",
                      f"| {x_name} | energy mode [95 % CI] | synops/inf | E {model} |", "|---|---|---|---|"]
            lines += [f"| {x:g} | {_fmt_acc(a)} | {so:.3g} | {_fmt_e(en)} |"
                      for x, a, so, en in zip(c["x"], c["energy"], c["synops_per_inference"],
                                              c["energy_pj_per_inference"][model])]
            lines.append("")
    pr = report.get("probes")
    if pr and "trained" in pr:
        n = len(pr["trained"]["mean"])
        lines += ["## Linear probe per layer (spikeff)", "", pr["method"], "",
                  "| net | input | " + " | ".join(f"layer {k}" for k in range(1, n)) + " |", "|---" * (n + 1) + "|"]
        lines += [f"| {net} | " + " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in zip(pr[net]["mean"], pr[net]["std"]))
                  + " |" for net in ("trained", "control") if net in pr]
        lines.append("")
    if report.get("figures"):
        lines += ["## Figures", ""] + [f"- [{k}]({v})" for k, v in report["figures"].items()] + [""]
    lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


README_BLOCK = re.compile(r"(<!-- bench: (?P<dir>[^ ]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)


def readme_block(report: dict[str, Any]) -> str:
    """The README's view of a report: the summary table, the frontier and the matched operating point."""
    d = report["data"]
    lines = [f"`{report['command']}` (commit `{report['commit']}`, {report['date'][:10]}, {report['device_name']}; "
             f"{d['n_train']} train / {d['n_test']} {d['test_split']} samples). Accuracy: median over seeds "
             "[95 % Wilson interval], seeds' range; inputs/s counts training inputs, trial-samples/s each noisy "
             "trial.", "", summary_table(report, markdown=True), ""]
    if report["frontier"]["points"]:
        lines += ["Energy-accuracy frontier (cheapest first):", "", frontier_table(report, markdown=True), ""]
        lines += [f"- {x}" for x in matched_lines(report)] + [""]
    return "\n".join(lines)


def update_readme(readme: str | Path) -> list[str]:
    """Regenerate every ``<!-- bench: DIR -->`` ... ``<!-- /bench -->`` block of ``readme`` from
    ``DIR/report.json`` (relative to the README's folder); returns the folders used."""
    readme = Path(readme)
    text, used = readme.read_text(), []

    def fill(m: re.Match) -> str:
        path = readme.parent / m["dir"] / "report.json"
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{readme}: the block for {m['dir']} needs a readable {path} ({e})") from None
        used.append(m["dir"])
        return m.group(1) + readme_block(report) + m.group(4)

    new = README_BLOCK.sub(fill, text)
    atomic_write(readme, lambda f: f.write(new), mode="w")
    return used


def write_outputs(report: dict[str, Any], raw: dict[str, dict[str, Any]], out: Path) -> None:
    """Write the figures, ``report.json`` and ``report.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    raster = raw.get("spikeff", {}).get("seeds", [{}])[0].get("raster")
    report["figures"] = _plots(report, raster, out)
    report["per_seed"] = {name: [{k: v for k, v in r.items() if k not in ("raster", "trials_curve", "noise_curve")}
                                 for r in res["seeds"]] for name, res in raw.items()}
    write_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda f: f.write(_markdown(report)), mode="w")


# ----------------------------------------------------------------------------- driver


def _run_isolated(method: str, settings: BenchSettings) -> dict[str, Any]:
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_method, method, settings).result()


def _raw_path(out: Path, method: str) -> Path:
    return out / f"raw_{method}.json"


def _load_raw(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The saved raw results at ``path`` if they were run with the settings ``key``, else None."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable raw result ({e}); move it away or run without --resume") from None
    return raw if raw.get("settings") == key else None


def run_bench(settings: BenchSettings, out: str | Path, command: str = "", *, resume: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Run every method, write the outputs to ``out`` and return the report.

    Each method's raw results are written to ``raw_<method>.json`` as soon as it finishes. With
    ``resume``, a method whose saved raw results match these settings is not run again. An ``out``
    that already holds results is refused unless ``resume`` or ``overwrite``.
    """
    out = Path(out)
    s = settings.resolved()
    if not (resume or overwrite) and out.is_dir() and (any(out.glob("raw_*.json")) or (out / "report.json").exists()):
        raise ValueError(f"{out} already holds bench results; pass --resume to reuse them or --overwrite to "
                         "replace them")
    out.mkdir(parents=True, exist_ok=True)
    s.splits()  # fail early on missing data, and build the frame cache once
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {s.device}: CUDA is not available on this machine")
    workers = [m for m in METHODS if m in s.methods and m != "random"]
    if "random" in s.methods and "spikeff" not in workers:
        workers.insert(0, "spikeff")
    key = _settings_key(s)
    raw: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(workers):
        saved = _load_raw(_raw_path(out, m), key) if resume else None
        tqdm.write(f"[{i + 1}/{len(workers)}] {m}" + (" (+ random control)" if m == "spikeff" and "random" in s.methods
                                                      else "") + (" (saved)" if saved else ""))
        if saved is not None and (m != "spikeff" or "random" not in s.methods or "control" in saved["seeds"][0]):
            raw[m] = saved
            continue
        raw[m] = _run_isolated(m, s) if s.isolate else run_method(m, s)
        write_json(_raw_path(out, m), raw[m])
    report = build_report(raw, s, command)
    write_outputs(report, raw, out)
    return report


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeff-bench", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    p.add_argument("--data-dir", default=None, help="tonic save_to root (default: $SPIKEFF_DATA or ./data)")
    p.add_argument("--cache-dir", default=None, help="frame cache (default: $SPIKEFF_CACHE or ~/.cache/spikeff)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..K-1 (default 3; --quick: 2)")
    p.add_argument("--trials", type=int, default=None, help="spikeff noisy trials n (default: the core's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quick", action="store_true",
                   help=f"small run: {', '.join(f'{k}={v}' for k, v in QUICK.items())} unless given")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="reuse the raw results in --out of methods run with the same settings")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    g = p.add_argument_group("sizes (defaults: the core's, or --quick's)")
    g.add_argument("--limit", type=int, default=None, help="at most this many samples per split")
    g.add_argument("--epochs", type=int, default=None, help="spikeff layer epochs")
    g.add_argument("--readout-epochs", type=int, default=None, help="spikeff head-only epochs")
    g.add_argument("--channels", type=_ints, default=None, help="conv channels per layer, e.g. 8,16")
    g.add_argument("--hidden", type=_ints, default=None, help="fully connected sizes after the convs")
    g.add_argument("--time-bins", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--split-seed", type=int, default=0, help="seed of the validation split and --limit")
    g.add_argument("--val-fraction", type=float, default=0.2)
    g.add_argument("--trials-curve", type=_ints, default=None, help=f"default {','.join(map(str, TRIALS_CURVE))}")
    g.add_argument("--noise-levels", type=_floats, default=None,
                   help=f"deltas, default {','.join(map(str, NOISE_LEVELS))}")
    g.add_argument("--input-ops", choices=("events", "dense"), default="events",
                   help="first-layer input: events as ACs (default) or dense frame MACs")
    g.add_argument("--cost-models", nargs="+", choices=sorted(COST_MODELS), default=list(COST_MODELS))
    g.add_argument("--baseline-epochs", type=int, default=None,
                   help="BPTT and FF epochs, with BPTT at --bptt-lr and no learning-rate choice (quick runs; "
                        "default: BPTT's choice over --bptt-lrs at --bptt-epochs, FF's own defaults)")
    g.add_argument("--bptt-lr", type=float, default=BPTTConfig.lr, help="BPTT's learning rate with --baseline-epochs")
    g.add_argument("--bptt-lrs", type=_floats, default=BPTT_LRS,
                   help=f"BPTT learning rates to choose from on a held-out share of the training split "
                        f"(default {','.join(map(str, BPTT_LRS))})")
    g.add_argument("--bptt-epochs", type=int, default=BPTTConfig.epochs, help="BPTT's cosine budget in epochs")
    g.add_argument("--input-per-trial", action="store_true",
                   help="charge spikeff's first-layer input events once per trial, not once per inference")
    g.add_argument("--no-isolate", action="store_true", help="run all methods in this process (peak memory is shared)")
    g.add_argument("--scan", choices=SCAN_BACKENDS, default="eager",
                   help="spikeff's LIF scan: eager (reference) or compiled (torch.compile); baselines are unaffected")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="spikeff's synaptic ops in fp32 or under bf16 autocast; baselines are unaffected")
    return p


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(
        dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
        methods=tuple(dict.fromkeys(args.methods)),
        seeds=args.seeds, trials=args.trials, device=args.device, quick=args.quick, limit=args.limit,
        epochs=args.epochs, readout_epochs=args.readout_epochs, channels=args.channels, hidden=args.hidden,
        time_bins=args.time_bins, batch_size=args.batch_size, split_seed=args.split_seed,
        val_fraction=args.val_fraction, trials_curve=args.trials_curve, noise_levels=args.noise_levels,
        input_ops=args.input_ops, cost_models=tuple(args.cost_models), baseline_epochs=args.baseline_epochs,
        bptt_lr=args.bptt_lr, bptt_lrs=args.bptt_lrs, bptt_epochs=args.bptt_epochs,
        input_per_trial=args.input_per_trial,
        isolate=not args.no_isolate, scan=args.scan, precision=args.precision,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        t0 = time.perf_counter()
        report = run_bench(settings, args.out, command=shlex.join(["spikeff-bench", *argv]), resume=args.resume,
                           overwrite=args.overwrite)
    except (DataError, TrainingError, ValueError, OSError, RuntimeError) as e:
        if os.environ.get("SPIKEFF_DEBUG"):
            raise
        print(f"spikeff-bench: error: {e}", file=sys.stderr)
        return 2
    print(f"\n{report['dataset']} ({report['data']['n_test']} {report['data']['test_split']} samples), "
          f"{report['device_name']}, {time.perf_counter() - t0:.0f}s")
    print(summary_table(report))
    print(f"\nwrote {args.out / 'report.json'}, {args.out / 'report.md'} and {len(report['figures'])} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
