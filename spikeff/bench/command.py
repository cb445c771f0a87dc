"""``spikeff-bench``: spikeff against BPTT (snntorch), Forward-Forward, untrained weights and raw counts.

The command line: its parser, the :class:`~spikeff.bench.settings.BenchSettings` it builds and
:func:`main`, which runs the bench and prints the summary (the first line above is the
parser's description).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..cli import USER_ERRORS, exit_status
from ..config import add_flags, from_args, given_flags
from .report import summary_table
from .runner import merge_bench, run_bench
from .settings import BenchSettings, bench_flags, with_quick

__all__ = ["build_parser", "settings_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``spikeff-bench`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
        The settings' options (:func:`~spikeff.bench.settings.bench_flags`), which appear in the
        parsed namespace only when given, plus ``--out``, ``--resume``, ``--overwrite`` and ``--merge``.
    """
    p = argparse.ArgumentParser(prog="spikeff-bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="reuse the raw results in --out of methods run with the same settings")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="join the results of folders run on consecutive seeds (--first-seed) into --out, as one "
                        "run over all their seeds; the settings are theirs")
    add_flags(p, bench_flags(), defaults=False)
    return p


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """The settings that parsed arguments ask for, with ``--quick``'s sizes where none is given.

    Parameters
    ----------
    args : argparse.Namespace
        Arguments parsed by :func:`build_parser`.

    Returns
    -------
    BenchSettings
        Checked settings (a ``ValueError`` names a bad value).
    """
    given = given_flags(vars(args), bench_flags())
    settings = from_args(args, cls=BenchSettings)
    return with_quick(settings, {".".join(path) for path in given})


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
    t0 = time.perf_counter()

    def run() -> int:
        command = shlex.join(["spikeff-bench", *argv])
        if args.merge:
            given = [f.name for f in bench_flags() if f.dest in vars(args)] + ["--resume"] * args.resume
            if given:
                raise ValueError(f"--merge takes its settings from the merged folders; drop {' '.join(given)}")
            report = merge_bench(args.merge, args.out, command, overwrite=args.overwrite)
        else:
            report = run_bench(settings_from_args(args), args.out, command=command, resume=args.resume,
                               overwrite=args.overwrite)
        print(f"\n{report['dataset']} ({report['data']['n_test']} {report['data']['test_split']} samples), "
              f"{report['device_name']}, {time.perf_counter() - t0:.0f}s")
        print(summary_table(report))
        print(f"\nwrote {args.out / 'report.json'}, {args.out / 'report.md'} and {len(report['figures'])} figures")
        return 0

    return exit_status("spikeff-bench", run, (*USER_ERRORS, RuntimeError))
