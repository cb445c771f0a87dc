"""Trained-vs-control accuracy of `spikeff train` over several seeds, written as a results table.

    python benchmarks/core_accuracy.py --seeds 0 1 2 --out benchmarks/results/core_nmnist.md -- \\
        --dataset nmnist --data-dir ../shared/data --epochs 3

Everything after ``--`` goes to ``spikeff train`` unchanged (each seed gets its own run folder
under ``--runs``). The table reports every seed, the median and the spread (min..max) of the
held-out accuracy in each readout mode, for the trained network and the untrained control, with
95 % Wilson intervals per seed for the energy mode; per seed, each layer's ED loss over the
epochs and its rate; with ``--probes``, a linear probe of the input and of every layer's counts
(:mod:`spikeff.probe`) for the trained network and the control.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from spikeff.bench import wilson_interval as wilson
from spikeff.checkpoint import load_checkpoint
from spikeff.cli import build_parser
from spikeff.cli import main as spikeff_main
from spikeff.config import from_args
from spikeff.data import make_loader
from spikeff.experiment import run_splits, untrained_control
from spikeff.probe import layer_probes
from spikeff.provenance import device_name, git_commit
from spikeff.readout import MODES
from spikeff.records import EpochRecord


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} ({min(values):.4f}..{max(values):.4f})"


def _probes(run: Path, seed: int, train_args: list[str]) -> dict[str, list[float]]:
    """Linear probes of the trained net (its checkpoint) and of the control (its seeded initial weights)."""
    net, meta = load_checkpoint(run / "model.pt")
    splits = run_splits(from_args(build_parser().parse_args(["train", *train_args, "--out", str(run)])))
    train = make_loader(splits.train, 64, shuffle=False, seed=0)
    test = make_loader(splits.test, 64, shuffle=False, seed=0)
    ctrl = untrained_control(net.config, seed, torch.device("cpu"), train, torch.Generator().manual_seed(seed))
    return {name: layer_probes(n, train, test, meta["eval_trials"], torch.Generator().manual_seed(seed))
            for name, n in (("trained", net), ("control", ctrl))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, default=Path("runs/core_accuracy"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--probes", action="store_true", help="linear probes per layer (trained and control)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    train_args = [a for a in args.train_args if a != "--"]

    metrics = []
    for seed in args.seeds:
        run = args.runs / f"seed{seed}"
        t0 = time.perf_counter()
        rc = spikeff_main(["train", *train_args, "--seed", str(seed), "--out", str(run)])
        if rc != 0:
            return rc
        metrics.append(json.loads((run / "metrics.json").read_text()))
        metrics[-1]["wall_seconds"] = time.perf_counter() - t0
        if args.probes:
            metrics[-1]["probes"] = _probes(run, seed, train_args)

    m0, commit = metrics[0], git_commit()
    device = device_name(m0["device"])
    lines = [
        f"# spikeff train: trained vs untrained control on {m0['dataset']}",
        "",
        f"- command: `python benchmarks/core_accuracy.py --seeds {' '.join(map(str, args.seeds))} "
        f"{'--probes ' if args.probes else ''}--out {args.out} -- {' '.join(train_args)}`",
        f"- commit: {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        f"- device: {device}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- held-out split: {m0['test_split']} ({m0['n_test']} samples; {m0['n_train']} training samples)",
        f"- epochs {m0['epochs']} + {m0['readout_epochs']} readout epochs, {m0['trials']} trials, "
        f"T={m0['time_bins']}, batch {m0['batch_size']}, network {m0['network']['conv_channels']} conv "
        f"+ {m0['network']['hidden']} hidden, readout {m0['network']['readout']}",
        f"- train config: {m0['config']['train']}",
        f"- neurons: {m0['network']['lif']}",
        "- numbers are those of the last epoch; nothing was selected on the held-out split",
        "",
        "| readout mode | trained: median (min..max) | control: median (min..max) | trained - control, per seed |",
        "| --- | --- | --- | --- |",
    ]
    for mode in MODES:
        tr = [m["test_accuracy"][mode] for m in metrics]
        ct = [m["control_accuracy"][mode] for m in metrics if "control_accuracy" in m]
        diff = ", ".join(f"{a - b:+.3f}" for a, b in zip(tr, ct)) if ct else "n/a"
        lines.append(f"| {mode} | {_fmt(tr)} | {_fmt(ct) if ct else 'n/a'} | {diff} |")
    lines += ["", "Per seed: trained energy [95 % Wilson interval] vs control energy [interval]; "
              "trained average / deterministic; seconds; per layer: ED loss epoch 1 -> last "
              "and the rate in evaluation:", ""]
    for seed, m in zip(args.seeds, metrics):
        acc, n = m["test_accuracy"], m["n_test"]
        ctrl = m.get("control_accuracy", {}).get("energy")
        ci = "[{:.3f}, {:.3f}]".format(*wilson(acc["energy"], n))
        cc = " vs {:.4f} [{:.3f}, {:.3f}]".format(ctrl, *wilson(ctrl, n)) if ctrl is not None else ""
        hist = [EpochRecord.from_dict(rec) for rec in m.get("history", [])]
        layers = [
            f"L{k + 1} {hist[0].layers[k].loss:.2f} -> {hist[-1].layers[k].loss:.2f}, rate {r:.3f}"
            for k, r in enumerate(m["layer_rates"])
        ] if hist else []
        lines.append(f"- seed {seed}: {acc['energy']:.4f} {ci}{cc}; {acc['average']:.4f} / "
                     f"{acc['deterministic']:.4f}; {m['train_seconds']:.0f} s training, {m['wall_seconds']:.0f} s "
                     "for the whole `spikeff train` (data, control, readouts); " + "; ".join(layers))
    if args.probes:
        lines += ["", "Linear probes (held-out accuracy of a logistic regression, C cross-validated on the "
                  "training split; input counts, then each layer's counts averaged over the evaluation trials):", "",
                  "| seed | net | input | " + " | ".join(f"layer {k + 1}" for k in range(len(m0["layer_rates"])))
                  + " |", "| --- " * (3 + len(m0["layer_rates"])) + "|"]
        for seed, m in zip(args.seeds, metrics):
            for name, accs in m["probes"].items():
                lines.append(f"| {seed} | {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
