"""Command line: ``spikeff train | eval | data info | export``.

The ``train`` flags are generated from the settings tree (:mod:`spikeff.config`). A run saves its
whole config; ``--resume`` and ``eval`` read it back from the run's files, not from the command line.

User errors (bad data, bad checkpoints, bad options, unwritable paths, a full disk, a diverging
loss) end with one ``spikeff: error: ...`` line and exit status 2; Ctrl-C ends with one line and
exit status 130, SIGTERM during ``train`` with one line and 143. A run folder has one writer at a time
(:mod:`spikeff.lock`). Set ``SPIKEFF_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, first_nonfinite, load_checkpoint, save_checkpoint
from .config import (
    RunConfig,
    RuntimeConfig,
    add_flags,
    flags,
    from_args,
    from_dict,
    overrides,
    resolve_device,
    to_dict,
)
from .data import (
    DataError,
    default_cache_dir,
    default_data_dir,
    describe,
    get_spec,
    load_recorded_test,
    make_loader,
    manifest_changes,
    manifest_summary,
)
from .distributed import init_from_env, shutdown
from .evaluation import evaluate, wilson_interval
from .experiment import EVAL_BATCH_SIZE, load_state, run_splits, seeded_generators, train_and_evaluate
from .fileio import remove_stale_temps, staged, write_json
from .label_efficiency import label_table
from .lock import folder_lock
from .network import SpikingNet
from .nir import NIRExportError, NIRImportError, check_dt, check_target, export_nir, quantize_loihi, verify_nir
from .readout import MODES
from .records import EpochRecord
from .trainer import TrainingError

__all__ = ["main", "build_parser"]

STATE_FILE = "train_state.pt"
RUN_FILES = ("model.pt", "metrics.json", STATE_FILE)


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one ``spikeff ...: error:`` line (exit 2), without the usage block."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _data_flags() -> list:
    """The flags that pick the data: the data settings and where the files are."""
    return [f for f in flags() if f.path[0] == "data" or f.path[-1] in ("data_dir", "cache_dir")]


# --quickstart: a network, budget and readout chosen so that the README's first command trains in about two
# minutes on two CPU cores (benchmarks/results/quickstart.md), as dotted-path overrides of the defaults.
QUICKSTART = {"network.conv_channels": (16, 32), "train.epochs": 2, "eval.readout_epochs": 10}


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The ``spikeff`` parser; with ``defaults=False`` an option left out is absent from the result.

    Parameters
    ----------
    defaults : ``False`` leaves an option the user did not give out of the parsed namespace.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(prog="spikeff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    unset = argparse.SUPPRESS

    t = sub.add_parser("train", help="train layer-locally by ED compression and evaluate")
    add_flags(t, flags(), defaults)
    t.add_argument("--out", type=Path, default=None if defaults else unset,
                   help="run folder for metrics.json and model.pt")
    t.add_argument("--overwrite", action="store_true", default=False if defaults else unset,
                   help="replace a finished run in --out (an interrupted run's state is never replaced)")
    t.add_argument("--quickstart", action="store_true", default=False if defaults else unset,
                   help="a small run that shows the method in about two minutes on two CPU cores: "
                        + ", ".join(f"{k}={v}" for k, v in QUICKSTART.items())
                        + " (options given beside it win); the results tables use the full size, without it")
    t.add_argument("--resume", type=Path, default=None if defaults else unset, metavar="DIR",
                   help="continue the interrupted run in DIR with its saved settings (only the runtime "
                        "options --device, --num-workers, --checkpoint-minutes, --data-dir and --cache-dir "
                        "may be given beside it)")

    e = sub.add_parser("eval", help="re-evaluate a checkpoint on its held-out split")
    e.add_argument("model", type=Path)
    e.add_argument("--data-dir", type=Path, default=None)
    e.add_argument("--cache-dir", type=Path, default=None)
    e.add_argument("--trials", type=int, default=None, help="noisy trials per input (default: the run's)")
    e.add_argument("--seed", type=int, default=None, help="noise seed (default: the training run's)")
    e.add_argument("--device", default="cpu")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="counts per split and class, sensor size, cache state")
    add_flags(info, _data_flags())
    info.add_argument("--check", action="store_true",
                      help="decode every file and list the bad ones (exit status 1 if there are any)")
    add_export_parser(sub)
    return parser


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OSError(f"cannot write to --out {path}: {e.strerror or e}") from None
    return path


def _accuracy_table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{'':<12}" + "".join(f"{m:>15}" for m in MODES)]
    for name, acc in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{acc[m]:>15.4f}" for m in MODES))
    return "\n".join(lines)


def _how_to_read(rows: dict[str, dict[str, float]], n: int) -> str:
    intervals = ", ".join(f"{name} [{lo:.3f}, {hi:.3f}]" for name, acc in rows.items()
                          for lo, hi in [wilson_interval(acc["energy"], n)])
    return (f"how to read: energy is the method's readout; the control is the same network untrained, read out "
            f"alike. 95 % intervals of the energy accuracy on {n} samples: {intervals}; where they overlap, "
            "the difference is within noise.")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what to do next."""

    status = 130


class Terminated(Interrupted):
    """SIGTERM (a scheduler's or ``kill``'s stop), handled as Ctrl-C."""

    status = 143


class _StopSignals:
    """SIGINT and SIGTERM during ``train``: raised at once as ``KeyboardInterrupt`` / :class:`Terminated`,
    and remembered, because one that lands inside a finalizer is printed and dropped by Python; the
    epoch callback then raises it again (:meth:`check`) once that epoch's run state is saved."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        self.check()

    def check(self) -> None:
        if self.received:
            raise Terminated("terminated") if self.received[-1] == signal.SIGTERM else KeyboardInterrupt


def _with_dirs(config: RunConfig) -> RunConfig:
    """Data and cache folders made absolute, so that --resume finds them from any working directory."""
    r = config.runtime
    return replace(config, runtime=replace(
        r, data_dir=str(Path(r.data_dir or default_data_dir()).absolute()),
        cache_dir=str(default_cache_dir(r.cache_dir).absolute())))


def _resume_config(args: argparse.Namespace, argv: Sequence[str]) -> tuple[RunConfig, dict[str, Any]]:
    """The interrupted run's saved config, with the runtime options given now; and its state."""
    run_dir = args.resume
    resume = load_state(run_dir / STATE_FILE)
    bad = first_nonfinite(resume["model"])
    if bad is not None:
        raise ValueError(f"{run_dir / STATE_FILE}: {bad}; the run diverged before this save and cannot be resumed")
    given = {k: v for k, v in vars(build_parser(defaults=False).parse_args(argv)).items()
             if k not in ("command", "resume")}
    every = {f.dest: f for f in flags()}
    runtime = {dest: f for dest, f in every.items() if f.path[0] == "runtime"}
    refused = sorted(every[k].name if k in every else "--" + k.replace("_", "-") for k in given if k not in runtime)
    if refused:
        raise ValueError(
            f"--resume continues {run_dir} with the settings it was started with; {', '.join(refused)} cannot "
            f"be given beside it (allowed: {', '.join(f.name for f in runtime.values())}); "
            "start a new run with --out to change them")
    saved = saved_config(resume["meta"], run_dir / STATE_FILE)
    config = from_args(given, base=saved)
    for dest, value in given.items():
        before = getattr(saved.runtime, runtime[dest].path[-1])
        print(f"resume: {runtime[dest].name} {value} (the run had {before})", flush=True)
    return config, resume


def _check_out(out: Path, overwrite: bool) -> None:
    """A new run never replaces an interrupted run's state, nor a finished run without --overwrite."""
    if (out / STATE_FILE).exists():
        raise ValueError(f"{out} holds an interrupted run ({STATE_FILE}); continue it with "
                         f"`spikeff train --resume {out}`, or delete {out / STATE_FILE} to start over")
    if (out / "model.pt").exists() and not overwrite:
        raise ValueError(f"{out} already holds a finished run (model.pt); pass --overwrite to replace it, "
                         "or choose another --out")


def _check_same_data(recorded: dict[str, Any] | None, splits: Any, out: Path) -> None:
    if recorded is None:
        warnings.warn(f"{out / STATE_FILE} records no data manifest (an older spikeff); cannot check that the "
                      "data are those the run started with", stacklevel=2)
        return
    changes = manifest_changes(recorded, splits.manifest)
    if changes is not None:
        raise DataError(f"the data changed since {out} was started: {changes}; resuming would mix held-out and "
                        "training samples. Restore the data (or pass --data-dir to the original copy), "
                        "or start a new run")


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``spikeff train``: a new run in ``--out``, or the interrupted one in ``--resume``.

    Parameters
    ----------
    args : the parsed ``spikeff train`` options.
    argv : the command line after ``spikeff`` (with ``--resume``, the options given now are read from it).

    Returns
    -------
    int, exit status 0.

    Raises
    ------
    ValueError : no ``--out`` or ``--resume``, a run already in ``--out``, or options ``--resume`` refuses.
    Interrupted : Ctrl-C; its message says whether the run can be resumed.
    """
    out = args.out if args.resume is None else args.resume
    if out is None:
        raise ValueError("spikeff train needs --out DIR (or --resume DIR)")
    if args.resume is not None and not args.resume.is_dir():
        load_state(args.resume / STATE_FILE)  # the one-line reason there is nothing to resume
    # One writer per run folder: rank 0 holds the lock under torchrun (every rank reads the same RANK).
    main_rank = os.environ.get("RANK", "0") == "0"
    lock = folder_lock(out, "--out" if args.resume is None else "--resume") if main_rank else None
    stops = _StopSignals()
    in_main = threading.current_thread() is threading.main_thread()
    # A SIGINT ignored by whoever started us (a background job, nohup) stays ignored.
    sigs = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    old = {sig: signal.signal(sig, stops) for sig in sigs} if in_main else {}
    try:
        with lock or contextlib.nullcontext():
            return _train_locked(args, argv, out, stops.check)
    except KeyboardInterrupt as e:
        kind = Terminated if isinstance(e, Terminated) else Interrupted
        what = "terminated (SIGTERM)" if kind is Terminated else "interrupted"
        if (out / STATE_FILE).exists():
            kept = "; the run state is kept" if kind is Terminated else ""
            raise kind(f"{what}{kept}; resume with: spikeff train --resume {out}") from None
        raise kind(f"{what} before the first run state was saved; nothing to resume") from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def new_run_config(args: argparse.Namespace, argv: Sequence[str]) -> RunConfig:
    """A new run's settings: the options given, over :data:`QUICKSTART`'s with ``--quickstart``.

    Parameters
    ----------
    args : the parsed ``spikeff train`` options.
    argv : the command line after ``spikeff``.

    Returns
    -------
    RunConfig
    """
    if not args.quickstart:
        return from_args(args)
    return from_args(build_parser(defaults=False).parse_args(argv), base=overrides(RunConfig(), QUICKSTART))


def _train_locked(args: argparse.Namespace, argv: Sequence[str], out: Path, check_stop: Callable[[], None]) -> int:
    """``spikeff train`` once the run folder is this process's: the checks, then the run (``check_stop``
    runs after each epoch)."""
    resume = None
    if args.resume is not None:
        config, resume = _resume_config(args, argv)
    else:
        _check_out(out, args.overwrite)
        config = new_run_config(args, argv)
        if config.train.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {config.train.epochs}: with no layer epoch the network "
                             "stays untrained (its untrained accuracy is the control row, reported by default)")
    return _train(_with_dirs(config), out, resume, check_stop)


def _print_epoch(rec: EpochRecord) -> None:
    parts = [f"layer{k}: " + "".join(f"{name} {v:.2f} " for name, v in st.objective.items()) + f"rate {st.rate:.3f}"
             for k, st in enumerate(rec.layers, 1)]
    print(f"epoch {rec.epoch} ({rec.seconds:.1f}s) | " + " | ".join(parts), flush=True)


def _train(config: RunConfig, out: Path, resume: dict[str, Any] | None, check_stop: Callable[[], None]) -> int:
    # Under torchrun (WORLD_SIZE > 1): join the group; only rank 0 prints and writes files.
    ctx = init_from_env(resolve_device(config.runtime.device))
    if resume is not None and ctx.is_main:
        where = resume["trainer"].get("position", {}).get("batches")
        at = f", {where} batches into pass {resume['trainer']['stage'] + 1}" if where else ""
        print(f"resuming {out} at epoch {resume['trainer']['epoch']}{at} ({resume['phase']} phase)", flush=True)
    if ctx.is_main:
        _writable_dir(out)
        remove_stale_temps(out, RUN_FILES)  # writes cut short by a kill
    with ctx.main_first():  # rank 0 downloads and caches the data first
        splits = run_splits(config)
    if ctx.is_main:
        print(splits.summary(), flush=True)
    if resume is not None:
        _check_same_data(resume["meta"].get("data"), splits, out)
    saved = to_dict(config)

    def epoch_done(rec: EpochRecord) -> None:  # after the epoch's run state is saved
        _print_epoch(rec)
        check_stop()

    run = train_and_evaluate(
        splits, config, on_epoch=epoch_done if ctx.is_main else None, state_path=out / STATE_FILE, resume=resume,
        state_meta={"config": saved, "out": str(out), "data": dict(splits.manifest)}, parallel=ctx,
    )
    if not ctx.is_main:
        # A worker is done once it has left the group. Interpreter shutdown can abort in gloo's
        # threads (SIGABRT) even after every rank left the group, so a worker skips that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    meta = {"config": saved, "time_bins": splits.n_time_bins, "eval_trials": run.metrics["eval_trials"],
            "test_accuracy": run.metrics["test_accuracy"], "data": dict(splits.manifest)}
    save_checkpoint(out / "model.pt", run.net, meta)
    metrics = {**run.metrics, "config": saved, "data": manifest_summary(splits.manifest),
               "history": [r.to_dict() for r in run.history]}
    write_json(out / "metrics.json", metrics)
    (out / STATE_FILE).unlink(missing_ok=True)
    rows = {"trained": run.metrics["test_accuracy"]}
    if "control_accuracy" in run.metrics:
        rows["control"] = run.metrics["control_accuracy"]
    print(f"\n{splits.test_name} accuracy ({len(splits.test)} samples, {run.metrics['eval_trials']} trials):")
    print(_accuracy_table(rows))
    print(_how_to_read(rows, len(splits.test)))
    if "label_efficiency" in run.metrics:
        le = run.metrics["label_efficiency"]
        print(f"\nreadouts fitted on k labelled training inputs per class (test accuracy, mean ± std over "
              f"{le['draws']} seeded draws; energy: the net's own head; thinned: the test inputs with half their "
              "events, read out by the same fits). Compare trained with control at k=10, clean and thinned:\n"
              f"{label_table(le)}")
    print(f"\nwrote {out / 'metrics.json'} and {out / 'model.pt'} ({run.metrics['train_seconds']:.1f}s training)")
    return 0


def saved_config(meta: dict[str, Any], path: Path) -> RunConfig:
    """The config that a run state's or a checkpoint's ``meta`` records.

    Parameters
    ----------
    meta : the ``meta`` dict of a run state or a checkpoint.
    path : the file it came from, for the error message.

    Returns
    -------
    RunConfig

    Raises
    ------
    CheckpointError : ``meta`` records no run config (a file of a pre-0.1 spikeff, or not of ``spikeff train``).
    ValueError : a recorded setting that :func:`from_dict` refuses.
    """
    if "config" not in meta:
        raise CheckpointError(f"{path} records no run config: it was written by a pre-0.1 spikeff (retrain), "
                              "or not by `spikeff train`")
    return from_dict(RunConfig, meta["config"])


def cmd_eval(args: argparse.Namespace) -> int:
    """``spikeff eval``: a checkpoint's accuracy on its recorded held-out samples.

    Parameters
    ----------
    args : the parsed ``spikeff eval`` options.

    Returns
    -------
    int, exit status 0.

    Raises
    ------
    CheckpointError : an unreadable checkpoint, or one that records no run config.
    DataError : the test samples are missing or were trained on, or their frames do not fit the model.
    """
    device = resolve_device(args.device)
    net, meta = load_checkpoint(args.model, device)
    config = saved_config(meta, args.model)
    _check_eval_data_dir(args.data_dir, str(meta.get("data", {}).get("dataset") or config.data.dataset), args.model)
    config = replace(config, runtime=RuntimeConfig(data_dir=args.data_dir and str(args.data_dir),
                                                   cache_dir=args.cache_dir and str(args.cache_dir)))
    time_bins = meta.get("time_bins", config.data.time_bins)
    if meta.get("data"):  # the recorded test samples, found by identity; refused if any was trained on
        test, test_name, frame_shape = load_recorded_test(
            meta["data"], args.data_dir, n_time_bins=time_bins, resolution=config.data.resolution,
            cache_dir=args.cache_dir,
        )
    else:
        warnings.warn(f"{args.model} records no data manifest (an older spikeff): its held-out split is drawn again "
                      "from the data found, and cannot be checked against its training samples", stacklevel=1)
        splits = run_splits(replace(config, data=replace(config.data, time_bins=time_bins)))
        test, test_name, frame_shape = splits.test, splits.test_name, splits.frame_shape
    if tuple(frame_shape) != tuple(net.config.input_shape):
        raise DataError(f"the data give frames {frame_shape}, the model expects {net.config.input_shape}")
    trials = net.config.test_trials(next(t for t in (args.trials, meta.get("eval_trials"), config.test_trials)
                                         if t is not None))
    seed = config.seed if args.seed is None else args.seed
    loader = make_loader(test, EVAL_BATCH_SIZE, shuffle=False, seed=seed)
    res = evaluate(net, loader, trials, seeded_generators(seed, device)["eval"])
    print(f"{args.model}: {test_name}, {res.n} samples, {trials} trials")
    print(_accuracy_table({"accuracy": res.accuracy}))
    return 0


def _check_eval_data_dir(data_dir: Path | None, dataset: str, model: Path) -> None:
    """Refuse a ``--data-dir`` that cannot hold the model's dataset, rather than ignore it."""
    if data_dir is None:
        return
    spec = get_spec(dataset)
    if not spec.folder:
        raise DataError(f"--data-dir {data_dir}: {model} was trained on {dataset}, which is built in and read from "
                        "no data folder; drop --data-dir")
    if not (data_dir / spec.folder).is_dir():
        raise DataError(f"--data-dir {data_dir} holds no {spec.folder}/ folder; {model} was trained on {dataset} "
                        f"(expected {data_dir / spec.folder})")


def cmd_data(args: argparse.Namespace) -> int:
    """``spikeff data info``: print a dataset's report (:func:`spikeff.data.describe`).

    Parameters
    ----------
    args : the parsed ``spikeff data info`` options.

    Returns
    -------
    int, exit status: 1 if ``--check`` found bad files, else 0.

    Raises
    ------
    DataError : missing or malformed data.
    """
    config = from_args(args)
    report = describe(**to_dict(config.data), data_dir=config.runtime.data_dir, cache_dir=config.runtime.cache_dir,
                      check=args.check)
    print(report)
    return 1 if report.bad else 0


def add_export_parser(subparsers: Any) -> Any:
    """Register ``spikeff export MODEL.pt --out model.nir [--dt S] [--quantize loihi] [--verify]``.

    Parameters
    ----------
    subparsers
        The ``add_subparsers()`` object of the main parser.

    Returns
    -------
    argparse.ArgumentParser
        The ``export`` sub-parser.
    """
    e = subparsers.add_parser("export", help="export a checkpoint's deterministic network to NIR")
    e.add_argument("model", type=Path, help="checkpoint written by `spikeff train`")
    e.add_argument("--out", type=Path, required=True, help="NIR file to write (HDF5)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.add_argument("--dt", type=float, default=1e-3, help="seconds per time bin (default 1e-3)")
    e.add_argument("--quantize", choices=("loihi",), default=None, help="Loihi fixed-point parameters")
    e.add_argument("--pooling", choices=("sum", "avg"), default="sum",
                   help="SumPool2d with weights/p^2 (read by snntorch and norse) or AvgPool2d")
    e.add_argument("--fold-r", action="store_true", help="write r=1 with r folded into the weights")
    e.add_argument("--verify", action="store_true",
                   help="re-read the file, run it in spikeff, snntorch and norse, require zero spike mismatches")
    e.add_argument("--verify-samples", type=int, default=4, help="random spike inputs for --verify")
    e.add_argument("--seed", type=int, default=0, help="seed of the --verify inputs")
    return e


def cmd_export(args: Any) -> int:
    """Export; with ``--verify`` the file replaces ``--out`` only once every consumer agrees.

    A failed verification raises ``NIRExportError`` (exit 2) and leaves a previous ``--out`` as it was.

    Parameters
    ----------
    args
        The parsed ``spikeff export`` options.

    Returns
    -------
    int
        Exit status 0.

    Raises
    ------
    CheckpointError : an unreadable checkpoint.
    NIRExportError : an existing ``--out`` without ``--overwrite``, an invalid ``--dt``, ``--verify-samples``
        below 1, an ``--out`` that is a folder or in a missing one, a network with no NIR form, or a failed
        verification.
    OSError : ``--out`` cannot be written.
    """
    net, meta = load_checkpoint(args.model)
    dt = check_dt(args.dt)
    if args.verify and args.verify_samples < 1:
        raise NIRExportError("--verify-samples must be >= 1")
    if args.out.exists() and not args.out.is_dir() and not args.overwrite:
        raise NIRExportError(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out")
    saved = from_dict(RunConfig, meta["config"]) if "config" in meta else None
    flat = {**(to_dict(saved.data) if saved else {}), "seed": saved.seed if saved else None, **meta}
    extra = {f"train_{k}": v for k, v in flat.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    what = (f"{len(net.layers)} layers, {net.head.kind} readout, dt={dt:g} s"
            f"{', loihi fixed point' if args.quantize else ''}")
    if not args.verify:
        export_nir(net, args.out, dt=dt, quantize=args.quantize, pooling=args.pooling, fold_r=args.fold_r,
                   metadata=extra)
        print(f"wrote {args.out} ({what})")
        return 0
    check_target(args.out)
    with staged(args.out) as tmp:
        export_nir(net, tmp, dt=dt, quantize=args.quantize, pooling=args.pooling, fold_r=args.fold_r, metadata=extra)
        _verify_export(tmp, net, meta, args)
    print(f"wrote {args.out} ({what}), verified")
    return 0


def _verify_export(path: Path, net: SpikingNet, meta: dict[str, Any], args: Any) -> None:
    ref_net = quantize_loihi(net)[0] if args.quantize else net
    t = int(meta.get("time_bins") or 20)
    g = torch.Generator().manual_seed(args.seed)
    x = (torch.rand((t, args.verify_samples, *net.config.input_shape), generator=g) < 0.2).float()
    consumers = ("spikeff", "snntorch", "norse") if args.pooling == "sum" else ("spikeff", "snntorch")
    res = verify_nir(path, ref_net, x, consumers)
    ok = True
    for name, r in res.items():
        bad = sum(r["layers"]) + r["output"]
        ok &= bad == 0
        print(f"verify {name:<9} spike mismatches per layer {r['layers']}, output {r['output']} "
              f"(max |readout diff| {r['output_max_abs']:.2e}, {r['spikes']} neuron-steps, "
              f"{x.shape[1]} random inputs, T={t})")
    if args.pooling != "sum":
        print("verify norse     skipped: norse's NIR import has no AvgPool2d (use --pooling sum)")
    if not ok:
        raise NIRExportError(f"the exported graph does not reproduce spikeff's spikes; {args.out} was not written "
                             "(a previous file there is unchanged)")


def _show_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """spikeff's own warnings as one ``spikeff: warning:`` line that leaves progress bars intact."""
    package = str(Path(__file__).parent)

    def showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        if not str(filename).startswith(package):
            return show(message, category, filename, lineno, file, line)
        tqdm.write(f"spikeff: warning: {message}", file=sys.stderr)

    return showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """The ``spikeff`` command line; a user error ends as one ``spikeff: error: ...`` line.

    Parameters
    ----------
    argv : the arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int, exit status: 0, 1 (``data info --check`` found bad files), 2 (user error), 130 (Ctrl-C) or 143
    (SIGTERM during ``train``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warnings(warnings.showwarning)
        return _run(args, argv)


USER_ERRORS = (DataError, CheckpointError, TrainingError, NIRExportError, NIRImportError, ValueError, OSError)


def exit_status(prog: str, run: Callable[[], int], errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """``run()``'s exit status; a user error ends as one ``prog: error: ...`` line (status 2), Ctrl-C
    as one line (status 130). ``SPIKEFF_DEBUG=1`` re-raises them instead.

    Parameters
    ----------
    prog : the program name that starts an error line.
    run : the command; returns its exit status.
    errors : the exception types reported as user errors.

    Returns
    -------
    int, ``run()``'s status, 2 after a user error, 130 after Ctrl-C, 143 after SIGTERM in ``train``.

    Raises
    ------
    errors, KeyboardInterrupt : re-raised when ``SPIKEFF_DEBUG`` is set.
    """
    try:
        return run()
    except errors as e:
        if os.environ.get("SPIKEFF_DEBUG"):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if os.environ.get("SPIKEFF_DEBUG"):
            raise
        print(f"{prog}: error: {e if isinstance(e, Interrupted) else 'interrupted'}", file=sys.stderr)
        return e.status if isinstance(e, Interrupted) else 130


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    def run() -> int:
        if args.command == "train":
            try:
                return cmd_train(args, argv)
            finally:
                shutdown()
        return {"eval": cmd_eval, "data": cmd_data, "export": cmd_export}[args.command](args)

    return exit_status("spikeff", run)


if __name__ == "__main__":
    sys.exit(main())
