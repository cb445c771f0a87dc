"""``spikeff-bench``: spikeff against BPTT (snntorch), Forward-Forward, untrained weights and raw counts.

Every method sees the same data, split, time bins and layer shapes in one run; the report gives
accuracy per seed with its median and 95 % Wilson interval, op counts and energy per inference,
training cost and peak memory, and the energy-accuracy frontier. Outputs in ``--out``:
``raw_<method>.json``, ``report.json``, ``report.md`` and PNG figures.

Modules:

* :mod:`.settings`: the methods, default curves, ``--quick`` sizes, :class:`BenchSettings` and
  the settings key that ``--resume`` compares;
* :mod:`.runner`: one method for all seeds
  (:func:`run_method`), process isolation, raw-result files and ``--resume``, :func:`run_bench`,
  :func:`merge_bench` (``--merge``: seeds run apart with ``--first-seed``, joined);
* :mod:`.aggregate`: raw results to the report dict (:func:`~spikeff.evaluation.wilson_interval`,
  :func:`build_report`, the frontier, ``NOTES``);
* :mod:`.report`: tables, ``report.md``, README blocks (:func:`update_readme`),
  :func:`write_outputs`;
* :mod:`.figures`: the matplotlib figures;
* :mod:`.command`: the argument parser and :func:`main` (``spikeff-bench``, ``python -m spikeff.bench``).
"""

from __future__ import annotations

from .aggregate import NOTES, build_report, wilson_interval
from .command import build_parser, main, settings_from_args
from .report import summary_table, update_readme, write_outputs
from .runner import merge_bench, run_bench, run_method
from .settings import BENCH_MODES, METHODS, NOISE_LEVELS, QUICK, TRIALS_CURVE, BenchSettings

__all__ = [
    "METHODS", "BENCH_MODES", "QUICK", "TRIALS_CURVE", "NOISE_LEVELS", "BenchSettings",
    "run_method", "run_bench", "merge_bench",
    "wilson_interval", "build_report", "NOTES",
    "summary_table", "update_readme", "write_outputs",
    "build_parser", "settings_from_args", "main",
]
