"""Running the methods of ``spikeff-bench`` and keeping their raw results.

Every method sees the same data, split, time bins and layer shapes, in the same run:

* ``spikeff``: :func:`spikeff.experiment.train_and_evaluate`, read out in energy mode (``n``
  noisy trials) and deterministic mode (one noise-free trial);
* ``random``: the untrained-weights control that ``train_and_evaluate`` computes alongside
  (same readout fit); it is not trained twice;
* ``bptt``: :mod:`spikeff.baselines.bptt`, end to end with snntorch; its learning rate is
  chosen on a held-out share of the *training* split (:func:`~spikeff.baselines.bptt.select_bptt`)
  over a fixed cosine budget whose curve the report shows;
* ``ff``: :mod:`spikeff.baselines.ff`, layer-local Forward-Forward;
* ``linear``: :mod:`spikeff.baselines.linear`, logistic regression on the raw event counts;
* ``seed``: the seed's published method (:func:`~spikeff.bench.settings.seed_run`: ReLU units, input
  dropout, uncentred moments, projections, greedy) in spikeff's loop, with its own untrained control.

:func:`run_method` runs one method for all seeds and returns its raw per-seed results: test
accuracy, op counts per inference, training wall time and peak memory, and for spikeff also the
trials and noise curves, ED history, the label-efficient readouts (:mod:`spikeff.label_efficiency`:
k labels per class, per layer, trained, control and raw counts; the linear probes are their all-label row)
and a spike raster; ``linear`` also its raw-count label-efficient readout. :func:`run_bench` runs
each method in a fresh (spawned) process by default, saves its raw results as
``raw_<method>.json`` when it finishes, reuses matching ones with ``resume``, and hands them to
:func:`~spikeff.bench.aggregate.build_report` and :func:`~spikeff.bench.report.write_outputs`.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Subset
from tqdm.auto import tqdm

from ..baselines import BPTTConfig, FFConfig, select_bptt, train_bptt, train_ff, train_linear
from ..baselines.linear import counts_label_efficiency
from ..config import RunConfig, flags, from_dict, resolve_device, to_dict
from ..data import Splits, make_loader
from ..energy import CostModel, get_cost_model
from ..evaluation import evaluate
from ..experiment import EVAL_BATCH_SIZE, seeded_generators, train_and_evaluate, untrained_control
from ..fileio import write_json
from ..label_efficiency import DRAWS, LABELS_PER_CLASS, energy_fit, label_efficiency, labelled_draws
from ..lock import folder_lock
from ..network import NetworkConfig, SpikingNet
from ..probe import fit_probe
from ..provenance import device_name, git_commit
from .aggregate import build_report
from .report import write_outputs
from .settings import BENCH_MODES, METHODS, BenchSettings, seed_run, settings_key

__all__ = ["FEW_LABELS", "run_method", "run_bench", "merge_bench"]

FEW_LABELS = 10  # labels per class that BPTT and FF are also trained on, for the label-efficiency table

def _gen(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # Linux: this process's own high-water mark (ru_maxrss also counts the parent's RSS at spawn)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _raster(net: SpikingNet, x: Tensor, generator: torch.Generator) -> dict[str, Any]:
    """Spikes of one sample, one trial: input events and each layer, as (T, neurons) lists of indices."""
    with torch.no_grad():
        spikes = net.layer_outputs(x[:, :1], generator, 1)
    rows = [("input events", (x[:, 0] > 0).flatten(1))] + [(f"layer {i + 1}", s[:, 0].flatten(1) > 0)
                                                           for i, s in enumerate(spikes)]
    return {name: {"neurons": int(a.shape[1]), "events": a.nonzero().tolist()} for name, a in rows}


def _run_spikeff(s: BenchSettings, splits: Splits, device: torch.device, models: list[CostModel]) -> dict[str, Any]:
    net_cfg, train_cfg = s.network_config(splits), s.run.train

    def measure(net: SpikingNet, trials: int, gen: torch.Generator, deterministic: bool = False) -> tuple[float, dict]:
        mode = "deterministic" if deterministic else "energy"
        ev = evaluate(net, test, trials, gen, (mode,), count=True, input_ops=s.input_ops,
                      input_per_trial=s.input_per_trial)
        return ev.accuracy[mode], ev.ops.to_dict(models)

    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    train = make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    trials = s.run.test_trials  # the trials of the reported accuracy; every measurement here uses them
    draws = s.run.eval.label_draws or DRAWS
    curve = sorted(set(s.trials_curve) | {trials})
    lif0 = net_cfg.lif
    levels = sorted(set(s.noise_levels) | {lif0.delta})
    seeds_out = []
    for seed in tqdm(s.seed_range, desc="spikeff seeds", dynamic_ncols=True):
        # The full label-efficiency table is computed below; the run's compact one would repeat part of it.
        run_cfg = s.run_config(seed)
        run = train_and_evaluate(splits, replace(run_cfg, eval=replace(run_cfg.eval, label_draws=0)))
        net, m = run.net, run.metrics
        g = lambda j, seed=seed: _gen(device, seed * 1000 + 100 + j)  # noqa: E731 -- measurement noise, apart from training's
        acc = m["test_accuracy"]
        rec: dict[str, Any] = {"seed": seed, "accuracy": {mode: acc[mode] for mode in BENCH_MODES},
                               "train_seconds": m["train_seconds"], "layer_rates": m["layer_rates"],
                               "history": [r.to_dict() for r in run.history]}
        by_trials = {}
        for j, n in enumerate(tqdm(curve, desc="trials curve", leave=False, dynamic_ncols=True)):
            acc_n, ops = measure(net, n, g(j))
            by_trials[n] = {"accuracy": acc_n, "ops": ops}
        rec["ops"] = {"energy": by_trials[trials]["ops"], "deterministic": measure(net, 1, g(50), True)[1]}
        rec["trials_curve"] = by_trials
        noise = {}
        try:
            for j, d in enumerate(tqdm(levels, desc="noise curve", leave=False, dynamic_ncols=True)):
                net.with_lif(replace(lif0, delta=d))
                acc_d, ops = measure(net, trials, g(200 + j))
                noise[d] = {"accuracy": acc_d, "ops": ops}
        finally:
            net.with_lif(lif0)
        rec["noise_curve"] = noise
        if seed == s.first_seed:
            x, _ = next(iter(test))
            rec["raster"] = _raster(net, x.to(device), g(300))
        nets = {"trained": net}
        if "random" in s.methods:
            ctrl = nets["control"] = untrained_control(net_cfg, seed, device, train, g(402))
            c_acc = m["control_accuracy"]
            rec["control"] = {"accuracy": {mode: c_acc[mode] for mode in BENCH_MODES},
                              "layer_rates": m["control_layer_rates"],
                              "ops": {"energy": measure(ctrl, trials, g(400))[1],
                                      "deterministic": measure(ctrl, 1, g(401), True)[1]}}
        rec["label_efficiency"] = le = label_efficiency(nets, train, test, trials, seed=seed, draws=draws,
                                                        energy=energy_fit(s.run))
        rec["probes"] = {name: _probes(le, name, len(net.layers)) for name in nets if le["results"]}
        seeds_out.append(rec)
    return {"seeds": seeds_out, "network": to_dict(net_cfg),
            "train_config": {**asdict(train_cfg), **asdict(s.run.eval)},  # the layers' and the readout's settings
            "passes": _network_passes(s.run, net), "trials": train_cfg.trials, "eval_trials": trials}


def _probes(le: dict[str, Any], name: str, layers: int) -> list[float]:
    """The linear probes of the input and of every layer of net ``name``: the label-efficient readouts
    fitted on every training label (C cross-validated on them), scored on the clean test inputs."""
    res = le["results"]
    return [res["raw counts"]["input"]["all"]["clean"]["mean"],
            *(res[name][f"layer {i}"]["all"]["clean"]["mean"] for i in range(1, layers + 1))]


def _run_seed(s: BenchSettings, splits: Splits, device: torch.device, models: list[CostModel]) -> dict[str, Any]:
    """The seed's method at the bench's sizes: its energy accuracy and op counts, and its label-efficient
    readouts beside those of the same ReLU net untrained."""
    run = seed_run(s.run)
    net_cfg = run.network.for_data(splits.frame_shape, splits.n_classes)
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    train = make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    trials, draws = run.test_trials, run.eval.label_draws or DRAWS
    seeds_out = []
    for seed in tqdm(s.seed_range, desc="seed seeds", dynamic_ncols=True):
        cfg = replace(run, seed=seed, eval=replace(run.eval, control=False, label_draws=0))
        res = train_and_evaluate(splits, cfg)
        ev = evaluate(res.net, test, trials, _gen(device, seed * 1000 + 100), ("energy",), count=True,
                      input_ops=s.input_ops, input_per_trial=s.input_per_trial)
        nets = {"trained": res.net, "control": untrained_control(net_cfg, seed, device, train, _gen(device, seed))}
        seeds_out.append({"seed": seed, "accuracy": res.metrics["test_accuracy"]["energy"],
                          "train_seconds": res.metrics["train_seconds"], "ops": ev.ops.to_dict(models),
                          "layer_rates": res.metrics["layer_rates"], "history": [r.to_dict() for r in res.history],
                          "label_efficiency": label_efficiency(nets, train, test, trials, seed=seed, draws=draws,
                                                               energy=energy_fit(cfg))})
    return {"seeds": seeds_out, "network": to_dict(net_cfg), "config": to_dict(run.train),
            "passes": _network_passes(run, res.net), "trials": run.train.trials, "eval_trials": trials}


def _network_passes(run: RunConfig, net: SpikingNet) -> int:
    """Passes of the training set through the network: one per layer epoch (per layer in greedy
    mode), plus the readout's: one to cache a linear head's features, or one per epoch for a
    spiking head."""
    layer = run.train.epochs * (1 if run.train.schedule == "simultaneous" else len(net.layers))
    readout = min(run.eval.readout_epochs, 1) if net.head.kind == "linear" else run.eval.readout_epochs
    return layer + readout


def _run_baseline(method: str, s: BenchSettings, splits: Splits, device: torch.device,
                  models: list[CostModel]) -> dict[str, Any]:
    net_cfg = s.network_config(splits)
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    out: dict[str, Any] = {"trials": 1}  # passes per inference
    if method == "bptt":
        if s.baseline_epochs is None:
            sel = select_bptt(net_cfg, splits.train, s.bptt_lrs, s.bptt_epochs, holdout=s.run.data.val_fraction,
                              split_seed=s.run.data.split_seed, batch_size=s.run.train.batch_size, device=device)
            config, out["selection"] = BPTTConfig(epochs=s.bptt_epochs, lr=sel["lr"]), sel
        else:
            config = BPTTConfig(epochs=s.baseline_epochs, lr=s.bptt_lr)
        out["config"] = asdict(config)
    elif method == "ff":
        ff = FFConfig() if s.baseline_epochs is None else replace(FFConfig(), epochs=s.baseline_epochs)
        out["config"] = asdict(ff)
        out["trials"] = 1 if ff.predict == "head" else net_cfg.n_classes  # a neutral pass, or one per label
    seeds_out = []
    seeds = s.seed_range[:1] if method == "linear" else s.seed_range
    for seed in tqdm(seeds, desc=f"{method} seeds", dynamic_ncols=True):
        train = (make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0) if method == "linear"
                 else make_loader(splits.train, s.run.train.batch_size, shuffle=True, seed=seed))
        gen = seeded_generators(seed, device)["init"]
        if method == "bptt":
            res = train_bptt(net_cfg, config, train, test, generator=gen, device=device, input_ops=s.input_ops)
            few = _few_labels(method, config, net_cfg, s, splits, test, seed, device)
        elif method == "ff":
            res = train_ff(net_cfg, ff, train, test, generator=gen, device=device, input_ops=s.input_ops)
            few = _few_labels(method, ff, net_cfg, s, splits, test, seed, device)
        else:  # deterministic given the data: one fit stands for every seed
            res = train_linear(train, test, net_cfg.n_classes)
            out["label_efficiency"] = counts_label_efficiency(train, test, draws=s.run.eval.label_draws or DRAWS)
        seeds_out.append({"seed": seed, "accuracy": res.accuracy, "train_seconds": res.train_seconds,
                          "ops": res.ops.to_dict(models), "history": res.history,
                          **({"few_labels": few} if method in ("bptt", "ff") else {})})
    out.update(seeds=seeds_out, passes=res.passes)
    return out



def _few_labels(method: str, config: BPTTConfig | FFConfig, net_cfg: NetworkConfig, s: BenchSettings,
                splits: Splits, test: Any, seed: int, device: torch.device) -> dict[str, Any]:
    """BPTT or FF trained on :data:`FEW_LABELS` labelled training inputs per class: the first draw of
    that ``k`` that spikeff's label-efficient readouts of ``seed`` use, at the full run's settings for as
    many optimiser steps as the full run (its epochs scaled up; FF's head epochs too)."""
    labels = getattr(splits.train, "labels", None)
    labels = np.asarray([y for _, y in splits.train] if labels is None else labels)
    draws = s.run.eval.label_draws or DRAWS
    idx = labelled_draws(labels, LABELS_PER_CLASS, draws, torch.Generator().manual_seed(seed))[str(FEW_LABELS)][0]
    bs = s.run.train.batch_size
    few = make_loader(Subset(splits.train, idx.tolist()), bs, shuffle=True, seed=seed)
    scale = math.ceil(len(labels) / bs) / len(few)
    gen = seeded_generators(seed, device)["init"]
    if method == "bptt":
        config = replace(config, epochs=max(1, round(config.epochs * scale)))
        res = train_bptt(net_cfg, config, few, test, generator=gen, device=device, input_ops=s.input_ops)
    else:
        config = replace(config, epochs=max(1, round(config.epochs * scale)),
                         head_epochs=max(1, round(config.head_epochs * scale)))
        res = train_ff(net_cfg, config, few, test, generator=gen, device=device, input_ops=s.input_ops)
    return {"k": FEW_LABELS, "n_labelled": len(idx), "epochs": config.epochs, "lr": config.lr,
            "accuracy": res.accuracy, "train_seconds": res.train_seconds}


def run_method(method: str, settings: BenchSettings) -> dict[str, Any]:
    """Run one method for all seeds (``random`` runs inside ``spikeff``).

    Parameters
    ----------
    method : str
        ``spikeff``, ``bptt``, ``ff``, ``seed`` or ``linear``.
    settings : BenchSettings
        What to run.

    Returns
    -------
    dict
        Raw per-seed results with the run's data sizes, machine, wall time, peak memory, settings
        key and commit; JSON-ready, saved as ``raw_<method>.json``.

    Raises
    ------
    ValueError
        If ``method`` is not one of those above.
    DataError
        If the data are missing or malformed (as :func:`spikeff.data.load_splits`).
    RuntimeError
        If training meets a non-finite loss (:class:`~spikeff.trainer.TrainingError` for ``spikeff``).
    """
    s = settings
    device = torch.device(s.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    splits = s.splits()
    models = [get_cost_model(n) for n in s.cost_models]
    t0 = time.perf_counter()
    if method == "spikeff":
        out = _run_spikeff(s, splits, device, models)
    elif method == "seed":
        out = _run_seed(s, splits, device, models)
    elif method in ("bptt", "ff", "linear"):
        out = _run_baseline(method, s, splits, device, models)
    else:
        raise ValueError(f"run_method runs {[m for m in METHODS if m != 'random']} ('random' runs inside "
                         f"'spikeff'), got {method!r}")
    out.update(method=method, device_name=device_name(device), wall_seconds=time.perf_counter() - t0,
               peak_memory_mib=_peak_memory_mib(device),
               isolated=settings.isolate, n_train=len(splits.train), n_test=len(splits.test),
               time_bins=splits.n_time_bins, test_split=splits.test_name, frame_shape=list(splits.frame_shape),
               settings=settings_key(s), **git_commit())
    return out


def _run_isolated(method: str, settings: BenchSettings) -> dict[str, Any]:
    """:func:`run_method` in a fresh spawned process (pickled by reference, so importable as
    ``spikeff.bench.runner.run_method``): each method's peak memory is its own."""
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_method, method, settings).result()


def _raw_path(out: Path, method: str) -> Path:
    return out / f"raw_{method}.json"


def _leaves(d: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    return {k: v for name, sub in d.items() for k, v in _leaves(sub, (*prefix, name)).items()}


def _settings_changes(saved: dict[str, Any], key: dict[str, Any]) -> list[str]:
    """The settings that differ between two settings keys, as options: ``--time-bins 3 (now 2)``.

    Parameters
    ----------
    saved : the settings key a result was made with.
    key : the settings key of this run.

    Returns
    -------
    list of str, empty when they agree.
    """
    names = {f.path: f.name for f in flags(BenchSettings)}
    a, b = _leaves(saved), _leaves(key)
    return [f"{names.get(k, '.'.join(k))} {a.get(k)} (now {b.get(k)})" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def _holds_results(out: Path) -> bool:
    return out.is_dir() and (any(out.glob("raw_*.json")) or (out / "report.json").exists())


def _read_raw(path: Path, hint: str) -> tuple[dict[str, Any], list[str] | BenchSettings]:
    """The raw results at ``path`` and the settings they were made with, read as today's (keys added since
    take their defaults, which is what the run had), or why they cannot be read as a list of one reason.
    An unreadable file raises ``ValueError`` ending in ``hint``."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable raw result ({e}); {hint}") from None
    saved = raw.get("settings") if isinstance(raw, dict) else None
    if not isinstance(saved, dict) or "run" not in saved:
        return raw, ["settings written by a pre-0.1 spikeff-bench"]
    try:
        return raw, from_dict(BenchSettings, saved)
    except (ValueError, TypeError, AttributeError):
        return raw, ["settings this spikeff cannot read"]


def _load_raw(path: Path, key: dict[str, Any], overwrite: bool = False) -> dict[str, Any] | None:
    """The saved raw results at ``path`` if they were run with the settings ``key``; None if there are
    none (or, with ``overwrite``, none of these settings). Results of other settings are refused."""
    if not path.exists():
        return None
    raw, saved = _read_raw(path, "move it away or run without --resume")
    changes = saved if isinstance(saved, list) else _settings_changes(settings_key(saved), key)
    if not changes:
        return raw
    if overwrite:
        return None
    raise ValueError(f"{path} was made with other settings: {', '.join(changes)}; --resume reuses results of the "
                     "same settings only (pass --overwrite to replace them, or choose another --out)")


def _check_probe_sizes(splits: Splits) -> None:
    """Refuse a training split too small for the layer probes' cross-validation, before any training
    (scikit-learn's stratified folds need some class with as many samples as folds)."""
    folds = inspect.signature(fit_probe).parameters["folds"].default
    counts = splits.counts["train"]
    if max(counts.values()) < folds:
        raise ValueError(f"the training split is too small for spikeff's layer probes: their {folds}-fold "
                         f"cross-validation needs {folds} training samples of a class, and no class has more than "
                         f"{max(counts.values())} ({sum(counts.values())} training samples for {len(counts)} "
                         "classes); raise --limit")


def run_bench(settings: BenchSettings, out: str | Path, command: str = "", *, resume: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Run every method, write the outputs to ``out`` and return the report.

    Each method's raw results are written to ``raw_<method>.json`` as soon as it finishes. With
    ``resume``, a method whose saved raw results match these settings is not run again; saved
    results of other settings are refused (replaced with ``overwrite``). An ``out``
    that already holds results is refused unless ``resume`` or ``overwrite``.

    Parameters
    ----------
    settings : BenchSettings
        What to run.
    out : str or Path
        Output folder, created if missing.
    command : str
        The command line, recorded in the report.
    resume : bool
        Reuse the saved raw results of methods run with the same settings.
    overwrite : bool
        Replace the results already in ``out``.

    Returns
    -------
    dict
        The report, as written to ``out/report.json``.

    Raises
    ------
    ValueError
        If ``out`` already holds results and neither ``resume`` nor ``overwrite`` is set, the
        settings' device is not one of this machine, with ``resume`` a saved ``raw_<method>.json``
        cannot be read or (without ``overwrite``) was made with other settings, or the training
        split is too small for spikeff's layer probes.
    FolderLocked
        If another running process writes to ``out`` (:mod:`spikeff.lock`).
    DataError
        If the data are missing or malformed.
    RuntimeError
        If a method's training meets a non-finite loss (as :func:`run_method`).
    OSError
        If ``out`` or a file in it cannot be written.
    """
    out = Path(out)
    with folder_lock(out):
        return _run_bench(settings, out, command, resume, overwrite)


def _run_bench(settings: BenchSettings, out: Path, command: str, resume: bool, overwrite: bool) -> dict[str, Any]:
    s = settings
    if not (resume or overwrite) and _holds_results(out):
        raise ValueError(f"{out} already holds bench results; pass --resume to reuse them or --overwrite to "
                         "replace them")
    resolve_device(s.device)
    out.mkdir(parents=True, exist_ok=True)
    key = settings_key(s)
    if resume:  # every saved result, not only those of the methods run now: the report is rewritten
        for path in sorted(out.glob("raw_*.json")):
            _load_raw(path, key, overwrite)
    splits = s.splits()  # fail early on missing data, and build the frame cache once
    workers = [m for m in METHODS if m in s.methods and m != "random"]
    if "random" in s.methods and "spikeff" not in workers:
        workers.insert(0, "spikeff")
    if "spikeff" in workers:
        _check_probe_sizes(splits)
    raw: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(workers):
        saved = _load_raw(_raw_path(out, m), key, overwrite) if resume else None
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


def merge_bench(folders: Sequence[str | Path], out: str | Path, command: str = "", *,
                overwrite: bool = False) -> dict[str, Any]:
    """Join bench folders that ran the same settings and methods on consecutive seeds (``--first-seed``)
    into ``out``: the raw results and report of one run over all their seeds.

    Each method's per-seed results are the folders' in seed order; its wall time is their sum, its peak
    memory their largest, its commit and machine theirs (joined when they differ); ``linear``, fitted once,
    is the first folder's. Its other entries follow from the settings and are the first folder's.

    Parameters
    ----------
    folders : the bench output folders to join, each with its ``raw_<method>.json``.
    out : output folder, created if missing; not one of ``folders``.
    command : the command line, recorded in the report.
    overwrite : replace the results already in ``out``.

    Returns
    -------
    dict
        The report, as written to ``out/report.json``.

    Raises
    ------
    ValueError
        If a folder holds no raw results or an unreadable one, the folders differ in settings (other than
        their seeds) or in methods, their seeds overlap or leave a gap, ``out`` is one of them, or ``out``
        already holds results and ``overwrite`` is not set.
    FolderLocked
        If another running process writes to ``out``.
    OSError
        If ``out`` or a file in it cannot be written.
    """
    out = Path(out)
    with folder_lock(out):
        return _merge_bench([Path(f) for f in folders], out, command, overwrite)


def _merge_bench(folders: list[Path], out: Path, command: str, overwrite: bool) -> dict[str, Any]:
    if out.resolve() in {f.resolve() for f in folders}:
        raise ValueError(f"--out {out} is one of the merged folders; choose a new one")
    if not overwrite and _holds_results(out):
        raise ValueError(f"{out} already holds bench results; pass --overwrite to replace them")
    parts = sorted(map(_read_folder, folders), key=lambda p: p[0].first_seed)  # (settings, raws, folder)
    first, methods = parts[0][0], _ran(parts[0][1])
    for s, raws, folder in parts:
        if changes := _settings_changes(settings_key(replace(s, seeds=1, first_seed=0)),
                                        settings_key(replace(first, seeds=1, first_seed=0))):
            raise ValueError(f"{folder} ran other settings than {parts[0][2]}: {', '.join(changes)}")
        if _ran(raws) != methods:
            raise ValueError(f"{folder} ran {list(_ran(raws))}, {parts[0][2]} {list(methods)}: every merged "
                             "folder must hold the same methods")
    for (a, *_), (b, *_) in zip(parts, parts[1:]):
        if b.first_seed != a.seed_range.stop:
            how = "overlap" if b.first_seed < a.seed_range.stop else "leave a gap"
            raise ValueError(f"seeds {list(a.seed_range)} and {list(b.seed_range)} {how}; the merged seeds must "
                             "follow each other")
    s = replace(first, seeds=sum(p[0].seeds for p in parts), methods=methods)
    raw = {}
    for m, head in parts[0][1].items():
        runs = [raws[m] for _, raws, _ in parts][:1 if m == "linear" else None]
        commits = dict.fromkeys(r.get("commit") for r in runs)
        seeds = [rec if i == 0 else {k: v for k, v in rec.items() if k != "raster"}
                 for i, rec in enumerate(rec for r in runs for rec in r["seeds"])]
        peaks = [r["peak_memory_mib"] for r in runs if r["peak_memory_mib"] is not None]
        raw[m] = {**head, "seeds": seeds, "wall_seconds": sum(r["wall_seconds"] for r in runs),
                  "peak_memory_mib": max(peaks, default=None),
                  "isolated": all(r["isolated"] for r in runs), "commit": ", ".join(map(str, commits)),
                  "device_name": " | ".join(dict.fromkeys(str(r["device_name"]) for r in runs)),
                  "dirty": any(r.get("dirty") for r in runs), "settings": settings_key(s)}
    s = replace(s, isolate=all(r["isolated"] for r in raw.values()))  # not in the saved settings
    out.mkdir(parents=True, exist_ok=True)
    for m, r in raw.items():
        write_json(_raw_path(out, m), r)
    report = build_report(raw, s, command)
    write_outputs(report, raw, out)
    return report


def _read_folder(folder: Path) -> tuple[BenchSettings, dict[str, dict[str, Any]], Path]:
    """A bench folder's settings and raw results per method, refused unless they all share those settings."""
    paths = sorted(folder.glob("raw_*.json"))
    if not paths:
        raise ValueError(f"{folder}: no raw_<method>.json to merge (is it a spikeff-bench --out folder?)")
    raws, found = {}, []
    for path in paths:
        raws[path.stem.removeprefix("raw_")], saved = _read_raw(path, "move it away or leave its folder out")
        if isinstance(saved, list):
            raise ValueError(f"{path}: {saved[0]}; it cannot be merged")
        found.append((path, saved))
    try:  # raw results written before they named their device: the folder's report names it
        machine = json.loads((folder / "report.json").read_text())["device_name"]
    except (OSError, ValueError, KeyError, TypeError):
        machine = None
    for raw in raws.values():
        raw.setdefault("device_name", machine)
    for path, saved in found[1:]:
        if changes := _settings_changes(settings_key(saved), settings_key(found[0][1])):
            raise ValueError(f"{path} differs from {found[0][0]} in {', '.join(changes)}")
    return found[0][1], raws, folder


def _ran(raws: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """The methods a folder's raw results hold (``random`` when spikeff's seeds carry the control)."""
    control = "spikeff" in raws and "control" in raws["spikeff"]["seeds"][0]
    return tuple(m for m in METHODS if m in raws or (m == "random" and control))
