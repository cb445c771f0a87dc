"""Command line: ``spikeff train | eval | data info``.

User errors (bad data, bad checkpoints, bad options, unwritable paths, a full disk, a diverging
loss) end with one ``spikeff: error: ...`` line and exit status 2; Ctrl-C ends with one line and
exit status 130. Set ``SPIKEFF_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, first_nonfinite, load_checkpoint, save_checkpoint
from .data import (
    DATASETS,
    DataError,
    default_cache_dir,
    default_data_dir,
    describe,
    load_recorded_test,
    load_splits,
    make_loader,
    manifest_changes,
    manifest_summary,
)
from .distributed import barrier, init_from_env, shutdown
from .ed import FORMS, EDLossConfig
from .experiment import EVAL_BATCH_SIZE, load_state, seeded_generators, train_and_evaluate
from .fileio import remove_stale_temps, staged, write_json
from .network import NORMS, PRECISIONS, NetworkConfig, SpikingNet
from .neurons import GRADIENTS, SCAN_BACKENDS, LIFParams
from .nir import NIRExportError, NIRImportError, check_dt, check_target, export_nir, quantize_loihi, verify_nir
from .readout import MODES
from .trainer import TrainConfig, TrainingError, evaluate

__all__ = ["main", "build_parser"]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _finites(text: str) -> tuple[float, ...]:
    """Comma-separated finite floats."""
    return tuple(_finite(v) for v in text.split(",") if v.strip())


def _finite(text: str) -> float:
    """A float option: NaN and infinities are refused when the command line is read."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one ``spikeff ...: error:`` line (exit 2), without the usage block."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    p.add_argument("--data-dir", type=Path, default=None, help="tonic save_to root (default: $SPIKEFF_DATA or ./data)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="frame cache (default: $SPIKEFF_CACHE or ~/.cache/spikeff)")
    p.add_argument("--time-bins", type=int, default=None, help="T (default: the dataset's)")
    p.add_argument("--resolution", type=int, default=None, help="dvsgesture: 32 or 64")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per split")
    p.add_argument("--val-fraction", type=_finite, default=0.2,
                   help="held-out share of Train when there is no Test split")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of that held-out share and of --limit; fixed, independent of --seed")
    p.add_argument("--download", action="store_true", help="download a missing dataset with tonic")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spikeff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train layer-locally by ED compression and evaluate")
    _add_data_args(t)
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--readout-epochs", type=int, default=TrainConfig.readout_epochs,
                   help="head-only epochs after layer training (cached features; cheap for the linear head)")
    t.add_argument("--trials", type=int, default=TrainConfig.trials, help="noisy trials per input (n)")
    t.add_argument("--eval-trials", type=int, default=None,
                   help="trials per test input (default: --trials); more give a less noisy energy estimate")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=_finite, default=TrainConfig.lr)
    t.add_argument("--head-lr", type=_finite, default=TrainConfig.head_lr,
                   help="head learning rate while the layers train (and for a spiking head's readout)")
    t.add_argument("--readout-lrs", type=_finites, default=TrainConfig.readout_lrs,
                   help="linear readout learning rates to choose from on a held-out 20%% of the training inputs "
                        f"(default: {','.join(map(str, TrainConfig.readout_lrs))})")
    t.add_argument("--schedule", choices=("greedy", "simultaneous"), default=TrainConfig.schedule)
    t.add_argument("--channels", type=_ints, default=NetworkConfig.conv_channels,
                   help=f"conv channels per layer (default: {','.join(map(str, NetworkConfig.conv_channels))})")
    t.add_argument("--hidden", type=_ints, default=(), help="fully connected layer sizes after the convs")
    t.add_argument("--beta", type=_finite, default=LIFParams.beta)
    t.add_argument("--threshold", type=_finite, default=LIFParams.threshold)
    t.add_argument("--delta", type=_finite, default=LIFParams.delta,
                   help="escape-noise temperature (0 = deterministic)")
    t.add_argument("--sigma", type=_finite, default=LIFParams.sigma, help="membrane noise std")
    t.add_argument("--reset", choices=("zero", "subtract"), default="zero")
    t.add_argument("--gradient", choices=GRADIENTS, default=LIFParams.gradient,
                   help="escape-noise gradient: pathwise (soft step at each trial's own threshold) or expected "
                        "(derivative of the spike probability; blind to trial-to-trial variance)")
    t.add_argument("--sharpness", type=_finite, default=LIFParams.sharpness,
                   help="pathwise surrogate slope in units of delta")
    t.add_argument("--norm", choices=NORMS, default=NetworkConfig.norm,
                   help="per-layer normalisation of the currents (batch: BatchNorm without affine, "
                        "folded into the synapse for evaluation and NIR)")
    t.add_argument("--readout", choices=("linear", "lif"), default="linear")
    t.add_argument("--train-mode", choices=("energy", "average"), default=TrainConfig.train_mode)
    t.add_argument("--alpha", type=_finite, default=EDLossConfig.alpha)
    t.add_argument("--covariance", choices=("trial", "second_moment"), default=EDLossConfig.covariance,
                   help="consistency: trial-to-trial covariance or uncentred second moment")
    t.add_argument("--diversity", choices=("signal", "covariance", "second_moment"), default=EDLossConfig.diversity,
                   help="diversity: noise-corrected signal covariance, covariance or second moment of trial means")
    t.add_argument("--supervised", action="store_true", help="one consistency covariance per class")
    t.add_argument("--form", choices=FORMS, default=EDLossConfig.form,
                   help="difference: alpha*ED_cons - (1-alpha)*ED_div; log_ratio: the same of their logs")
    t.add_argument("--projection", type=_ints, default=(), help="random projection dims per layer, e.g. 30,20")
    t.add_argument("--no-control", action="store_true", help="skip the untrained-weights control")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    t.add_argument("--scan", choices=SCAN_BACKENDS, default="eager",
                   help="LIF scan: eager (reference) or compiled (torch.compile, same spikes; see docs/performance.md)")
    t.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16: conv/linear under bfloat16 autocast; membrane, noise and loss stay float32")
    t.add_argument("--num-workers", type=int, default=0)
    t.add_argument("--out", type=Path, default=None, help="run folder for metrics.json and model.pt")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (an interrupted run's state is never replaced)")
    t.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the interrupted run in DIR with its own settings "
                        f"(only {', '.join(RESUME_OPTIONS)} may be given beside it)")
    t.add_argument("--checkpoint-minutes", type=_finite, default=10.0, metavar="M",
                   help="also save the run state mid-epoch once M minutes passed since the last save (0: off)")

    e = sub.add_parser("eval", help="re-evaluate a checkpoint on its held-out split")
    e.add_argument("model", type=Path)
    e.add_argument("--data-dir", type=Path, default=None)
    e.add_argument("--cache-dir", type=Path, default=None)
    e.add_argument("--trials", type=int, default=None)
    e.add_argument("--seed", type=int, default=None, help="noise seed (default: the training run's)")
    e.add_argument("--device", default="cpu")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="counts per split and class, sensor size, cache state")
    _add_data_args(info)
    info.add_argument("--check", action="store_true",
                      help="decode every file and list the bad ones (exit status 1 if there are any)")
    add_export_parser(sub)
    return parser


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device name (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    available = getattr(getattr(torch, dev.type, None), "is_available", None)
    if not (callable(available) and available()):
        raise ValueError(f"--device {name}: {dev.type} is not available on this machine (use cpu, cuda or cuda:N)")
    return dev


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OSError(f"cannot write to --out {path}: {e.strerror or e}") from None
    return path


def _splits(args: argparse.Namespace):
    return load_splits(
        args.dataset, args.data_dir, n_time_bins=args.time_bins, seed=args.split_seed,
        val_fraction=args.val_fraction, cache_dir=args.cache_dir, download=args.download,
        limit=args.limit, resolution=args.resolution,
    )


def _accuracy_table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{'':<12}" + "".join(f"{m:>15}" for m in MODES)]
    for name, acc in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{acc[m]:>15.4f}" for m in MODES))
    return "\n".join(lines)


STATE_FILE = "train_state.pt"
RUN_FILES = ("model.pt", "metrics.json", STATE_FILE)
# Options that may go beside --resume: they change where or how fast the run goes, not its numbers
# (the data's identity is checked against the run's manifest).
RESUME_OPTIONS = ("--device", "--num-workers", "--checkpoint-minutes", "--data-dir", "--cache-dir")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what to do next."""


def _given_options(argv: Sequence[str]) -> list[str]:
    """The train options written in ``argv``, by full name (argparse accepts unique prefixes)."""
    names = [o for o in vars(build_parser().parse_args(["train"])) if o]
    options = {"--" + n.replace("_", "-") for n in names}
    given = []
    for token in argv:
        if token == "--":
            break
        word = token.split("=", 1)[0]
        if not word.startswith("--"):
            continue
        full = [o for o in options if o == word] or [o for o in options if o.startswith(word)]
        given.append(full[0] if len(full) == 1 else word)
    return given


def _resume_args(args: argparse.Namespace, argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The interrupted run's own arguments, in ``args.resume`` (wherever that folder now is)."""
    run_dir = args.resume
    resume = load_state(run_dir / STATE_FILE)
    bad = first_nonfinite(resume["model"])
    if bad is not None:
        raise ValueError(f"{run_dir / STATE_FILE}: {bad}; the run diverged before this save and cannot be resumed")
    given = [o for o in _given_options(argv) if o != "--resume"]
    refused = sorted({o for o in given if o not in RESUME_OPTIONS})
    if refused:
        raise ValueError(
            f"--resume continues {run_dir} with the settings it was started with; {', '.join(refused)} cannot "
            f"be given beside it (allowed: {', '.join(RESUME_OPTIONS)}); start a new run with --out to change them"
        )
    meta = resume["meta"]
    new = build_parser().parse_args(list(meta["argv"]))
    for key in ("data_dir", "cache_dir"):  # as resolved when the run started, not against today's cwd
        if meta.get(key) is not None:
            setattr(new, key, Path(meta[key]))
    for option in dict.fromkeys(given):
        dest = option[2:].replace("-", "_")
        print(f"resume: {option} {getattr(args, dest)} (the run had {getattr(new, dest)})", flush=True)
        setattr(new, dest, getattr(args, dest))
    new.out = new.resume = run_dir
    return new, resume


def _check_out(args: argparse.Namespace) -> None:
    """A new run never replaces an interrupted run's state, nor a finished run without --overwrite."""
    out = args.out
    if (out / STATE_FILE).exists():
        raise ValueError(f"{out} holds an interrupted run ({STATE_FILE}); continue it with "
                         f"`spikeff train --resume {out}`, or delete {out / STATE_FILE} to start over")
    if (out / "model.pt").exists() and not args.overwrite:
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
    resume = None
    if args.resume is not None:
        args, resume = _resume_args(args, argv)
        argv = list(resume["meta"]["argv"])
    elif args.out is None:
        raise ValueError("spikeff train needs --out DIR (or --resume DIR)")
    else:
        _check_out(args)
    # Recorded absolute, so that --resume finds them from any working directory.
    args.data_dir = (args.data_dir or default_data_dir()).absolute()
    args.cache_dir = default_cache_dir(args.cache_dir).absolute()
    if not args.checkpoint_minutes >= 0:
        raise ValueError(
            f"--checkpoint-minutes must be >= 0 (0 turns the timed saves off), got {args.checkpoint_minutes}")
    try:
        return _train(args, argv, resume)
    except KeyboardInterrupt:
        if (args.out / STATE_FILE).exists():
            raise Interrupted(f"interrupted; resume with: spikeff train --resume {args.out}") from None
        raise Interrupted("interrupted before the first run state was saved; nothing to resume") from None


def _train(args: argparse.Namespace, argv: Sequence[str], resume: dict[str, Any] | None) -> int:
    # Under torchrun (WORLD_SIZE > 1): join the group; only rank 0 prints and writes files.
    ctx = init_from_env(_device(args.device))
    if resume is not None and ctx.is_main:
        where = resume["trainer"].get("position", {}).get("batches")
        at = f", {where} batches into pass {resume['trainer']['stage'] + 1}" if where else ""
        print(f"resuming {args.out} at epoch {resume['trainer']['epoch']}{at} ({resume['phase']} phase)", flush=True)
    out = _writable_dir(args.out) if ctx.is_main else args.out
    if ctx.is_main:
        remove_stale_temps(out, RUN_FILES)  # writes cut short by a kill
    device = ctx.device
    lif = LIFParams(beta=args.beta, threshold=args.threshold, delta=args.delta, sigma=args.sigma, reset=args.reset,
                    gradient=args.gradient, sharpness=args.sharpness)
    train_cfg = TrainConfig(
        epochs=args.epochs, readout_epochs=args.readout_epochs, trials=args.trials, lr=args.lr,
        head_lr=args.head_lr, readout_lrs=args.readout_lrs, schedule=args.schedule, projection_dims=args.projection,
        train_mode=args.train_mode,
        loss=EDLossConfig(alpha=args.alpha, covariance=args.covariance, diversity=args.diversity,
                          supervised=args.supervised, form=args.form),
    )
    if not ctx.is_main:
        barrier(ctx)  # rank 0 downloads and caches the data first
    splits = _splits(args)
    if ctx.is_main:
        barrier(ctx)
        print(splits.summary(), flush=True)
    if resume is not None:
        _check_same_data(resume["meta"].get("data"), splits, out)
    net_cfg = NetworkConfig(
        input_shape=splits.frame_shape, n_classes=splits.n_classes, conv_channels=args.channels,
        hidden=args.hidden, lif=lif, readout=args.readout, scan=args.scan, precision=args.precision, norm=args.norm,
    )

    def report(rec: dict[str, Any]) -> None:
        layers = sorted({k.split("/")[0] for k in rec if k.startswith("layer")})
        parts = [f"{layer}: ED cons {rec[f'{layer}/ed_consistency']:.2f} div {rec[f'{layer}/ed_diversity']:.2f} "
                 f"rate {rec[f'{layer}/rate']:.3f}" for layer in layers]
        print(f"epoch {rec['epoch']} ({rec['seconds']:.1f}s) | " + " | ".join(parts), flush=True)

    state_meta = {"argv": list(argv), "out": str(out), "data": dict(splits.manifest),
                  "data_dir": str(args.data_dir), "cache_dir": str(args.cache_dir)}
    run = train_and_evaluate(
        splits, net_cfg, train_cfg, seed=args.seed, device=device, batch_size=args.batch_size,
        control=not args.no_control, num_workers=args.num_workers, on_epoch=report if ctx.is_main else None,
        state_path=out / STATE_FILE, resume=resume, state_meta=state_meta,
        parallel=ctx, checkpoint_seconds=60.0 * args.checkpoint_minutes, eval_trials=args.eval_trials,
    )
    if not ctx.is_main:
        # A worker is done once it has left the group. Its interpreter shutdown was seen to abort
        # in gloo's threads (SIGABRT, "terminate called without an active exception": twice in
        # 2-process CI runs, after every rank had left the group), so it skips that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    meta = {
        "dataset": args.dataset, "time_bins": splits.n_time_bins, "resolution": args.resolution,
        "limit": args.limit, "val_fraction": args.val_fraction, "split_seed": args.split_seed, "seed": args.seed,
        "trials": args.trials,
        "eval_trials": run.metrics["eval_trials"], "test_accuracy": run.metrics["test_accuracy"],
        "data": dict(splits.manifest),
    }
    save_checkpoint(out / "model.pt", run.net, meta)
    metrics = {**run.metrics, "data": manifest_summary(splits.manifest), "history": run.history}
    write_json(out / "metrics.json", metrics)
    (out / STATE_FILE).unlink(missing_ok=True)
    rows = {"trained": run.metrics["test_accuracy"]}
    if "control_accuracy" in run.metrics:
        rows["control"] = run.metrics["control_accuracy"]
    print(f"\n{splits.test_name} accuracy ({len(splits.test)} samples, {run.metrics['eval_trials']} trials):")
    print(_accuracy_table(rows))
    print(f"\nwrote {out / 'metrics.json'} and {out / 'model.pt'} ({run.metrics['train_seconds']:.1f}s training)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    device = _device(args.device)
    net, meta = load_checkpoint(args.model, device)
    if "dataset" not in meta:
        raise CheckpointError(f"{args.model} has no dataset in its metadata; it was not written by `spikeff train`")
    if meta.get("data"):  # the recorded test samples, found by identity; refused if any was trained on
        test, test_name, frame_shape = load_recorded_test(
            meta["data"], args.data_dir, n_time_bins=meta.get("time_bins"), resolution=meta.get("resolution"),
            cache_dir=args.cache_dir,
        )
    else:
        warnings.warn(f"{args.model} records no data manifest (an older spikeff): its held-out split is drawn again "
                      "from the data found, and cannot be checked against its training samples", stacklevel=1)
        splits = load_splits(
            meta["dataset"], args.data_dir, n_time_bins=meta.get("time_bins"),
            seed=meta.get("split_seed", meta.get("seed", 0)),  # checkpoints before --split-seed split by the run seed
            val_fraction=meta.get("val_fraction", 0.2), cache_dir=args.cache_dir, limit=meta.get("limit"),
            resolution=meta.get("resolution"),
        )
        test, test_name, frame_shape = splits.test, splits.test_name, splits.frame_shape
    if tuple(frame_shape) != tuple(net.config.input_shape):
        raise DataError(f"the data give frames {frame_shape}, the model expects {net.config.input_shape}")
    trials = args.trials if args.trials is not None else meta.get("eval_trials", meta.get("trials", TrainConfig.trials))
    seed = meta.get("seed", 0) if args.seed is None else args.seed
    loader = make_loader(test, EVAL_BATCH_SIZE, shuffle=False, seed=seed)
    res = evaluate(net, loader, trials, seeded_generators(seed, device)["eval"])
    print(f"{args.model}: {test_name}, {res['n']} samples, {trials} trials")
    print(_accuracy_table({"accuracy": res}))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    report = describe(args.dataset, args.data_dir, cache_dir=args.cache_dir, n_time_bins=args.time_bins,
                      seed=args.split_seed, val_fraction=args.val_fraction, limit=args.limit,
                      resolution=args.resolution, download=args.download, check=args.check)
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
    """
    net, meta = load_checkpoint(args.model)
    dt = check_dt(args.dt)
    if args.verify and args.verify_samples < 1:
        raise NIRExportError("--verify-samples must be >= 1")
    extra = {f"train_{k}": v for k, v in meta.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warnings(warnings.showwarning)
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        if args.command == "train":
            try:
                return cmd_train(args, argv)
            finally:
                shutdown()
        return {"eval": cmd_eval, "data": cmd_data, "export": cmd_export}[args.command](args)
    except (DataError, CheckpointError, TrainingError, NIRExportError, NIRImportError, ValueError, OSError) as e:
        if os.environ.get("SPIKEFF_DEBUG"):
            raise
        print(f"spikeff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if os.environ.get("SPIKEFF_DEBUG"):
            raise
        print(f"spikeff: error: {e if isinstance(e, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
