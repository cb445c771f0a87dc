"""Where a `spikeff train` run spends its time and memory on the CPU.

    python benchmarks/profile_train.py --out benchmarks/results/profile_cpu.md -- \
        --dataset nmnist --data-dir ../shared/data --out runs/profile --overwrite

Everything after ``--`` is passed to ``spikeff train`` as it is. The whole command runs under
``cProfile``; the report gives the run's phases (their cumulative time: data, layer training,
norm calibration, readout fit, evaluation, the control), the functions with the most own time,
and the process's peak resident memory. ``--ops N`` then profiles ``N`` training batches of the
same network with ``torch.profiler`` and lists the operators with the most CPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import resource
import sys
import time
from datetime import date
from pathlib import Path

import torch

from spikeff.fileio import atomic_write
from spikeff.provenance import device_name, git_commit

REPO = Path(__file__).resolve().parents[1]

# (label, module file suffix, function name): the run's phases, in the order they run.
PHASES = [
    ("data (load, frames, cache)", "data/pipeline.py", "load_splits"),
    ("layer training", "trainer.py", "fit"),
    ("  of which: layer steps", "trainer.py", "layer_step"),
    ("  of which: head steps", "trainer.py", "head_step"),
    ("  of which: trial noise", "noise.py", "apply"),
    ("norm calibration (both nets)", "readout_fit.py", "calibrate_norm"),
    ("readout fit (both nets)", "readout_fit.py", "fit_readout"),
    ("evaluation (both nets)", "evaluation.py", "evaluate"),
    ("control (build, calibrate)", "experiment.py", "untrained_control"),
    ("label-efficient readouts (both nets)", "label_efficiency.py", "compact_label_efficiency"),
    ("  of which: noisy feature passes", "probe.py", "frozen_features"),
    ("  of which: linear readouts", "label_efficiency.py", "linear_curve"),
    ("  of which: energy heads", "label_efficiency.py", "energy_curve"),
    ("LIF scans (all phases)", "neurons.py", "lif_scan"),
    ("LIF fused scans (all phases)", "neurons.py", "lif_scan_fused"),
    ("objective (loss and statistics)", "objectives.py", "__call__"),
    ("backward passes", "_tensor.py", "backward"),
]


def phase_table(stats: pstats.Stats, total: float) -> list[str]:
    rows = ["| phase | calls | cumulative s | share |", "|---|---|---|---|"]
    for label, suffix, name in PHASES:
        calls, cum = 0, 0.0
        for (path, _, fn), (_, nc, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
            if fn == name and path.replace("\\", "/").endswith(suffix):
                calls, cum = calls + nc, cum + ct
        if calls:
            rows.append(f"| {label} | {calls} | {cum:.1f} | {cum / total:.0%} |")
    return rows


def top_own_time(stats: pstats.Stats, n: int) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(n)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:])


def op_profile(train_args: list[str], n_batches: int) -> str:
    """Top operators of ``n_batches`` training batches of the configured run (after one warm-up batch)."""
    from spikeff.cli import build_parser
    from spikeff.config import from_args
    from spikeff.experiment import run_splits, seeded_generators
    from spikeff.network import SpikingNet
    from spikeff.trainer import LayerTrainer

    args = build_parser().parse_args(["train", *train_args])
    config = from_args(args)
    splits = run_splits(config)
    net_config = config.network.for_data(splits.frame_shape, splits.n_classes)
    gens = seeded_generators(config.seed, torch.device("cpu"))
    net = SpikingNet(net_config, gens["init"])
    trainer = LayerTrainer(net, config.train, gens["train"], progress=False)
    from spikeff.data.loader import make_loader

    loader = make_loader(splits.train, config.train.batch_size, shuffle=True, seed=config.seed)
    batches = [b for _, b in zip(range(n_batches + 1), loader)]
    trainer._pass(batches[:1], list(range(len(net.layers))), head=True, desc="warm-up")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer._pass(batches[1:], list(range(len(net.layers))), head=True, desc="profiled")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the markdown here (default: print only)")
    ap.add_argument("--top", type=int, default=25, help="functions listed by own time")
    ap.add_argument("--ops", type=int, default=0, help="training batches to profile by operator (0: none)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the `spikeff train` arguments")
    args = ap.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.threads:
        torch.set_num_threads(args.threads)
    from spikeff.cli import main as spikeff_main

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    status = spikeff_main(["train", *train_args])
    prof.disable()
    if status:
        sys.exit(status)
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    commit = git_commit(REPO)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "# Profile of `spikeff train` on the CPU",
        "",
        f"- command: `python benchmarks/profile_train.py {' '.join(sys.argv[1:])}`",
        f"- commit: `{commit['commit']}`{' (with uncommitted changes)' if commit['dirty'] else ''}",
        f"- device: {device_name(torch.device('cpu'))}, torch threads {torch.get_num_threads()}, "
        f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}",
        f"- date: {date.today().isoformat()}",
        f"- wall time under cProfile: {total:.1f} s; peak resident memory: {peak_mib:.0f} MiB",
        "",
        "## Phases (cumulative time; nested rows overlap their parent)",
        "",
        *phase_table(stats, total),
        "",
        f"## Top {args.top} functions by own time",
        "",
        "```",
        top_own_time(stats, args.top),
        "```",
    ]
    if args.ops:
        lines += ["", f"## Operators of {args.ops} training batches (torch.profiler, after one warm-up batch)",
                  "", "```", op_profile(train_args, args.ops), "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_write(args.out, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
