"""Import of a NIR graph as a :class:`~spikeff.network.SpikingNet`.

Reads feed-forward chains of the node types spikeff exports
(``[Conv2d -> (SumPool2d|AvgPool2d) -> LIF]* -> Flatten -> [Affine -> LIF]* -> Affine [-> LIF]``)
and inverts the discretisation of :mod:`spikeff.nir.export`: ``beta = 1 - dt/tau``, the gain
``r dt / tau`` folded into the weights, the threshold the float32 just above ``v_threshold``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from ..checkpoint import net_nonfinite
from ..network import NetworkConfig, SpikingNet
from ..neurons import LIFParams
from ._common import (
    NIRExportError,
    NIRImportError,
    chain,
    graph_dt,
    meta,
    meta_float,
    read_graph,
    uniform,
)

__all__ = ["from_nir"]


def _above(v_th: float) -> float:
    """Smallest float32 strictly above ``v_th``: ``v >= _above(v_th)`` iff ``v > v_th`` in float32."""
    return float(np.nextafter(np.float32(v_th), np.float32(np.inf)))


def _lif_from_node(name: str, node: nir.LIF, dt: float, noise: dict[str, float]) -> tuple[LIFParams, float]:
    """spikeff parameters of a NIR LIF and the gain ``r dt / tau`` to fold into its input weights."""
    tau = uniform(name, "tau", node.tau)
    r = uniform(name, "r", node.r)
    if uniform(name, "v_leak", node.v_leak) != 0.0:
        raise NIRImportError(f"{name}: v_leak != 0 is not supported (spikeff's LIF leaks to 0)")
    if uniform(name, "v_reset", node.v_reset) != 0.0:
        raise NIRImportError(f"{name}: v_reset != 0 is not supported (spikeff resets to 0)")
    v_th = uniform(name, "v_threshold", node.v_threshold)
    if not (tau > 0 and math.isfinite(tau)):
        raise NIRImportError(f"{name}: tau must be positive and finite, got {tau}")
    beta = 1.0 - dt / tau
    if not 0.0 <= beta < 1.0:
        raise NIRImportError(
            f"{name}: dt={dt} > tau={tau} gives beta={beta:.4g} < 0; forward Euler is unstable, pass a smaller dt"
        )
    gain = r * dt / tau
    threshold = _above(v_th)
    m = meta(node)
    mb, mt = meta_float(m, "beta"), meta_float(m, "threshold")
    if mb is not None and abs(mb - beta) < 1e-6:  # written by spikeff: use the exact values
        beta = mb
        if abs(gain - 1.0) < 1e-6:
            gain = 1.0
        elif abs(gain * (1.0 - mb) - 1.0 + mb) < 1e-6 * max(1.0, gain):
            gain = 1.0 - mb  # fold_r export
    if mt is not None and abs(mt - threshold) <= 1e-6 * max(1.0, abs(mt)):
        threshold = mt
    if threshold <= 0:
        raise NIRImportError(f"{name}: v_threshold must be positive, got {v_th}")
    try:
        return LIFParams(beta=beta, threshold=threshold, reset="zero", **noise), gain
    except ValueError as e:
        raise NIRImportError(f"{name}: {e}") from e


def from_nir(path_or_graph: str | Path | nir.NIRGraph, *, dt: float | None = None) -> SpikingNet:
    """Load a NIR graph of the node types spikeff exports as a :class:`SpikingNet`.

    ``dt`` (seconds) converts ``tau`` to ``beta = 1 - dt/tau``; by default the graph's
    ``metadata["dt"]``. Each LIF's ``r dt / tau`` is folded into the weights feeding it and
    its threshold is taken as the float32 just above ``v_threshold`` (NIR fires on
    ``v > v_threshold``, spikeff on ``v >= threshold``). Noise parameters come from the
    graph metadata when present (else 0). Each layer and a spiking head keep their own
    :class:`LIFParams` (``layer.lif``, ``head.lif``), so thresholds may differ per layer.

    Parameters
    ----------
    path_or_graph : str, Path or nir.NIRGraph
        A NIR file or an in-memory graph.
    dt : float, optional
        Seconds per time step; by default the graph's ``metadata["dt"]``.

    Returns
    -------
    SpikingNet
        The network in evaluation mode; :class:`NIRImportError` where the graph has no spikeff form.

    Raises
    ------
    NIRImportError
        If the file is missing or not a NIR graph; the graph is not a chain that spikeff's layers
        can express (node types and order, Input shape, conv and pooling geometry, one kernel
        size); ``dt`` is invalid or absent; a LIF has per-neuron values, a nonzero ``v_leak`` or
        ``v_reset``, a ``tau`` that is not positive and finite or is below ``dt``, or a threshold
        that is not positive; or the parameters are inconsistent or non-finite.
    """
    graph = read_graph(path_or_graph)
    order = chain(graph)
    gm = meta(graph)
    try:
        dt = graph_dt(graph, dt)
    except NIRExportError as e:
        raise NIRImportError(str(e)) from None
    noise = {k: max(meta_float(gm, k) or 0.0, 0.0) for k in ("delta", "sigma")}
    nodes = [(k, graph.nodes[k]) for k in order[1:-1]]
    inp = np.asarray(graph.nodes[order[0]].input_type["input"]).astype(int).tolist()
    if len(inp) != 3:
        raise NIRImportError(f"the Input must be (C, H, W) without a batch dimension, got shape {inp}")
    types = [type(n).__name__ for _, n in nodes]
    pos = 0

    def expect(*names: str) -> bool:
        return pos < len(nodes) and types[pos] in names

    def fail(msg: str) -> NIRImportError:
        seq = " -> ".join(types)
        return NIRImportError(f"{msg} (graph: Input -> {seq} -> Output); spikeff expects "
                              "[Conv2d -> (SumPool2d|AvgPool2d) -> LIF]* -> Flatten -> [Affine -> LIF]* "
                              "-> Affine [-> LIF]")

    convs: list[dict[str, Any]] = []
    while expect("Conv2d"):
        name, conv = nodes[pos]
        pos += 1
        wt = np.asarray(conv.weight, dtype=np.float64)
        k = wt.shape[-1]
        pad = conv.padding
        pad = ((k // 2, k // 2) if isinstance(pad, str) and pad == "same"
               else tuple(np.broadcast_to(np.asarray(pad), (2,)).tolist()))
        if (
            wt.ndim != 4 or wt.shape[-2] != k or k % 2 == 0 or int(conv.groups) != 1
            or tuple(np.broadcast_to(np.asarray(conv.stride), (2,)).tolist()) != (1, 1)
            or tuple(np.broadcast_to(np.asarray(conv.dilation), (2,)).tolist()) != (1, 1) or pad != (k // 2, k // 2)
        ):
            raise NIRImportError(f"{name}: only square odd kernels with stride 1, 'same' zero padding, dilation 1 "
                                 "and groups 1 are supported")
        p, scale = 1, 1.0
        if expect("SumPool2d", "AvgPool2d"):
            pname, pool = nodes[pos]
            pos += 1
            ks = np.broadcast_to(np.asarray(pool.kernel_size), (2,)).tolist()
            st = np.broadcast_to(np.asarray(pool.stride), (2,)).tolist()
            if ks[0] != ks[1] or st != ks or np.any(np.asarray(pool.padding) != 0):
                raise NIRImportError(f"{pname}: only square, non-overlapping, unpadded pooling is supported")
            p = int(ks[0])
            scale = float(p * p) if isinstance(pool, nir.SumPool2d) else 1.0
        if not expect("LIF"):
            raise fail(f"{name}: a Conv2d must be followed by (pooling and) a LIF")
        lname, lnode = nodes[pos]
        pos += 1
        lif, gain = _lif_from_node(lname, lnode, dt, noise)
        convs.append({"w": wt * scale * gain, "b": np.asarray(conv.bias, dtype=np.float64) * scale * gain,
                      "k": k, "p": p, "lif": lif})
    if len({c["k"] for c in convs}) > 1:
        raise NIRImportError("all conv layers must share one kernel size in spikeff")
    if expect("Flatten"):
        pos += 1
    elif convs or pos < len(nodes):
        raise fail("expected a Flatten after the conv layers")
    dense: list[dict[str, Any]] = []
    while expect("Affine", "Linear"):
        name, aff = nodes[pos]
        pos += 1
        wt = np.asarray(aff.weight, dtype=np.float64)
        b = np.asarray(aff.bias, dtype=np.float64) if isinstance(aff, nir.Affine) else np.zeros(wt.shape[0])
        lif, gain = None, 1.0
        if expect("LIF"):
            lname, lnode = nodes[pos]
            pos += 1
            lif, gain = _lif_from_node(lname, lnode, dt, noise)
        dense.append({"w": wt * gain, "b": b * gain, "lif": lif})
    if pos != len(nodes):
        raise fail(f"unexpected {types[pos]} node {nodes[pos][0]!r}")
    if not dense:
        raise fail("the graph has no readout Affine")
    if any(d["lif"] is None for d in dense[:-1]):
        raise fail("every Affine except the readout must be followed by a LIF")
    head = dense[-1]
    hidden = dense[:-1]
    lifs = [c["lif"] for c in convs] + [d["lif"] for d in hidden]
    if not lifs:
        raise fail("the graph has no hidden LIF layer")
    kind = "lif" if head["lif"] is not None else "linear"
    pools = tuple(c["p"] for c in convs)
    try:
        cfg = NetworkConfig(
            input_shape=tuple(inp), n_classes=int(head["w"].shape[0]),
            conv_channels=tuple(int(c["w"].shape[0]) for c in convs),
            hidden=tuple(int(d["w"].shape[0]) for d in hidden),
            kernel_size=convs[0]["k"] if convs else 3, pool=pools[:1] if len(set(pools)) == 1 else pools or (2,),
            lif=lifs[0], readout=kind, norm="none",  # folded on export
        )
        net = SpikingNet(cfg, torch.Generator().manual_seed(0))  # weights overwritten below
        with torch.no_grad():
            for layer, src, lif in zip(net.layers, convs + hidden, lifs):
                layer.synapse.weight.copy_(torch.from_numpy(src["w"]))
                layer.synapse.bias.copy_(torch.from_numpy(src["b"]))
                layer.lif = lif
            if kind == "lif":
                net.head.lif = head["lif"]
            net.head.fc.weight.copy_(torch.from_numpy(head["w"]))
            net.head.fc.bias.copy_(torch.from_numpy(head["b"]))
    except (ValueError, RuntimeError) as e:
        raise NIRImportError(f"the graph does not describe a consistent spikeff network: {e}") from e
    bad = net_nonfinite(net)
    if bad is not None:
        raise NIRImportError(f"the graph holds non-finite parameters: {bad}")
    return net.eval()
