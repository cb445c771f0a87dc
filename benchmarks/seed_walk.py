"""The walk from the seed's published method to spikeff, one change at a time (learning issue, item 0).

Each step is the previous one with one setting changed; every step trains the quickstart-size net
(``spikeff train --quickstart``'s layers, epochs and readout) on the same data and is scored on a
held-out share of the *training* split (``--tune``; ``--test`` scores the test split, for reporting
settings chosen before), by the compact
label-efficient readouts of ``spikeff train`` (k = 10 labels per class and all) for the trained net
and its untrained control. One JSON per step and seed is written as it finishes (a rerun skips those
already there); ``--table`` prints the Markdown table of what is there.

    python benchmarks/seed_walk.py --dataset fashion --limit 3000 --seeds 0 --out /tmp/walk
    python benchmarks/seed_walk.py --out /tmp/walk --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from spikeff.bench.settings import seed_run
from spikeff.cli import QUICKSTART
from spikeff.config import DataConfig, RunConfig, RuntimeConfig, overrides, parse_ints, to_dict
from spikeff.ed import EDLossConfig
from spikeff.evaluation import wilson_interval
from spikeff.experiment import run_splits, train_and_evaluate
from spikeff.fileio import atomic_write
from spikeff.neurons import LIFParams, ReLUParams, neuron_to_dict

CENTRED = to_dict(EDLossConfig(alpha=0.5, covariance="trial", diversity="covariance", form="difference"))
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("seed (ReLU, input dropout 0.2, uncentred, projection, raw ED, greedy)", {}),
    ("+ LIF neurons without noise", {"network.lif": neuron_to_dict(LIFParams(delta=0.0))}),
    ("+ escape noise (delta 0.2) and input dropout", {"network.lif": neuron_to_dict(LIFParams())}),
    ("- input dropout (escape noise only)", {"train.input_dropout": 0.0}),
    ("+ centred covariances", {"train.objective": "ed", "train.loss": CENTRED}),
    ("+ noise-corrected signal covariance for diversity", {"train.loss": {**CENTRED, "diversity": "signal"}}),
    ("- projection", {"train.projection_dims": ()}),
    ("+ log ratio", {"train.loss": to_dict(EDLossConfig())}),
    ("+ simultaneous schedule (= spikeff's default)", {"train.schedule": "simultaneous"}),
]


# Runs off the walk, over spikeff's quickstart run ("spikeff") or the seed's ("seed"): noise, guards, budget.
EXTRA: dict[str, tuple[str, str, dict[str, Any]]] = {
    "spikeff": ("spikeff (quickstart size)", "spikeff", {}),
    "seed": ("seed (quickstart size)", "seed", {}),
    "dropout": ("spikeff + input dropout 0.2", "spikeff", {"train.input_dropout": 0.2}),
    "thin_shift": ("spikeff + thinning 0.8, shift 2", "spikeff", {"train.input_keep": 0.8, "train.input_shift": 2}),
    "guarded_thin_shift": ("ed_guarded + thinning 0.8, shift 2", "spikeff",
                           {"train.objective": "ed_guarded", "train.input_keep": 0.8, "train.input_shift": 2}),
    "seed_long": ("seed, 8 epochs per layer", "seed", {"train.epochs": 8}),
    "spikeff_long": ("spikeff, 8 epochs", "spikeff", {"train.epochs": 8}),
    "spikeff_lr": ("spikeff, layer lr 1e-2", "spikeff", {"train.lr": 1e-2}),
    "seed_lr": ("seed, layer lr 1e-2", "seed", {"train.lr": 1e-2}),
    "seed_noproj": ("seed without the projection", "seed", {"train.projection_dims": ()}),
    "relu_spikeff": ("spikeff's objective and schedule on ReLU units with input dropout 0.2", "spikeff",
                     {"network.lif": neuron_to_dict(ReLUParams()), "train.input_dropout": 0.2}),
    "spikeff_depth3": ("spikeff, conv 16/32/64, pools 2,2,1", "spikeff",
                       {"network.conv_channels": (16, 32, 64), "network.pool": (2, 2, 1)}),
    "spikeff_32_64": ("spikeff, conv 32/64", "spikeff", {"network.conv_channels": (32, 64)}),
    "supervised": ("spikeff, supervised consistency (every training label; a bound, not label-efficient)", "spikeff",
                   {"train.loss": {**to_dict(EDLossConfig()), "supervised": True}}),
    "spikeff_64_128": ("spikeff, conv 64/128 (the N-MNIST default's width)", "spikeff",
                       {"network.conv_channels": (64, 128)}),
}


def run_configs(base: RunConfig) -> dict[str, tuple[str, RunConfig]]:
    """Every run's description and settings: the walk's steps ``step0`` (the seed's,
    :func:`spikeff.bench.settings.seed_run`, over ``base``), ``step1``, ... (each the one before with one
    change), then :data:`EXTRA`."""
    out, cfg = {}, seed_run(base)
    for i, (name, change) in enumerate(STEPS):
        cfg = overrides(cfg, change)
        out[f"step{i}"] = (f"{i}. {name}", cfg)
    for key, (name, start, change) in EXTRA.items():
        out[key] = (name, overrides(seed_run(base) if start == "seed" else base, change))
    return out


def run(args: argparse.Namespace) -> None:
    base = overrides(RunConfig(), QUICKSTART)
    base = replace(base, data=DataConfig(dataset=args.dataset, limit=tuple(args.limit), tune=not args.test),
                   runtime=RuntimeConfig(data_dir=args.data_dir), eval=replace(base.eval, label_draws=args.draws))
    if args.channels:
        base = overrides(base, {"network.conv_channels": tuple(args.channels)})
    splits = run_splits(base)
    runs = run_configs(base)
    args.out.mkdir(parents=True, exist_ok=True)
    for key in args.runs or runs:
        name, cfg = runs[key]
        for seed in args.seeds:
            path = args.out / f"{key}_seed{seed}.json"
            if path.exists():
                continue
            t0 = time.perf_counter()
            result = train_and_evaluate(splits, replace(cfg, seed=seed))
            record = {"key": key, "name": name, "seed": seed, "seconds": time.perf_counter() - t0,
                      "n_train": len(splits.train), "n_scored": len(splits.test), "scored_on": splits.test_name,
                      "metrics": result.metrics, "history": [r.to_dict() for r in result.history]}
            text = json.dumps(record, indent=1, default=str).encode()
            atomic_write(path, lambda f, text=text: f.write(text))
            print(f"{key} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def table(out: Path) -> str:
    """The Markdown table of the finished steps: k = 10 top layer and all layers, trained minus control."""
    rows = ["| step | trained top k=10 | control top k=10 | trained all-layers k=10 | control all-layers k=10 "
            "| trained top all labels | control top all labels | layer losses (first → last epoch) |",
            "|---|---|---|---|---|---|---|---|"]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*_seed*.json"))]
    order = [*(f"step{i}" for i in range(len(STEPS))), *EXTRA]
    for key in sorted({r["key"] for r in records}, key=order.index):
        rs = [r for r in records if r["key"] == key]
        le = [r["metrics"]["label_efficiency"] for r in rs]

        def get(net: str, rep: str, k: str, le: list[dict[str, Any]] = le) -> list[float]:
            return [x["results"][net][rep][k]["clean"]["mean"] for x in le if net in x["results"]]

        top = f"layer {len(rs[0]['metrics']['layer_rates'])}"
        losses = []
        for k in range(1, len(rs[0]["metrics"]["layer_rates"]) + 1):
            a, b = rs[0]["history"][0][f"layer{k}/loss"], rs[0]["history"][-1][f"layer{k}/loss"]
            losses.append(f"{a:.2f} → {b:.2f}")
        rows.append(f"| {rs[0]['name']} | " + " | ".join(_cell(v) for v in (
            get("trained", top, "10"), get("control", top, "10"), get("trained", "all layers", "10"),
            get("control", "all layers", "10"), get("trained", top, "all"), get("control", top, "all")))
            + f" | {'; '.join(losses)} |")
    return "\n".join(rows)


def seed_table(out: Path, key: str) -> str:
    """Per seed: the energy accuracy with its 95 % Wilson interval, and trained / control (paired difference)
    of the top layer, all layers and the energy head at k = 10 and of the linear readouts with every label."""
    rs = sorted((json.loads(p.read_text()) for p in out.glob(f"{key}_seed*.json")), key=lambda r: r["seed"])
    cols = [("top layer", "10"), ("all layers", "10"), ("energy", "10"), ("top layer", "all"), ("all layers", "all")]
    rows = ["| seed | energy, trained [95 % CI] | energy, control [95 % CI] | "
            + " | ".join(f"{rep} {'k=10' if k == '10' else 'all labels'}: trained / control (paired)"
                         for rep, k in cols)
            + " |", "|---" * (3 + len(cols)) + "|"]
    diffs: dict[str, list[float]] = {}
    for r in rs:
        m, le = r["metrics"], r["metrics"]["label_efficiency"]["results"]
        n, cells = m["n_test"], []
        for name in ("test_accuracy", "control_accuracy"):
            a = m[name]["energy"]
            lo, hi = wilson_interval(a, n)
            cells.append(f"{a:.3f} [{lo:.3f}, {hi:.3f}]")
        diffs.setdefault("energy", []).append(m["test_accuracy"]["energy"] - m["control_accuracy"]["energy"])
        for rep, k in cols:
            rep_key = f"layer {len(m['layer_rates'])}" if rep == "top layer" else rep
            t, c = (le[net][rep_key][k]["clean"]["mean"] for net in ("trained", "control"))
            diffs.setdefault(f"{rep} {k}", []).append(t - c)
            cells.append(f"{t:.3f} / {c:.3f} ({t - c:+.3f})")
        rows.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    raw = rs[0]["metrics"]["label_efficiency"]["results"]["raw counts"]["input"]
    rows += ["", "Median of the per-seed differences trained - control: " + ", ".join(
        f"{name.replace(' 10', ' k=10').replace(' all', ' all labels')} {statistics.median(d):+.3f}"
        for name, d in diffs.items()) + ".",
             f"Raw event counts on the same draws: {raw['10']['clean']['mean']:.3f} at k = 10, "
             f"{raw['all']['clean']['mean']:.3f} with every label."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion")
    p.add_argument("--limit", type=parse_ints, default=(3000,),
                   help="samples of each split (TRAIN or TRAIN,SCORED): the training share and the tuning share")
    p.add_argument("--test", action="store_true",
                   help="score on the test split instead of the tuning share: for reporting settings chosen before")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--channels", type=int, nargs="*", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", nargs="*", default=None, help="run keys: step0 ... step8, then EXTRA's (default: all)")
    p.add_argument("--draws", type=int, default=5, help="labelled draws per k")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--table", action="store_true", help="print the table of the finished steps and exit")
    p.add_argument("--seed-table", metavar="KEY", help="print the per-seed table of run KEY and exit")
    args = p.parse_args(argv)
    if args.table or args.seed_table:
        print(table(args.out) if args.table else seed_table(args.out, args.seed_table))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
