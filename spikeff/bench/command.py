"""``spikeff-bench``: spikeff against BPTT (snntorch), Forward-Forward, untrained weights and raw counts.

The command line: its parser, the :class:`~spikeff.bench.settings.BenchSettings` it builds and
:func:`main`, which runs the bench and prints the summary (the first line above is the
parser's description).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..baselines import BPTTConfig
from ..data import DATASETS, DataError
from ..energy import COST_MODELS
from ..network import PRECISIONS
from ..neurons import SCAN_BACKENDS
from ..trainer import TrainingError
from .report import summary_table
from .runner import run_bench
from .settings import BPTT_LRS, METHODS, NOISE_LEVELS, QUICK, TRIALS_CURVE, BenchSettings

__all__ = ["build_parser", "settings_from_args", "main"]


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
    """The ``spikeff-bench`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
        Parses the options that :func:`settings_from_args` turns into settings, plus ``--out``,
        ``--resume`` and ``--overwrite``.
    """
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
    """The settings that parsed arguments ask for.

    Parameters
    ----------
    args : argparse.Namespace
        Arguments parsed by :func:`build_parser`.

    Returns
    -------
    BenchSettings
        Checked settings (a ``ValueError`` names a bad value).
    """
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
    """Run ``spikeff-bench``: the bench, its outputs in ``--out`` and a summary on stdout.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0, or 2 with a one-line error on stderr (``SPIKEFF_DEBUG`` re-raises it).
    """
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

