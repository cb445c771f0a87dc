"""Training throughput on one device: spikeff's layer-local trainer vs the snntorch BPTT baseline.

    python benchmarks/throughput.py --device cuda --out benchmarks/results/throughput_h100.md

Both methods train the same architecture (``NetworkConfig``: N-MNIST's ``(2, 34, 34)`` frames,
the core's conv channels) on the same ``--batches`` batches of ``B`` inputs and ``T`` time bins,
held on the device before timing, so the figures are the training step's, not data loading's.
The frames are seeded Bernoulli events (dense ops cost the same on any values).

* ``spikeff``: :meth:`LayerTrainer.train_epoch` with the default simultaneous schedule, so
  every layer and the head learn in one forward pass per batch, ``n`` noisy trials each.
* ``bptt``: :func:`spikeff.baselines.bptt.bptt_epoch`, end to end through time.

Each case runs ``--warmup`` epochs (cuDNN autotuning, ``torch.compile``), then ``--repeats``
timed epochs (device synchronised); the table gives the median and min-max. ``samples/s`` is
``batches x B / seconds``; spikeff's ``trial-samples/s`` multiplies by ``n`` (the issue's
measure: ``n x`` spikeff's samples/s against BPTT's samples/s). Peak memory is
``torch.cuda.max_memory_allocated`` over the timed epochs (CUDA only).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import torch

from spikeff.baselines.bptt import SnnTorchNet, bptt_epoch
from spikeff.fileio import atomic_write
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.provenance import device_name, git_commit
from spikeff.trainer import LayerTrainer, TrainConfig, cosine_schedule

REPO = Path(__file__).resolve().parents[1]
CLOCKS = {"wall": "wall time", "cpu": "the process's CPU time (robust to other load with one thread; "
                                     "with more threads it also counts their spinning)"}
TARGET = 3.0  # the bound: spikeff trial-samples/s over BPTT samples/s


def make_batches(args: argparse.Namespace, cfg: NetworkConfig, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(args.batches):
        x = (torch.rand(args.time_bins, args.batch, *cfg.input_shape, generator=g) < args.density).float()
        y = torch.randint(0, cfg.n_classes, (args.batch,), generator=g)
        out.append((x.to(device), y.to(device)))
    return out


def case_epoch(case: str, cfg: NetworkConfig, args: argparse.Namespace, device: torch.device):
    """A closure that trains one epoch of ``case`` over the batches."""
    g = torch.Generator().manual_seed(1)
    if case == "bptt":
        net = SnnTorchNet(cfg, g).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        sched = cosine_schedule(opt, 10**6)
        return lambda batches: bptt_epoch(net, opt, sched, batches)
    scan, precision = case.split("/")[1:]
    net = SpikingNet(replace(cfg, scan=scan, precision=precision), g).to(device)
    trainer = LayerTrainer(net, TrainConfig(trials=args.trials), torch.Generator(device=device).manual_seed(2))
    return trainer.train_epoch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(case: str, cfg: NetworkConfig, batches: list[tuple[torch.Tensor, ...]], args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    epoch = case_epoch(case, cfg, args, device)
    for _ in range(args.warmup):
        epoch(batches)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = []
    for _ in range(args.repeats):
        t0 = clock()
        epoch(batches)
        sync(device)
        times.append(clock() - t0)
    samples = args.batches * args.batch
    sps = [samples / t for t in times]
    trials = 1 if case == "bptt" else args.trials
    out = {"case": case, "seconds": times, "sps": statistics.median(sps), "sps_min": min(sps), "sps_max": max(sps),
           "trial_sps": trials * statistics.median(sps), "trials": trials}
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def report(rows: list[dict[str, Any]], args: argparse.Namespace, cfg: NetworkConfig, device: torch.device) -> str:
    commit = git_commit(REPO)
    bptt = next((r for r in rows if r["case"] == "bptt"), None)
    lines = [
        f"# Training throughput: spikeff vs BPTT ({device_name(device)})",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- commit: `{commit['commit']}`{' (uncommitted changes)' if commit['dirty'] else ''}",
        f"- date: {date.today().isoformat()}; device: {device_name(device)}; torch {torch.__version__}; "
        f"python {platform.python_version()}",
        f"- network: conv channels {cfg.conv_channels}, hidden {cfg.hidden}, input {cfg.input_shape}, "
        f"T={args.time_bins}, B={args.batch}, {args.batches} batches per epoch, spikeff trials n={args.trials}",
        f"- {args.warmup} warm-up epochs, {args.repeats} timed epochs; median (min-max); "
        f"clock: {CLOCKS[args.clock]}, torch threads {torch.get_num_threads()}",
        "",
        "| case | inputs/s | vs BPTT per input | trial-samples/s | trial-samples vs BPTT inputs | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_input = f"{r['sps'] / bptt['sps']:.2f}x" if bptt else "-"
        ratio = f"{r['trial_sps'] / bptt['sps']:.2f}x" if bptt else "-"
        peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        lines.append(f"| {r['case']} | {r['sps']:.0f} ({r['sps_min']:.0f}-{r['sps_max']:.0f}) | {per_input} "
                     f"| {r['trial_sps']:.0f} | {ratio} | {peak} |")
    lines += ["", "inputs/s is the rate a user trains at; trial-samples/s counts each of spikeff's n noisy trials "
              f"as a sample (issue 6's target was trial-samples/s >= {TARGET:.0f}x BPTT inputs/s). spikeff cases "
              "are `spikeff/<scan>/<precision>`; BPTT runs in fp32 with snntorch's `Leaky`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", default="bptt,spikeff/eager/fp32,spikeff/compiled/fp32,spikeff/compiled/bf16")
    ap.add_argument("--channels", default="16,32", help="conv channels, e.g. 16,32")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8, help="batches per epoch")
    ap.add_argument("--time-bins", type=int, default=10)
    ap.add_argument("--trials", type=int, default=TrainConfig.trials)
    ap.add_argument("--density", type=float, default=0.05, help="fraction of input pixels with an event")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or the process's CPU time (on a machine shared with other work; use --threads 1)")
    ap.add_argument("--out", default=None, help="write the markdown here (default: print only)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = NetworkConfig(input_shape=(2, 34, 34), n_classes=10,
                        conv_channels=tuple(int(c) for c in args.channels.split(",")))
    batches = make_batches(args, cfg, device)  # the same batches for every case
    rows = []
    for case in args.cases.split(","):
        rows.append(measure(case, cfg, batches, args, device))
        print(f"{case}: {rows[-1]['sps']:.0f} samples/s", flush=True)
    text = report(rows, args, cfg, device)
    print(text)
    if args.out:
        atomic_write(Path(args.out), lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
