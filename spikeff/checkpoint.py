"""Atomic checkpoints of a :class:`~spikeff.network.SpikingNet`, loadable with ``weights_only=True``.

A checkpoint is a plain dict: ``{"format": "spikeff-model", "version", "network" (the
architecture as plain types), "layer_lif" and "head_lif" (the neuron parameters each layer and
the head run with: a quantised or NIR-imported net's neurons carry their own), "state_dict",
"meta" (run details: dataset, time bins, the data manifest, ...)}``. Files without them give those
neurons the config's ``lif``.
A checkpoint with a NaN or infinite weight or neuron parameter is neither written nor loaded.
"""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .config import from_dict, to_dict
from .fileio import atomic_write
from .network import NetworkConfig, SpikingNet
from .neurons import neuron_from_dict, neuron_to_dict

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "first_nonfinite", "net_nonfinite"]

FORMAT = "spikeff-model"
VERSION = 1


class CheckpointError(ValueError):
    """A file is not a readable spikeff checkpoint."""


def first_nonfinite(
    tensors: Mapping[str, torch.Tensor], lifs: Mapping[str, Mapping[str, Any]] | None = None
) -> str | None:
    """The first tensor (or neuron parameter) holding NaN or Inf, described; ``None`` if all are finite.

    Parameters
    ----------
    tensors : name -> tensor (e.g. a state dict); non-float tensors are skipped.
    lifs : where -> neuron parameters as a dict, e.g. ``{"layer 1": {...}, "head": {...}}``.

    Returns
    -------
    str or None
    """
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            return f"tensor {name!r} has {n} non-finite value(s) of {t.numel()}"
    for where, lif in (lifs or {}).items():
        for k, v in lif.items():
            if isinstance(v, float) and not math.isfinite(v):
                return f"{where} neuron parameter {k} = {v}"
    return None


def net_nonfinite(net: SpikingNet) -> str | None:
    """The first non-finite weight or neuron parameter of ``net``, described; ``None`` if all are finite.

    Parameters
    ----------
    net : the network; its weights and its layers' and head's neuron parameters are read.

    Returns
    -------
    str or None
    """
    return first_nonfinite(net.state_dict(), _named_lifs([asdict(layer.lif) for layer in net.layers],
                                                         asdict(net.head.lif)))


def _named_lifs(layer_lifs: list[dict[str, Any]], head_lif: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Neuron parameters by where they sit, for :func:`first_nonfinite`'s message."""
    return {**{f"layer {i + 1}": d for i, d in enumerate(layer_lifs)}, "head": head_lif}


def save_checkpoint(path: str | Path, net: SpikingNet, meta: dict[str, Any] | None = None) -> None:
    """Save the network's architecture, weights and ``meta`` (plain types only) atomically.

    Raises ``CheckpointError`` (and writes nothing) if a weight or neuron parameter is not finite.

    Parameters
    ----------
    path : the checkpoint file.
    net : the network.
    meta : run details, plain types only.

    Raises
    ------
    CheckpointError : a weight or neuron parameter is not finite.
    OSError : the file cannot be written.
    """
    bad = net_nonfinite(net)
    if bad is not None:
        raise CheckpointError(f"not writing {path}: {bad}; the network diverged")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "network": to_dict(net.config),
        "layer_lif": [neuron_to_dict(layer.lif) for layer in net.layers],
        "head_lif": neuron_to_dict(net.head.lif),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": meta or {},
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in one line (torch's own text is many lines)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return e.strerror or str(e)
    if not head:
        return "empty file"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return "a PyTorch archive cut short (truncated or corrupt)"
        if isinstance(exc, pickle.UnpicklingError):
            return "it holds objects other than tensors and plain values, which are not loaded (they could run code)"
        return f"a corrupt PyTorch archive ({type(exc).__name__})"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON or other text, not a PyTorch file"
    return "not a PyTorch file (unrecognised content)"


def read_payload(
    path: Path, fmt: str, what: str, error: type[Exception] = ValueError, map_location: Any = "cpu"
) -> dict[str, Any]:
    """The dict saved at ``path`` with ``format == fmt`` (read with ``weights_only=True``).

    Parameters
    ----------
    path : the file.
    fmt : the ``format`` entry it must carry.
    what : how the errors name such a file, e.g. ``"spikeff model checkpoint"``.
    error : the exception raised, with one line naming the file.
    map_location : passed to :func:`torch.load`.

    Returns
    -------
    dict

    Raises
    ------
    error : the file is unreadable or not a dict with ``format == fmt``.
    """
    try:
        with warnings.catch_warnings():  # torch's notices about a foreign file's pickle protocol
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for foreign or corrupt files, with advice that is unsafe here
        raise error(f"{path} is not a readable {what}: {_unreadable(path, e)}") from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"{path} is not a {what} (expected a dict with format={fmt!r}, as written by `spikeff train`)")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SpikingNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the network and its meta.

    Parameters
    ----------
    path : the checkpoint file.
    map_location : where the network is put (and passed to :func:`torch.load`).

    Returns
    -------
    net : the network, in eval mode.
    meta : the run details saved with it.

    Raises
    ------
    CheckpointError : no such file, not a spikeff checkpoint, an unsupported version, a non-finite
        value, or weights that do not match the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    payload = read_payload(path, FORMAT, "spikeff model checkpoint", CheckpointError, map_location)
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    try:
        lifs = _named_lifs(list(payload.get("layer_lif") or []), payload.get("head_lif") or {})
        bad = first_nonfinite(payload["state_dict"], lifs)
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture: {e}") from e
    if bad is not None:
        raise CheckpointError(f"{path}: {bad}; the checkpoint is unusable")
    try:
        # Checkpoints written before the norm setting existed had no norm.
        net = SpikingNet(from_dict(NetworkConfig, {"norm": "none", **payload["network"]}))
        net.load_state_dict(payload["state_dict"])
        layer_lif = payload.get("layer_lif")
        if layer_lif is not None:
            if len(layer_lif) != len(net.layers):
                raise ValueError(f"{len(layer_lif)} layer_lif entries for {len(net.layers)} layers")
            for layer, d in zip(net.layers, layer_lif):
                layer.lif = neuron_from_dict(d)
        if payload.get("head_lif") is not None:
            net.head.lif = neuron_from_dict(payload["head_lif"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture: {e}") from e
    return net.to(map_location).eval(), dict(payload.get("meta", {}))
