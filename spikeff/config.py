"""One run's settings as a frozen tree: ``RunConfig(data, network, train, eval, seed, runtime)``.

Every setting is a dataclass field, declared once beside the code that reads it
(:class:`~spikeff.neurons.LIFParams`, :class:`~spikeff.network.NetworkConfig`,
:class:`~spikeff.ed.EDLossConfig`, :class:`~spikeff.trainer.TrainConfig`: what the layer-local
loop reads) or here (:class:`DataConfig`, :class:`EvalConfig`, :class:`RuntimeConfig` and the
run's ``seed``), with its type, default and ``metadata["help"]``.
Everything else is derived from the fields:

* the command-line flags (:func:`flags`, :func:`add_flags`, :func:`from_args`): one flag per leaf
  field, named after the field unless ``metadata["flag"]`` names it; choices come from the field's
  ``Literal`` type or ``metadata["choices"]``; booleans get ``--x / --no-x``;
* plain dicts (:func:`to_dict`, :func:`from_dict`), checked field by field on the way back:
  unknown keys and wrongly typed values are refused, keys that an older file lacks take today's
  default, and the run-level settings that 0.1 kept under ``train`` (:data:`MOVED`) are read from
  there.

A run saves its whole ``RunConfig`` (checkpoint, ``metrics.json``, run state). ``--resume`` and
``spikeff eval`` read it back from there, so a changed default never changes an existing run.
Only :class:`RuntimeConfig` (where and how fast a run goes) may change on resume.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import torch

from .data import DATASETS
from .network import NetworkConfig
from .trainer import TrainConfig

__all__ = [
    "DataConfig", "EvalConfig", "RuntimeConfig", "RunConfig", "MOVED", "Flag", "flags", "add_flags", "from_args",
    "given_flags", "to_dict", "from_dict", "overrides", "parse_ints", "parse_finites", "parse_finite", "resolve_device",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Which samples a run sees (see :func:`spikeff.data.load_splits`)."""

    dataset: str = field(default="digits", metadata={"help": "dataset", "choices": tuple(sorted(DATASETS))})
    time_bins: int | None = field(default=None, metadata={"help": "time bins T per sample (default: the dataset's)"})
    resolution: int | None = field(default=None, metadata={"help": "dvsgesture: frame side 32 or 64"})
    limit: tuple[int, ...] | None = field(default=None, metadata={
        "help": "at most this many samples per split; TRAIN,TEST gives each its own (e.g. 5000,2000)"})
    val_fraction: float = field(default=0.2,
                                metadata={"help": "held-out share of Train when the dataset has no Test split"})
    split_seed: int = field(default=0, metadata={
        "help": "seed of that held-out share and of --limit; fixed, independent of --seed"})
    tune: bool = field(default=False, metadata={
        "help": "score on a held-out --val-fraction of the training set instead (for choosing settings; "
                "the test or validation split is not read)"})
    download: bool = field(default=False, metadata={"help": "download a missing dataset with tonic"})

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        if isinstance(self.limit, int):  # one size for both splits, as older configs wrote it
            object.__setattr__(self, "limit", (self.limit,))
        if self.limit is not None and (len(self.limit) not in (1, 2) or min(self.limit) < 1):
            raise ValueError(f"limit must be one number >= 1 or two (train,test), got {self.limit}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how fast a run goes, not what it computes: the settings ``--resume`` may change."""

    device: str = field(default="cpu", metadata={"help": "cpu, cuda or cuda:N"})
    num_workers: int = field(default=0, metadata={"help": "data loader worker processes"})
    checkpoint_minutes: float = field(default=10.0, metadata={
        "help": "also save the run state mid-epoch once this many minutes passed since the last save (0: off)"})
    data_dir: str | None = field(default=None, metadata={"help": "tonic save_to root (default: $SPIKEFF_DATA or "
                                                                 "./data)"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "frame cache (default: $SPIKEFF_CACHE or ~/.cache/spikeff)"})

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if not self.checkpoint_minutes >= 0:  # also NaN
            raise ValueError(
                f"checkpoint_minutes must be >= 0 (0 turns the timed saves off), got {self.checkpoint_minutes}")


@dataclass(frozen=True)
class EvalConfig:
    """How a run reads out and scores its trained layers (nothing the layer-local loop reads)."""

    readout_epochs: int = field(default=30, metadata={
        "help": "head-only epochs after layer training (cached features; cheap for the linear head)"})
    readout_lrs: tuple[float, ...] = field(default=(1e-2, 3e-3, 1e-3), metadata={
        "help": "linear readout learning rates to choose from on a held-out 20%% of the training inputs"})
    eval_trials: int | None = field(default=None, metadata={
        "help": "trials per test input (default: --trials); more give a less noisy energy estimate"})
    control: bool = field(default=True, metadata={
        "help": "also fit and score the untrained control (the same network at its initial weights)"})
    label_draws: int = field(default=5, metadata={
        "help": "seeded draws of k labelled training inputs per class for the label-efficient readouts (0: none)"})

    def __post_init__(self) -> None:
        if self.readout_epochs < 0:
            raise ValueError(f"readout_epochs must be >= 0, got {self.readout_epochs}")
        if not self.readout_lrs or min(self.readout_lrs) <= 0:
            raise ValueError(f"readout_lrs must be positive learning rates, got {self.readout_lrs}")
        if self.eval_trials is not None and self.eval_trials < 1:
            raise ValueError(f"eval_trials must be >= 1, got {self.eval_trials}")
        if self.label_draws < 0:
            raise ValueError(f"label_draws must be >= 0, got {self.label_draws}")


@dataclass(frozen=True)
class RunConfig:
    """All settings of one ``spikeff train`` run."""

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = field(default=0, metadata={"help": "seed of the weights, the noise and the batch order"})
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def test_trials(self) -> int:
        """Trials per test input: ``eval.eval_trials``, or ``train.trials`` when it is unset, as the network
        scores them (:meth:`~spikeff.network.NetworkConfig.test_trials`: 1 for neurons without noise)."""
        return self.network.test_trials(self.eval.eval_trials or self.train.trials)


#: Run-level settings that version 0.1 saved under ``train``: old dotted path -> today's.
MOVED = {"train.seed": "seed", **{f"train.{k}": f"eval.{k}" for k in
                                  ("readout_epochs", "readout_lrs", "eval_trials", "control", "label_draws")}}


def resolve_device(name: str) -> torch.device:
    """The device ``name`` (``--device``), checked to exist on this machine.

    Parameters
    ----------
    name : ``cpu``, ``cuda``, ``cuda:N`` or another torch device type.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError : not a device name, or a device this machine lacks.
    """
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


# ----------------------------------------------------------------------------- flags


def parse_finite(text: str) -> float:
    """A float option; NaN and infinities are refused when the command line is read.

    Parameters
    ----------
    text : the option's value.

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError : not a number, or not finite.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def parse_ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers, e.g. ``64,128``.

    Parameters
    ----------
    text : the option's value; empty items are skipped.

    Returns
    -------
    tuple of int.

    Raises
    ------
    argparse.ArgumentTypeError : an item is not an integer.
    """
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_finites(text: str) -> tuple[float, ...]:
    """Comma-separated finite floats.

    Parameters
    ----------
    text : the option's value, e.g. ``0,0.05,0.1``; empty items are skipped.

    Returns
    -------
    tuple of float, one per item.

    Raises
    ------
    argparse.ArgumentTypeError : an item is not a finite number.
    """
    return tuple(parse_finite(v) for v in text.split(",") if v.strip())


@dataclass(frozen=True)
class Flag:
    """One leaf setting as a command-line option.

    ``path`` locates the field in the tree (``("network", "lif", "beta")``), ``name`` is the
    option (``--beta``) and ``dest`` its attribute on the parsed namespace.
    """

    path: tuple[str, ...]
    name: str
    field: Field
    type: Any
    default: Any

    @property
    def dest(self) -> str:
        return "__".join(self.path)


def _hints(cls: type) -> dict[str, Any]:
    # The field types are strings (postponed annotations); resolve them in their own module.
    return typing.get_type_hints(cls)


def _optional(t: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(t) in (Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def flags(cls: type = RunConfig, instance: Any = None, path: tuple[str, ...] = ()) -> list[Flag]:
    """Every leaf field of the dataclass tree ``cls`` as a :class:`Flag`, in declaration order.

    Parameters
    ----------
    cls : a dataclass (by default the whole :class:`RunConfig`).
    instance : where the defaults are read (by default ``cls()``).

    Returns
    -------
    list of Flag
    """
    instance = cls() if instance is None else instance
    hints, out = _hints(cls), []
    for f in fields(cls):
        t, value = hints[f.name], getattr(instance, f.name)
        if is_dataclass(t):
            out += flags(t, value, path + (f.name,))
        elif f.metadata.get("cli", True):
            name = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            out.append(Flag(path + (f.name,), name, f, t, value))
    return out


def _argument(flag: Flag) -> dict[str, Any]:
    t = _optional(flag.type)
    kw: dict[str, Any] = {"help": flag.field.metadata.get("help")}
    if "choices" in flag.field.metadata:
        kw["choices"] = flag.field.metadata["choices"]
    if t is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif get_origin(t) is Literal:
        kw["choices"], kw["type"] = get_args(t), type(get_args(t)[0])
    elif get_origin(t) is tuple and get_args(t)[0] in (int, float):
        kw["type"] = parse_ints if get_args(t)[0] is int else parse_finites
        kw["metavar"] = "A,B,..."
    elif get_origin(t) is tuple:  # names, space-separated
        item = get_args(t)[0]
        kw["nargs"] = "+"
        if get_origin(item) is Literal:
            kw["choices"] = get_args(item)
    elif t is float:
        kw["type"] = parse_finite
    elif t in (int, str):
        kw["type"] = t
    else:
        raise TypeError(f"no command-line form for setting {'.'.join(flag.path)} of type {flag.type}")
    return kw


def _shown(value: Any) -> str:
    if value == ():
        return "none"
    if isinstance(value, tuple):
        return (",".join if all(isinstance(v, (int, float)) for v in value) else " ".join)(map(str, value))
    return str(value)


def add_flags(parser: argparse.ArgumentParser, selected: Iterable[Flag], defaults: bool = True) -> None:
    """Add ``selected`` flags to ``parser``, each help ending with its default.

    With ``defaults=False`` an option left out is absent from the parsed namespace (to tell
    what a user wrote).

    Parameters
    ----------
    parser : the parser or sub-parser to extend.
    selected : the flags, e.g. from :func:`flags`.
    defaults : ``False`` leaves an option the user did not give out of the parsed namespace.
    """
    for flag in selected:
        kw = _argument(flag)
        if flag.default is not None:
            kw["help"] = f"{kw['help']} (default: {_shown(flag.default)})"
        if "action" not in kw and "choices" not in kw:
            kw.setdefault("metavar", flag.name[2:].upper().replace("-", "_"))
        parser.add_argument(flag.name, dest=flag.dest, default=flag.default if defaults else argparse.SUPPRESS, **kw)


def given_flags(values: Mapping[str, Any], selected: Iterable[Flag]) -> dict[tuple[str, ...], Any]:
    """The settings present in ``values`` (a parsed namespace as a dict), keyed by path.

    Parameters
    ----------
    values : ``vars()`` of a parsed namespace.
    selected : the flags to look for.

    Returns
    -------
    dict : setting path -> value.
    """
    return {f.path: values[f.dest] for f in selected if f.dest in values}


def from_args(args: argparse.Namespace | Mapping[str, Any], base: T | None = None, cls: type[T] = RunConfig) -> T:
    """The tree ``base`` (default: ``cls()``) with every flag value found in ``args`` set.

    Parameters
    ----------
    args : a parsed namespace, or a mapping of option ``dest`` -> value.
    base : the tree to start from; ``None``: ``cls()``.
    cls : the tree's root class.

    Returns
    -------
    An instance of ``cls``, checked by :func:`from_dict`.

    Raises
    ------
    ValueError : a value that :func:`from_dict` refuses.
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    given = given_flags(values, flags(cls))
    return overrides(cls() if base is None else base, {".".join(path): value for path, value in given.items()})


# ----------------------------------------------------------------------------- dicts


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass tree as plain nested dicts (tuples stay tuples; JSON writes them as lists).

    Parameters
    ----------
    config : a dataclass instance, e.g. a :class:`RunConfig`.

    A field whose metadata has ``"dict": (write, resolve)`` is written by ``write(value)`` (e.g. a
    neuron model with its name, :func:`spikeff.neurons.neuron_to_dict`).

    Returns
    -------
    dict, one nested dict per dataclass.
    """
    out = {}
    for f in fields(config):
        v = getattr(config, f.name)
        out[f.name] = f.metadata["dict"][0](v) if "dict" in f.metadata else to_dict(v) if is_dataclass(v) else v
    return out


def _check_value(value: Any, t: Any, where: str) -> Any:
    if value is None:
        if _optional(t) is not t:  # declared ``X | None``
            return None
        raise ValueError(f"{where}: expected a value, got None")
    t = _optional(t)
    origin = get_origin(t)
    if origin is Literal:
        if value not in get_args(t):
            raise ValueError(f"{where}: expected one of {get_args(t)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one number for a list of numbers (the form of settings that became lists)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_check_value(v, get_args(t)[0], where) for v in value)
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t in (int, float, str, bool) and not (isinstance(value, t) and (t is bool or not isinstance(value, bool))):
        raise ValueError(f"{where}: expected {t.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], d: Mapping[str, Any], where: str = "") -> T:
    """Inverse of :func:`to_dict`, with checks.

    Parameters
    ----------
    cls : the dataclass to build (e.g. :class:`RunConfig`).
    d : a mapping as :func:`to_dict` wrote it; keys missing from it take today's defaults.
    where : prefix for error messages (the path of ``d`` in a larger tree).

    Returns
    -------
    An instance of ``cls``; every class's own ``__post_init__`` checks have run.

    Raises
    ------
    ValueError : an unknown key, a value of the wrong type, or a value its class refuses.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(d).__name__}")
    if cls is RunConfig:
        d = _moved(d)
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(where + k for k in unknown)}")
    kw = {}
    for f in fields(cls):
        if f.name in d:
            t, value, here = hints[f.name], d[f.name], where + f.name
            if "dict" in f.metadata:  # the class to build is named in the dict itself
                t, value = f.metadata["dict"][1](value)
            kw[f.name] = from_dict(t, value, here + ".") if is_dataclass(t) else _check_value(value, t, here)
    try:
        return cls(**kw)
    except ValueError as e:
        raise ValueError(f"{where.rstrip('.') or cls.__name__}: {e}") from None


def _moved(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` (a :class:`RunConfig` dict) with the settings of :data:`MOVED` taken to where they are now."""
    d = {k: dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
    for old, new in MOVED.items():
        (section, key), parts = old.split("."), new.split(".")
        if isinstance(d.get(section), dict) and key in d[section]:
            value = d[section].pop(key)
            node = d.setdefault(parts[0], {}) if len(parts) == 2 else d
            if isinstance(node, dict):
                node[parts[-1]] = value
    return d


def overrides(config: T, changes: Mapping[str, Any]) -> T:
    """``config`` with dotted-path ``changes`` applied, e.g. ``{"seed": 1, "network.lif.delta": 0}``.

    Parameters
    ----------
    config : a dataclass tree; left unchanged.
    changes : dotted path -> new value.

    Returns
    -------
    A new tree of ``config``'s type, checked by :func:`from_dict`.

    Raises
    ------
    ValueError : an unknown path, or a value that :func:`from_dict` refuses.
    """
    tree = to_dict(config)
    for key, value in changes.items():
        node, parts = tree, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown setting {key}")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"unknown setting {key}")
        node[parts[-1]] = value
    return from_dict(type(config), tree)

