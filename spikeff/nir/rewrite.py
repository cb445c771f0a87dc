"""Graph-to-graph rewrites that keep the discrete network and suit a particular consumer.

snntorch's importer assumes ``dt = 1e-4`` (:func:`retime`); norse ignores ``r``
(:func:`fold_r`). Both return a new graph and leave the given one unchanged.
"""

from __future__ import annotations

import copy

import nir
import numpy as np

from ._common import NIRExportError, chain, f32, graph_dt, meta, meta_float, uniform

__all__ = ["retime", "fold_r"]


def retime(graph: nir.NIRGraph, new_dt: float, dt: float | None = None) -> nir.NIRGraph:
    """The same discrete network for a consumer stepping at ``new_dt``: ``tau`` scaled by
    ``new_dt / dt`` (``r = tau/dt`` is unchanged). snntorch's importer assumes ``dt = 1e-4``.

    Parameters
    ----------
    graph : nir.NIRGraph
        The graph (left unchanged).
    new_dt : float
        The consumer's seconds per time step.
    dt : float, optional
        The graph's seconds per time step; by default its ``metadata["dt"]``.

    Returns
    -------
    nir.NIRGraph
        A copy with every LIF's ``tau`` rescaled and ``metadata["dt"] = new_dt``.
    """
    old = graph_dt(graph, dt)
    g = copy.deepcopy(graph)
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            beta = meta_float(meta(node), "beta")
            tau = new_dt / (1.0 - beta) if beta is not None else np.asarray(node.tau, np.float64) * (new_dt / old)
            node.tau = np.full(np.shape(node.tau), tau, dtype=np.float32) if beta is not None else f32(tau)
    g.metadata = {**g.metadata, "dt": float(new_dt)}
    return g


def fold_r(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same network with every LIF's ``r`` multiplied into the weights and bias feeding it
    and ``r = 1`` (norse ignores ``r``). Pooling between a synapse and its LIF is linear.

    Parameters
    ----------
    graph : nir.NIRGraph
        A feed-forward chain (left unchanged).

    Returns
    -------
    nir.NIRGraph
        A copy with ``r = 1`` everywhere and ``metadata["fold_r"] = 1``.

    Raises
    ------
    NIRImportError
        If the graph is not a chain of supported nodes from one Input to one Output, or a LIF's
        ``r`` differs between its neurons.
    NIRExportError
        If a LIF with ``r != 1`` is not fed by a Conv2d or Affine (through pooling at most).
    """
    g = copy.deepcopy(graph)
    order = chain(g)
    for j, name in enumerate(order):
        node = g.nodes[name]
        if not isinstance(node, nir.LIF):
            continue
        r = uniform(name, "r", node.r)
        if r == 1.0:
            continue
        i = j - 1
        while isinstance(g.nodes[order[i]], (nir.SumPool2d, nir.AvgPool2d)):
            i -= 1
        syn = g.nodes[order[i]]
        if not isinstance(syn, (nir.Conv2d, nir.Affine)):
            raise NIRExportError(f"{name}: cannot fold r into {type(syn).__name__} {order[i]!r}")
        syn.weight = f32(np.asarray(syn.weight, np.float64) * r)
        syn.bias = f32(np.asarray(syn.bias, np.float64) * r)
        node.r = np.ones_like(node.r)
    g.metadata = {**g.metadata, "fold_r": 1}
    return g
