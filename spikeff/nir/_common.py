"""Errors and small helpers shared by the modules of :mod:`spikeff.nir`.

Each helper here serves more than one module of the package: argument checks, graph
reading and chain validation, node metadata access, and the per-layer check of which
spikeff layers have a NIR mapping.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import nir
import numpy as np
from torch import nn

from ..network import SpikingLayer

Pooling = Literal["sum", "avg"]

SUPPORTED_IMPORT = ("Input", "Output", "Conv2d", "SumPool2d", "AvgPool2d", "LIF", "Flatten", "Affine", "Linear")


class NIRExportError(ValueError):
    """A network, option or path cannot be exported to NIR."""


class NIRImportError(ValueError):
    """A NIR graph cannot be loaded as a spikeff network."""


def f32(x: Any) -> np.ndarray:
    """``x`` as a float32 NumPy array.

    Parameters
    ----------
    x : an array-like.

    Returns
    -------
    np.ndarray
    """
    return np.asarray(x, dtype=np.float32)


def check_dt(dt: float) -> float:
    """Validate a time step.

    Parameters
    ----------
    dt : float
        Seconds per time step.

    Returns
    -------
    float
        ``dt`` as a positive, finite float; anything else raises :class:`NIRExportError`.

    Raises
    ------
    NIRExportError : ``dt`` is not a number, or not positive and finite.
    """
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NIRExportError(f"dt must be a number of seconds, got {dt!r}") from None
    if not math.isfinite(dt) or dt <= 0:
        raise NIRExportError(f"dt must be a positive, finite number of seconds, got {dt}")
    return dt


def check_target(path: Path) -> None:
    """Raise :class:`NIRExportError` unless ``path`` can be a new file in an existing folder.

    Parameters
    ----------
    path : Path
        The file to be written.

    Raises
    ------
    NIRExportError : ``path`` is a folder, or its folder does not exist.
    """
    if path.is_dir():
        raise NIRExportError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise NIRExportError(f"cannot write {path}: folder {path.parent} does not exist")


def meta(node: nir.NIRNode) -> dict[str, Any]:
    """A node's ``metadata`` dict; ``{}`` if it has none.

    Parameters
    ----------
    node : a NIR node.

    Returns
    -------
    dict
    """
    m = getattr(node, "metadata", None)
    return m if isinstance(m, dict) else {}


def meta_float(m: dict[str, Any], key: str) -> float | None:
    """``m[key]`` as a float; ``None`` if absent or not a number.

    Parameters
    ----------
    m : a node's metadata (:func:`meta`).
    key : the entry.

    Returns
    -------
    float or None
    """
    v = m.get(key)
    try:
        return None if v is None else float(np.asarray(v))
    except (TypeError, ValueError):
        return None


def graph_dt(graph: nir.NIRGraph, dt: float | None) -> float:
    """``dt`` if given, else the graph's ``metadata["dt"]``; checked either way.

    Parameters
    ----------
    graph : the NIR graph.
    dt : seconds per time step, or ``None`` for the graph's.

    Returns
    -------
    float

    Raises
    ------
    NIRExportError : an invalid ``dt``, or none given and none in the graph's metadata.
    """
    if dt is not None:
        return check_dt(dt)
    d = meta_float(meta(graph), "dt")
    if d is None:
        raise NIRExportError("the graph has no dt in its metadata; pass dt= (seconds per time step)")
    return check_dt(d)


def uniform(name: str, field: str, a: Any) -> float:
    """The one value of a per-neuron NIR parameter (spikeff takes one per layer).

    Parameters
    ----------
    name, field : the node and the parameter, for the error message.
    a : the parameter's values.

    Returns
    -------
    float

    Raises
    ------
    NIRImportError : ``a`` is empty or its values differ.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise NIRImportError(f"{name}: {field} differs between neurons; spikeff needs one value per layer")
    return float(a.flat[0])


def read_graph(path_or_graph: str | Path | nir.NIRGraph) -> nir.NIRGraph:
    """The graph itself, or the graph read from a NIR file (errors as :class:`NIRImportError`).

    Parameters
    ----------
    path_or_graph : a NIR file, or a graph (returned as it is).

    Returns
    -------
    nir.NIRGraph

    Raises
    ------
    NIRImportError : no such file, or not a readable NIR graph.
    """
    if isinstance(path_or_graph, nir.NIRGraph):
        return path_or_graph
    path = Path(path_or_graph)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as e:  # h5py and nir raise many types for foreign or corrupt files
        raise NIRImportError(f"{path} is not a readable NIR graph ({type(e).__name__}: {e})") from e


def chain(graph: nir.NIRGraph) -> list[str]:
    """Node names from the single Input to the single Output; the graph must be a simple chain.

    Parameters
    ----------
    graph : the NIR graph.

    Returns
    -------
    list of str, Input first.

    Raises
    ------
    NIRImportError : an unsupported node, not one Input and one Output, or not a feed-forward chain.
    """
    bad = [f"{k} ({type(n).__name__})" for k, n in graph.nodes.items() if type(n).__name__ not in SUPPORTED_IMPORT]
    if bad:
        raise NIRImportError(
            f"unsupported NIR nodes: {', '.join(bad)}; spikeff can load {', '.join(SUPPORTED_IMPORT)}"
        )
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"expected one Input and one Output node, got inputs {inputs} and outputs {outputs}")
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    names, node = [inputs[0]], inputs[0]
    while node != outputs[0]:
        nxt = succ.get(node, [])
        if len(nxt) != 1:
            raise NIRImportError(
                f"node {node!r} has {len(nxt)} successors; spikeff loads feed-forward chains only"
            )
        node = nxt[0]
        if node in names:
            raise NIRImportError(f"the graph has a cycle through {node!r}; recurrent graphs are not supported")
        names.append(node)
    if len(names) != len(graph.nodes) or len(graph.edges) != len(names) - 1:
        extra = sorted(set(graph.nodes) - set(names))
        raise NIRImportError(f"nodes or edges off the Input->Output chain: {extra or 'extra edges'}")
    return names


def layer_parts(layer: nn.Module, i: int) -> tuple[nn.Module, int]:
    """Validate a layer; returns its synapse and pool size (1 = no pooling).

    Parameters
    ----------
    layer : one of the network's layers.
    i : its index, for the error messages.

    Returns
    -------
    The synapse (nn.Conv2d or nn.Linear) and the pool size, int.

    Raises
    ------
    NIRExportError : the layer, its synapse or its pooling has no NIR mapping.
    """
    if not isinstance(layer, SpikingLayer):
        raise NIRExportError(f"layer {i}: {type(layer).__name__} is not a SpikingLayer and has no NIR mapping")
    s = layer.synapse
    if isinstance(s, nn.Conv2d):
        k = s.kernel_size
        if (
            tuple(s.stride) != (1, 1) or tuple(s.dilation) != (1, 1) or s.groups != 1
            or s.padding_mode != "zeros" or k[0] != k[1] or tuple(s.padding) != (k[0] // 2, k[1] // 2)
        ):
            raise NIRExportError(
                f"layer {i}: Conv2d(stride={s.stride}, padding={s.padding}, dilation={s.dilation}, "
                f"groups={s.groups}, padding_mode={s.padding_mode!r}) is not exported: only stride 1, "
                "zero 'same' padding, dilation 1, groups 1 are supported"
            )
        if s.bias is None:
            raise NIRExportError(f"layer {i}: Conv2d without bias is not supported")
    elif isinstance(s, nn.Linear):
        if s.bias is None:
            raise NIRExportError(f"layer {i}: Linear without bias is not supported")
    else:
        raise NIRExportError(
            f"layer {i}: synapse {type(s).__name__} has no NIR mapping (supported: Conv2d, Linear)"
        )
    p = layer.pool
    if p is None:
        return s, 1
    if not isinstance(p, nn.AvgPool2d) or not isinstance(s, nn.Conv2d):
        raise NIRExportError(
            f"layer {i}: pooling {type(p).__name__} has no NIR mapping (supported: AvgPool2d after Conv2d)")
    ks = p.kernel_size if isinstance(p.kernel_size, int) else p.kernel_size[0]
    stride = p.stride if isinstance(p.stride, int) else p.stride[0]
    if (
        p.kernel_size not in (ks, (ks, ks)) or stride != ks or p.padding not in (0, (0, 0))
        or p.ceil_mode or p.divisor_override is not None
    ):
        raise NIRExportError(
            f"layer {i}: AvgPool2d({p.kernel_size}, stride={p.stride}, padding={p.padding}, "
            f"ceil_mode={p.ceil_mode}) is not exported: only square, non-overlapping, unpadded pooling is"
        )
    return s, ks
