"""Trained-vs-control accuracy of `spikeff train` over several seeds, written as a results table.

    python benchmarks/core_accuracy.py --seeds 0 1 2 --out benchmarks/results/core_nmnist.md -- \\
        --dataset nmnist --data-dir ../shared/data --epochs 3

Everything after ``--`` goes to ``spikeff train`` unchanged (each seed gets its own run folder
under ``--runs``). The table reports every seed, the median and the spread (min..max) of the
held-out accuracy in each readout mode, for the trained network and the untrained control.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from spikeff.bench import device_name, git_commit
from spikeff.cli import main as spikeff_main
from spikeff.readout import MODES


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} ({min(values):.4f}..{max(values):.4f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, default=Path("runs/core_accuracy"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("train_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    train_args = [a for a in args.train_args if a != "--"]

    metrics = []
    for seed in args.seeds:
        run = args.runs / f"seed{seed}"
        rc = spikeff_main(["train", *train_args, "--seed", str(seed), "--out", str(run)])
        if rc != 0:
            return rc
        metrics.append(json.loads((run / "metrics.json").read_text()))

    m0, commit = metrics[0], git_commit()
    device = device_name(m0["device"])
    lines = [
        f"# spikeff train: trained vs untrained control on {m0['dataset']}",
        "",
        f"- command: `python benchmarks/core_accuracy.py --seeds {' '.join(map(str, args.seeds))} "
        f"--out {args.out} -- {' '.join(train_args)}`",
        f"- commit: {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        f"- device: {device}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- held-out split: {m0['test_split']} ({m0['n_test']} samples; {m0['n_train']} training samples)",
        f"- epochs {m0['epochs']} + {m0['readout_epochs']} readout epochs, {m0['trials']} trials, "
        f"T={m0['time_bins']}, batch {m0['batch_size']}, network {m0['network']['conv_channels']} conv "
        f"+ {m0['network']['hidden']} hidden, readout {m0['network']['readout']}",
        f"- train config: {m0['train_config']}",
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
    lines += ["", "Per seed (trained energy / average / deterministic; training seconds):", ""]
    for seed, m in zip(args.seeds, metrics):
        acc = m["test_accuracy"]
        lines.append(f"- seed {seed}: {acc['energy']:.4f} / {acc['average']:.4f} / {acc['deterministic']:.4f}; "
                     f"{m['train_seconds']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
