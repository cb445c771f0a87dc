"""``spikeff-bench``: spikeff against BPTT (snntorch), Forward-Forward and untrained weights.

Every method sees the same data, split, time bins and layer shapes, in the same run:

* ``spikeff``: :func:`spikeff.experiment.train_and_evaluate`, reported in the three readout
  modes (energy, average, deterministic);
* ``random``: the untrained-weights control that ``train_and_evaluate`` computes alongside
  (same readout budget); it is not trained twice;
* ``bptt``: :mod:`spikeff.baselines.bptt`, end to end with snntorch;
* ``ff``: :mod:`spikeff.baselines.ff`, layer-local Forward-Forward.

Per method: test accuracy (mean, std and per seed; hyperparameters fixed, nothing selected
on the test split), op counts and energy per inference (:mod:`spikeff.energy`), training
wall time, throughput and peak memory (each method in a fresh process by default, so the
process high-water mark is its own). For spikeff also accuracy against the number of
trials and the noise level, and ED per layer over training.

Budget: the baselines get as many passes over the training set as spikeff's layer epochs
plus readout epochs. The noise curve evaluates the trained net at other ``delta`` without
retraining. Outputs in ``--out``: ``report.json``, ``report.md`` and PNG figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import math
import multiprocessing as mp
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .baselines import BPTTConfig, FFConfig
from .data import DATASETS, DataError, Splits, load_splits, make_loader
from .energy import COST_MODELS, CostModel, InputOps, OpCounts, count_ops, get_cost_model
from .experiment import EVAL_BATCH_SIZE, seeded_generators, train_and_evaluate, untrained_control
from .fileio import atomic_write, write_json
from .network import PRECISIONS, NetworkConfig, Precision, SpikingNet
from .neurons import SCAN_BACKENDS, ScanBackend
from .readout import MODES, scores
from .probe import layer_probes
from .trainer import TrainConfig, TrainingError

__all__ = ["METHODS", "BenchSettings", "measure_spikeff", "run_method", "run_bench", "write_outputs", "main"]

METHODS = ("spikeff", "bptt", "ff", "random")
TRIALS_CURVE = (1, 2, 4, 8, 16)
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4)
QUICK = {"limit": 128, "epochs": 1, "readout_epochs": 1, "channels": (8, 16), "seeds": 2,
         "trials_curve": (1, 4, 16), "noise_levels": (0.0, 0.1, 0.4)}


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
    ff_lr: float = FFConfig.lr
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

    def resolved(self) -> "BenchSettings":
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
) -> tuple[dict[str, float], OpCounts]:
    """Accuracy per readout mode and op counts per inference of a :class:`SpikingNet`.

    Stochastic: ``trials`` noisy trials, modes ``energy`` and ``average``; deterministic:
    one noise-free trial, mode ``deterministic``.
    """
    net.eval()
    device = next(net.parameters()).device
    n = 1 if deterministic else trials
    lif = net.config.lif.deterministic() if deterministic else net.config.lif
    modes = ("deterministic",) if deterministic else ("energy", "average")
    correct = {m: 0 for m in modes}
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
        for m in modes:
            correct[m] += (scores(z, m).argmax(1) == y).sum().item()
        ops.append(count_ops(x, spikes, [layer.synapse for layer in net.layers], trials=n, head=net.head.fc,
                             head_spikes=head_spikes, shared_input=True, input_ops=input_ops,
                             stochastic=lif.stochastic, pools=[layer.pool for layer in net.layers]))
        sizes.append(y.shape[0])
    if not sizes:
        raise TrainingError("the evaluation set is empty")
    total = sum(sizes)
    return {m: c / total for m, c in correct.items()}, OpCounts.mean(ops, sizes)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # a high-water mark of the whole process
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _ops_record(ops: OpCounts, models: Sequence[CostModel]) -> dict[str, Any]:
    return ops.to_dict(models)


def _raster(net: SpikingNet, x: Tensor, generator: torch.Generator) -> dict[str, Any]:
    """Spikes of one sample, one trial: input events and each layer, as (T, neurons) lists of indices."""
    with torch.no_grad():
        spikes = net.layer_outputs(x[:, :1], generator, 1)
    rows = [("input events", (x[:, 0] > 0).flatten(1))] + [(f"layer {i + 1}", s[:, 0].flatten(1) > 0)
                                                           for i, s in enumerate(spikes)]
    return {name: {"neurons": int(a.shape[1]), "events": a.nonzero().tolist()} for name, a in rows}


def _run_spikeff(s: BenchSettings, splits: Splits, device: torch.device, models: list[CostModel]) -> dict[str, Any]:
    net_cfg, train_cfg = s.network_config(splits), s.train_config()
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    curve = sorted(set(s.trials_curve) | {train_cfg.trials})
    lif0 = net_cfg.lif
    levels = sorted(set(s.noise_levels) | {lif0.delta})
    seeds_out = []
    for seed in tqdm(range(s.seeds), desc="spikeff seeds", dynamic_ncols=True):
        run = train_and_evaluate(splits, net_cfg, train_cfg, seed=seed, device=device, batch_size=s.batch_size,
                                 control="random" in s.methods)
        net, m = run.net, run.metrics
        g = lambda j: _gen(device, seed * 1000 + 100 + j)  # noqa: E731 -- measurement noise, apart from training's
        rec: dict[str, Any] = {"seed": seed, "accuracy": m["test_accuracy"], "train_seconds": m["train_seconds"],
                               "layer_rates": m["layer_rates"], "history": run.history}
        by_trials = {}
        for j, n in enumerate(tqdm(curve, desc="trials curve", leave=False, dynamic_ncols=True)):
            acc, ops = measure_spikeff(net, test, n, g(j), input_ops=s.input_ops)
            by_trials[n] = {"accuracy": acc, "ops": _ops_record(ops, models)}
        det_acc, det_ops = measure_spikeff(net, test, 1, g(50), deterministic=True, input_ops=s.input_ops)
        rec["ops"] = {"energy": by_trials[train_cfg.trials]["ops"], "average": by_trials[train_cfg.trials]["ops"],
                      "deterministic": _ops_record(det_ops, models)}
        rec["trials_curve"] = by_trials
        noise = {}
        try:
            for j, d in enumerate(tqdm(levels, desc="noise curve", leave=False, dynamic_ncols=True)):
                net.with_lif(replace(lif0, delta=d))
                acc, ops = measure_spikeff(net, test, train_cfg.trials, g(200 + j), input_ops=s.input_ops)
                noise[d] = {"accuracy": acc, "ops": _ops_record(ops, models)}
        finally:
            net.with_lif(lif0)
        rec["noise_curve"] = noise
        if seed == 0:
            x, _ = next(iter(test))
            rec["raster"] = _raster(net, x.to(device), g(300))
        train = make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0)
        rec["probes"] = {"trained": layer_probes(net, train, test, train_cfg.trials, g(500))}
        if "random" in s.methods:
            ctrl = untrained_control(net_cfg, seed, device, train, g(402))
            rec["probes"]["control"] = layer_probes(ctrl, train, test, train_cfg.trials, g(501))
            _, c_ops = measure_spikeff(ctrl, test, train_cfg.trials, g(400), input_ops=s.input_ops)
            _, c_det = measure_spikeff(ctrl, test, 1, g(401), deterministic=True, input_ops=s.input_ops)
            rec["control"] = {"accuracy": m["control_accuracy"], "layer_rates": m["control_layer_rates"],
                              "ops": {"energy": _ops_record(c_ops, models), "average": _ops_record(c_ops, models),
                                      "deterministic": _ops_record(c_det, models)}}
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
    from .baselines import train_bptt, train_ff

    net_cfg, train_cfg = s.network_config(splits), s.train_config()
    passes = train_cfg.epochs + train_cfg.readout_epochs if s.baseline_epochs is None else s.baseline_epochs
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    seeds_out = []
    for seed in tqdm(range(s.seeds), desc=f"{method} seeds", dynamic_ncols=True):
        train = make_loader(splits.train, s.batch_size, shuffle=True, seed=seed)
        gen = seeded_generators(seed, device)["init"]
        if method == "bptt":
            res = train_bptt(net_cfg, BPTTConfig(epochs=passes, lr=s.bptt_lr), train, test, generator=gen,
                             device=device, input_ops=s.input_ops)
        else:
            res = train_ff(net_cfg, FFConfig(epochs=passes, lr=s.ff_lr), train, test, generator=gen,
                           device=device, input_ops=s.input_ops)
        seeds_out.append({"seed": seed, "accuracy": res.accuracy, "train_seconds": res.train_seconds,
                          "ops": _ops_record(res.ops, models), "history": res.history})
    return {"seeds": seeds_out, "passes": passes, "trials": net_cfg.n_classes if method == "ff" else 1}


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
    elif method in ("bptt", "ff"):
        out = _run_baseline(method, s, splits, device, models)
    else:
        raise ValueError(f"run_method runs 'spikeff', 'bptt' or 'ff' ('random' runs inside 'spikeff'), got {method!r}")
    out.update(method=method, wall_seconds=time.perf_counter() - t0, peak_memory_mib=_peak_memory_mib(device),
               isolated=settings.isolate, n_train=len(splits.train), n_test=len(splits.test),
               time_bins=splits.n_time_bins, test_split=splits.test_name, frame_shape=list(splits.frame_shape))
    return out


# ----------------------------------------------------------------------------- aggregation


def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = [float(x) for x in values]
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": mean, "std": std, "per_seed": v}


def _mode_entry(accs: list[float], ops: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    return {
        "accuracy": _stats(accs),
        "synops_per_inference": _stats([o["total_synops"] for o in ops])["mean"],
        "macs_per_inference": _stats([o["total_macs"] for o in ops])["mean"],
        "spikes_per_layer": [_stats(col)["mean"] for col in zip(*[o["spikes"] for o in ops])],
        "synops_per_layer": [_stats(col)["mean"] for col in zip(*[o["synops"] for o in ops])],
        "neuron_updates_per_inference": _stats([o["total_neuron_updates"] for o in ops])["mean"],
        "energy_pj_per_inference": {m: _stats([o["energy_pj"][m] for o in ops])["mean"] for m in models},
        "energy_pj_std": {m: _stats([o["energy_pj"][m] for o in ops])["std"] for m in models},
    }


def _method_entry(raw: dict[str, Any], models: list[str], control: bool = False) -> dict[str, Any]:
    seeds = raw["seeds"]
    n_train, passes = raw["n_train"], raw["passes"]
    if raw["method"] == "spikeff":
        src = [r["control"] if control else r for r in seeds]
        modes = {mode: _mode_entry([r["accuracy"][mode] for r in src], [r["ops"][mode] for r in src], models)
                 for mode in MODES}
        entry: dict[str, Any] = {"primary_mode": "energy", **modes["energy"], "readout_modes": modes,
                                 "trials": raw["trials"]}
    else:
        entry = {**_mode_entry([r["accuracy"] for r in seeds], [r["ops"] for r in seeds], models),
                 "trials": raw["trials"]}
    if control:
        entry.update(train_seconds=None, samples_per_second=None, trial_samples_per_second=None,
                     note="readout fitted on untrained layers inside the spikeff run (same readout budget); "
                          "not timed separately; peak memory is the spikeff process's")
    else:
        secs = _stats([r["train_seconds"] for r in seeds])
        sps = n_train * passes / secs["mean"]
        entry.update(train_seconds=secs["mean"], train_seconds_detail=secs, samples_per_second=sps,
                     trial_samples_per_second=sps * (raw["trials"] if raw["method"] == "spikeff" else
                                                     2 if raw["method"] == "ff" else 1),
                     passes_over_train_set=passes)
    entry.update(peak_memory_mib=raw["peak_memory_mib"], peak_memory_isolated=raw["isolated"],
                 wall_seconds_all_seeds=raw["wall_seconds"])
    return entry


def _curve(seeds: list[dict[str, Any]], key: str, models: list[str]) -> dict[str, Any]:
    xs = sorted(seeds[0][key], key=float)
    out: dict[str, Any] = {"x": [float(x) for x in xs]}
    for mode in ("energy", "average"):
        st = [_stats([r[key][x]["accuracy"][mode] for r in seeds]) for x in xs]
        out[mode] = {"mean": [v["mean"] for v in st], "std": [v["std"] for v in st]}
    out["energy_pj_per_inference"] = {m: [_stats([r[key][x]["ops"]["energy_pj"][m] for r in seeds])["mean"]
                                          for x in xs] for m in models}
    out["synops_per_inference"] = [_stats([r[key][x]["ops"]["total_synops"] for r in seeds])["mean"] for x in xs]
    return out


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


def git_commit(repo: str | Path = ".") -> dict[str, Any]:
    """Short commit hash of ``repo`` and whether tracked files differ from it."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def device_name(device: str | torch.device) -> str:
    """GPU name, or the CPU model with the core count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def build_report(raw: dict[str, dict[str, Any]], settings: BenchSettings, command: str) -> dict[str, Any]:
    """The report dict from the raw per-method results of :func:`run_method`."""
    s = settings.resolved()
    models = list(s.cost_models)
    first = next(iter(raw.values()))
    methods: dict[str, Any] = {}
    for name in s.methods:
        if name == "random":
            methods[name] = _method_entry(raw["spikeff"], models, control=True)
        else:
            methods[name] = _method_entry(raw[name], models)
    report: dict[str, Any] = {
        "dataset": s.dataset,
        "device": str(torch.device(s.device)),
        "device_name": device_name(s.device),
        **git_commit(Path(__file__).resolve().parents[1]),
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
        report["trials_curve"] = {**_curve(sf["seeds"], "trials_curve", models),
                                  "note": "the trained nets evaluated with n trials (training used "
                                          f"{sf['trials']}); modes energy and average"}
        report["noise_curve"] = {**_curve(sf["seeds"], "noise_curve", models),
                                 "method": "evaluated at each escape-noise temperature delta without retraining "
                                           f"(trained at delta={sf['network']['lif']['delta']}), "
                                           f"{sf['trials']} trials"}
        report["ed_history"] = _ed_history(sf["seeds"])
        report["probes"] = _probes(sf["seeds"])
    report["notes"] = NOTES
    return report


NOTES = [
    "Op counts are per inference (one test input, all of its trials) and averaged over the test split.",
    "Synaptic ops = spikes x fan-out; conv fan-out is out_channels x covered output positions, edges counted "
    "exactly; AvgPool after a conv adds nothing (the ops are the conv's).",
    "First layer: with input_ops='events' each input event is one spike (event count x fan-out ACs); with "
    "'dense' the first layer is a frame convolution counted as MACs. In spikeff the first synaptic op runs "
    "once for all trials (shared input); FF's data synaptic op is shared by its n_classes label passes and its "
    "label channels are priced as one add per first-layer neuron, bin and pass.",
    "Linear readout of spike counts: each top-layer spike adds one weight column (n_classes ACs); scaling, bias "
    "and score are n_classes MACs per trial.",
    "Neuron updates = neurons x T x trials (FF: x n_classes label passes); stochastic neurons draw one random "
    "number per update (priced 0 in the presets).",
    "Baselines get as many passes over the training set as spikeff's layer epochs + readout epochs (unless "
    "--baseline-epochs); BPTT and FF "
    "use deterministic LIF neurons; hyperparameters are fixed, nothing is selected on the test split.",
    "samples_per_second = training samples x passes through the network / train_seconds (spikeff: layer epochs, "
    "plus one pass that caches a linear head's features or one per readout epoch for a spiking head; "
    "train_seconds includes the readout fit); trial_samples_per_second multiplies by the "
    "trials per sample (spikeff: n; FF: 2, positive and negative; BPTT: 1).",
    "spikeff's accuracy is train_and_evaluate's; its op counts, the trials curve and the noise curve come from "
    "separate evaluation passes over the same test split with their own seeded noise.",
    "Wall-clock timings depend on the load of the machine; on a shared CPU they are noisy.",
    "Peak memory: CUDA max allocated, or on CPU the process peak RSS (ru_maxrss, a high-water mark); with "
    "isolation each method runs in a fresh process. random shares spikeff's process.",
]


# ----------------------------------------------------------------------------- outputs


def _fmt_e(pj: float) -> str:
    return f"{pj / 1e6:.3g} uJ" if pj >= 1e6 else f"{pj / 1e3:.3g} nJ"


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, e in report["methods"].items():
        if "readout_modes" in e:
            rows += [(f"{name}/{mode}", {**e, **e["readout_modes"][mode]}) for mode in MODES]
        else:
            rows.append((name, e))
    return rows


def summary_table(report: dict[str, Any], markdown: bool = False) -> str:
    """One row per method (and readout mode)."""
    models = list(report["cost_models"])
    head = ["method", "accuracy", "synops/inf", *[f"E {m}" for m in models], "train s", "samples/s", "peak MiB"]
    rows = []
    for name, e in _rows(report):
        a = e["accuracy"]
        rows.append([name, f"{a['mean']:.3f} ± {a['std']:.3f}", f"{e['synops_per_inference']:.3g}",
                     *[_fmt_e(e["energy_pj_per_inference"][m]) for m in models],
                     "-" if e["train_seconds"] is None else f"{e['train_seconds']:.1f}",
                     "-" if e["samples_per_second"] is None else f"{e['samples_per_second']:.1f}",
                     f"{e['peak_memory_mib']:.0f}"])
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])


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

    models = list(report["cost_models"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        for name, e in _rows(report):
            ax.errorbar(e["energy_pj_per_inference"][m] / 1e3, e["accuracy"]["mean"], yerr=e["accuracy"]["std"],
                        xerr=e["energy_pj_std"][m] / 1e3, fmt="o", capsize=3, label=name)
        ax.set(xscale="log", xlabel=f"energy per inference (nJ, {m})", ylabel="test accuracy", title=m)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    save(fig, "accuracy_vs_energy.png")

    for key, xlabel, fname in (("trials_curve", "trials n", "accuracy_vs_trials.png"),
                               ("noise_curve", "escape-noise temperature delta", "accuracy_vs_noise.png")):
        c = report.get(key)
        if not c:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        for mode in ("energy", "average"):
            ax.errorbar(c["x"], c[mode]["mean"], yerr=c[mode]["std"], marker="o", capsize=3, label=f"spikeff {mode}")
        if key == "trials_curve":
            ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, ylabel="test accuracy", title=f"{report['dataset']}: {xlabel}")
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
        f"- device: {report['device']} — {report['device_name']}",
        f"- data: {d['n_train']} train / {d['n_test']} {d['test_split']} samples, T={d['time_bins']}, "
        f"frames {d['frame_shape']}",
        f"- seeds: {s['seeds']}; network: {report.get('network', {}).get('conv_channels')} conv channels, "
        f"hidden {report.get('network', {}).get('hidden')}; spikeff trials {report.get('train_config', {}).get('trials')}, "
        f"epochs {report.get('train_config', {}).get('epochs')} + readout {report.get('train_config', {}).get('readout_epochs')}",
        "",
        "## Results (mean ± std over seeds)",
        "",
        summary_table(report, markdown=True),
        "",
        "E = energy per inference under each cost model (see `report.json` → `cost_models`).",
        "",
    ]
    model = next(iter(report["cost_models"]))
    for key, title, x_name in (("trials_curve", "Accuracy vs trials (spikeff)", "trials n"),
                               ("noise_curve", "Accuracy vs noise (spikeff)", "delta")):
        c = report.get(key)
        if c:
            lines += [f"## {title}", "", c.get("method", c.get("note", "")), "",
                      f"| {x_name} | energy mode | average mode | synops/inf | E {model} |", "|---|---|---|---|---|"]
            lines += [f"| {x:g} | {e:.3f} ± {es:.3f} | {a:.3f} ± {as_:.3f} | {so:.3g} | {_fmt_e(en)} |"
                      for x, e, es, a, as_, so, en in zip(c["x"], c["energy"]["mean"], c["energy"]["std"],
                                                         c["average"]["mean"], c["average"]["std"],
                                                         c["synops_per_inference"], c["energy_pj_per_inference"][model])]
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


def run_bench(settings: BenchSettings, out: str | Path, command: str = "") -> dict[str, Any]:
    """Run every method, write the outputs to ``out`` and return the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings.resolved()
    s.splits()  # fail early on missing data, and build the frame cache once
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {s.device}: CUDA is not available on this machine")
    workers = [m for m in ("spikeff", "bptt", "ff") if m in s.methods or (m == "spikeff" and "random" in s.methods)]
    raw: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(workers):
        tqdm.write(f"[{i + 1}/{len(workers)}] {m}" + (" (+ random control)" if m == "spikeff" and "random" in s.methods else ""))
        raw[m] = _run_isolated(m, s) if s.isolate else run_method(m, s)
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
    g.add_argument("--noise-levels", type=_floats, default=None, help=f"deltas, default {','.join(map(str, NOISE_LEVELS))}")
    g.add_argument("--input-ops", choices=("events", "dense"), default="events",
                   help="first-layer input: events as ACs (default) or dense frame MACs")
    g.add_argument("--cost-models", nargs="+", choices=sorted(COST_MODELS), default=list(COST_MODELS))
    g.add_argument("--baseline-epochs", type=int, default=None,
                   help="BPTT and FF epochs (default: spikeff's epochs + readout epochs)")
    g.add_argument("--bptt-lr", type=float, default=BPTTConfig.lr)
    g.add_argument("--ff-lr", type=float, default=FFConfig.lr)
    g.add_argument("--no-isolate", action="store_true", help="run all methods in this process (peak memory is shared)")
    g.add_argument("--scan", choices=SCAN_BACKENDS, default="eager",
                   help="spikeff's LIF scan: eager (reference) or compiled (torch.compile); baselines are unaffected")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="spikeff's synaptic ops in fp32 or under bf16 autocast; baselines are unaffected")
    return p


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(
        dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir, methods=tuple(dict.fromkeys(args.methods)),
        seeds=args.seeds, trials=args.trials, device=args.device, quick=args.quick, limit=args.limit,
        epochs=args.epochs, readout_epochs=args.readout_epochs, channels=args.channels, hidden=args.hidden,
        time_bins=args.time_bins, batch_size=args.batch_size, split_seed=args.split_seed,
        val_fraction=args.val_fraction, trials_curve=args.trials_curve, noise_levels=args.noise_levels,
        input_ops=args.input_ops, cost_models=tuple(args.cost_models), baseline_epochs=args.baseline_epochs,
        bptt_lr=args.bptt_lr, ff_lr=args.ff_lr,
        isolate=not args.no_isolate, scan=args.scan, precision=args.precision,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        t0 = time.perf_counter()
        report = run_bench(settings, args.out, command=shlex.join(["spikeff-bench", *argv]))
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
