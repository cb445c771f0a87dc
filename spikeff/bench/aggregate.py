"""From raw per-method results to the ``spikeff-bench`` report dict.

Per method: test accuracy per seed, its median and a 95 % Wilson interval (nothing is selected
on the test split), op counts and energy per inference under each cost model
(:mod:`spikeff.energy`), training wall time, throughput per input and per trial, and peak
memory. For spikeff also accuracy against the number of trials and the noise level, ED per
layer over training and a linear probe per layer. The energy-accuracy frontier puts spikeff at
1, 2, 4, 8 trials and deterministic beside every baseline and names the cheapest spikeff point
that matches BPTT. :data:`NOTES` are the report's notes on how each number is counted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from ..config import to_dict
from ..energy import get_cost_model
from ..evaluation import wilson_interval
from ..provenance import device_name, git_commit
from ..records import EpochRecord
from .settings import BENCH_MODES, FRONTIER_TRIALS, METHODS, TRAIN_TRIALS, BenchSettings

__all__ = ["wilson_interval", "build_report", "NOTES"]


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



def _method_entry(raw: dict[str, Any], models: list[str], control: bool = False) -> dict[str, Any]:
    seeds, n_test = raw["seeds"], raw["n_test"]
    n_train, passes = raw["n_train"], raw["passes"]
    if raw["method"] == "spikeff":
        src = [r["control"] if control else r for r in seeds]
        modes = {mode: _mode_entry([r["accuracy"][mode] for r in src], [r["ops"][mode] for r in src], models, n_test)
                 for mode in BENCH_MODES}
        entry: dict[str, Any] = {"primary_mode": "energy", **modes["energy"], "readout_modes": modes,
                                 "trials": raw.get("eval_trials", raw["trials"])}  # raws before eval_trials
    else:
        entry = {**_mode_entry([r["accuracy"] for r in seeds], [r["ops"] for r in seeds], models, n_test),
                 "trials": raw.get("eval_trials", raw["trials"])}
        entry.update({k: raw[k] for k in ("selection", "config") if k in raw})
    if control:
        entry.update(train_seconds=None, samples_per_second=None, trial_samples_per_second=None,
                     note="readout fitted on untrained layers inside the spikeff run (same readout fit); "
                          "not timed separately; peak memory is the spikeff process's")
    else:
        secs = _stats([r["train_seconds"] for r in seeds])
        sps = n_train * passes / secs["mean"]
        per_input = TRAIN_TRIALS.get(raw["method"], raw["trials"])  # spikeff: its training trials
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
    hist = [[EpochRecord.from_dict(rec) for rec in r["history"]] for r in seeds]
    out: dict[str, Any] = {"epoch": [rec.epoch for rec in hist[0]]}
    for k in range(min(len(rec.layers) for h in hist for rec in h)):
        out[f"layer{k + 1}"] = {}
        for term in ("consistency", "diversity"):
            st = [_stats([getattr(h[e].layers[k], f"ed_{term}") for h in hist]) for e in range(len(hist[0]))]
            out[f"layer{k + 1}"][term] = {"mean": [v["mean"] for v in st], "std": [v["std"] for v in st]}
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


def _label_row(method: str, rep: str, curves: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the label-efficiency table from per-seed curves: per ``k`` and view, the statistics
    over every draw of every seed, with each seed's mean."""
    out: dict[str, Any] = {"method": method, "representation": rep, "k": {}}
    for k in curves[0]:
        out["k"][k] = {}
        for view in (v for v in curves[0][k] if v != "n_labelled"):
            pooled = [a for c in curves for a in c[k][view]["per_draw"]]
            out["k"][k][view] = {**_stats(pooled), "per_seed": [c[k][view]["mean"] for c in curves]}
    return out


def _label_efficiency(raw: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The label-efficiency table: spikeff's and the seed method's readouts per representation, each
    with its own control's, the raw counts (``linear``'s own, else from spikeff's pass), BPTT and FF end
    to end, and the paired difference trained - control per seed."""
    def curves(method: str) -> list[dict[str, Any]]:
        return [r["label_efficiency"] for r in raw.get(method, {}).get("seeds", [])
                if r.get("label_efficiency", {}).get("results")]

    sf, own = curves("spikeff"), {"spikeff": "random", "seed": "seed control"}  # each trained net's own control
    lin = raw.get("linear", {}).get("label_efficiency")
    first = next((c[0] for c in map(curves, own) if c), lin)
    if first is None:
        return None
    rows, paired = [], []
    for method, control in own.items():
        mc = curves(method)
        for net, name in (("trained", method), ("control", control)):
            runs = [r["results"][net] for r in mc if net in r["results"]]
            rows += [_label_row(name, rep, [r[rep] for r in runs]) for rep in (runs[0] if runs else {})]
        both = [r["results"] for r in mc if "control" in r["results"]]
        for rep in (both[0]["trained"] if both else {}):
            diff = lambda k, rep=rep, both=both: [  # noqa: E731
                b["trained"][rep][k]["clean"]["mean"] - b["control"][rep][k]["clean"]["mean"] for b in both]
            paired.append({"method": method, "representation": rep,
                           "k": {k: _stats(diff(k)) for k in both[0]["trained"][rep]}})
    if lin is not None:
        rows.append(_label_row("linear", "raw counts", [lin["results"]["raw counts"]["input"]]))
    elif sf:
        rows.append(_label_row("linear", "raw counts (spikeff's pass)", [r["results"]["raw counts"]["input"]
                                                                        for r in sf]))
    for method in ("bptt", "ff"):
        if method in raw:
            seeds = raw[method]["seeds"]
            few = [r["few_labels"] for r in seeds if "few_labels" in r]
            by_k = ({str(few[0]["k"]): [f["accuracy"] for f in few]} if few else {}) | {
                "all": [r["accuracy"] for r in seeds]}
            rows.append({"method": method, "representation": "end to end" + ("" if few else ", all labels"),
                         "k": {k: {"clean": {**_stats(a), "per_seed": a}} for k, a in by_k.items()}})
    return {key: first[key] for key in ("labels_per_class", "draws", "views", "features")} | {
        "rows": rows, "paired": paired,
        "note": "readouts fitted on k labelled training inputs per class (seeded draws, the same for every method "
                "of a seed), scored on the whole test split; mean, std, min and max over all draws of all seeds, "
                "per_seed the mean of each seed's draws. energy: spikeff's own head refitted on the k labels. bptt "
                "and ff are trained on every label and on the first draw of 10 per class (as many optimiser steps "
                "as with all). seed: the seed's method, its control the same ReLU net untrained. paired: "
                "trained - control per seed on the same labels."}


def build_report(raw: dict[str, dict[str, Any]], settings: BenchSettings, command: str) -> dict[str, Any]:
    """The report dict from the raw per-method results of :func:`~spikeff.bench.runner.run_method`.

    Parameters
    ----------
    raw : dict
        Raw results per method run (``random``'s inside ``spikeff``'s).
    settings : BenchSettings
        The settings the methods ran with.
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        JSON-ready report: settings, data, cost models, one entry per method, the spikeff curves,
        ED history, probes, the frontier and :data:`NOTES`.
    """
    s = settings
    models = list(s.cost_models)
    first = next(iter(raw.values()))
    methods = {name: _method_entry(raw["spikeff" if name == "random" else name], models, control=name == "random")
               for name in METHODS if name in s.methods}
    report: dict[str, Any] = {
        "dataset": s.run.data.dataset,
        "device": str(torch.device(s.device)),
        "device_name": " | ".join(dict.fromkeys(r.get("device_name") or device_name(s.device) for r in raw.values())),
        **git_commit(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "settings": json.loads(json.dumps(to_dict(s))),
        "data": {k: first[k] for k in ("n_train", "n_test", "time_bins", "test_split", "frame_shape")},
        "cost_models": {n: get_cost_model(n).to_dict() for n in models},
        "methods": methods,
        "trials_curve": None,
        "noise_curve": None,
        "ed_history": None,
        "probes": None,
        "label_efficiency": None,
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
                                           f"{sf.get('eval_trials', sf['trials'])} trials"}
        report["ed_history"] = _ed_history(sf["seeds"])
        report["probes"] = _probes(sf["seeds"])
    report["label_efficiency"] = _label_efficiency(raw)
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
    "allocated, or on CPU the process's own peak RSS (VmHWM on Linux); with isolation each method runs in a fresh "
    "process; random shares spikeff's process.",
]
