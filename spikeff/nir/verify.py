"""Verification of an exported graph: spikeff's reference spikes against the graph run in
spikeff (re-imported), snntorch and norse.

This is the only module of :mod:`spikeff.nir` that imports snntorch or norse, and it does
so inside the functions that run them, so that importing the package needs neither.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import nir
import torch
from torch import Tensor, nn

from ..network import SpikingNet, fold_norm
from ._common import chain, graph_dt, read_graph
from .load import from_nir
from .rewrite import fold_r, retime

__all__ = ["SNNTORCH_DT", "reference_outputs", "verify_nir"]

SNNTORCH_DT = 1e-4  # snntorch's NIR import hard-codes this time step


def reference_outputs(net: SpikingNet, x: Tensor) -> list[Tensor]:
    """Deterministic spikes of every layer ``(T, B, ...)`` and, last, the head's per-step output
    ``(T, B, K)``: readout spikes for the ``lif`` head, readout currents for the ``linear`` head.

    Parameters
    ----------
    net : SpikingNet
        The network (normalisation folded as on export).
    x : Tensor
        Input spikes ``(T, B, C, H, W)``.

    Returns
    -------
    list of Tensor
        One tensor per hidden layer, then the head's output.
    """
    net = fold_norm(net)
    with torch.no_grad():
        outs = net.layer_outputs(x, deterministic=True)
        top = outs[-1]
        if net.head.kind == "lif":
            head = net.head.spikes(top, deterministic=True)
        else:
            head = net.head.fc(top.flatten(2))
    return outs + [head]


def _probe_names(graph: nir.NIRGraph) -> list[str]:
    """Hidden LIF node names in chain order, then the node feeding the Output."""
    order = chain(graph)
    return [k for k in order[1:-2] if isinstance(graph.nodes[k], nir.LIF)] + [order[-2]]


def _run_stepwise(module: nn.Module, names: list[str], x: Tensor, step) -> list[Tensor]:
    """Run ``step(t_input, sample_state)`` per sample and time step (unbatched: imported
    ``Flatten(start_dim=0)`` would merge a batch dimension), recording the probed modules."""
    rec: dict[str, list[Tensor]] = {}

    def hook(name: str):
        def f(_m, _i, out):
            o = out[0] if isinstance(out, tuple) else out
            rec.setdefault(name, []).append(o.detach().clone())
        return f

    handles = [module.get_submodule(n.replace(".", "_")).register_forward_hook(hook(n)) for n in names]
    try:
        per_sample: list[list[Tensor]] = []
        for b in range(x.shape[1]):
            rec.clear()
            state = None
            with torch.no_grad():
                for t in range(x.shape[0]):
                    state = step(x[t, b], state, t == 0)
            per_sample.append([torch.stack(rec[n]) for n in names])
    finally:
        for h in handles:
            h.remove()
    return [torch.stack([s[i] for s in per_sample], 1) for i in range(len(names))]


def _run_snntorch(graph: nir.NIRGraph, x: Tensor) -> list[Tensor]:
    import snntorch
    from snntorch.import_nir import import_from_nir

    g = retime(graph, SNNTORCH_DT)
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints warnings
        module = import_from_nir(g)
    neurons = [m for m in module.modules() if isinstance(m, snntorch.SpikingNeuron)]

    def step(xt: Tensor, state: Any, first: bool) -> Any:
        if first:
            for m in neurons:
                m.reset_mem()
        module(xt)
        return None

    return _run_stepwise(module, _probe_names(g), x, step)


def _run_norse(graph: nir.NIRGraph, x: Tensor) -> list[Tensor]:
    import norse.torch as norse

    dt = graph_dt(graph, None)
    g = fold_r(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logging.disable(logging.WARNING)
        try:
            module = norse.from_nir(g, dt=dt)
        finally:
            logging.disable(logging.NOTSET)

    def step(xt: Tensor, state: Any, first: bool) -> Any:
        return module(xt, state)[1]

    return _run_stepwise(module, _probe_names(g), x, step)


def verify_nir(
    source: str | Path | nir.NIRGraph,
    net: SpikingNet,
    x: Tensor,
    consumers: tuple[str, ...] = ("spikeff", "snntorch", "norse"),
) -> dict[str, dict[str, Any]]:
    """Run ``x`` ``(T, B, C, H, W)`` through spikeff's deterministic ``net`` and through the NIR
    graph imported by each consumer; count spike mismatches per layer.

    Parameters
    ----------
    source : str, Path or nir.NIRGraph
        The exported NIR file or graph.
    net : SpikingNet
        The network it was exported from (the quantised copy for a Loihi export).
    x : Tensor
        Input spikes ``(T, B, C, H, W)``.
    consumers : tuple of str
        Any of ``"spikeff"``, ``"snntorch"``, ``"norse"``.

    Returns
    -------
    dict
        ``{consumer: {"layers": [mismatches per hidden layer], "output": mismatches of the
        readout spikes (lif head) or class-prediction disagreements (linear head),
        "output_max_abs": largest difference of the readout values, "spikes": total spikes
        compared}}``.

    Raises
    ------
    ValueError
        If ``consumers`` names an unknown consumer, or ``x`` does not fit ``net``.
    NIRImportError
        If ``source`` is not a readable NIR file or not a feed-forward chain, or, for
        ``"spikeff"``, the graph has no spikeff form (:func:`~spikeff.nir.load.from_nir`).
    NIRExportError
        For ``"snntorch"`` and ``"norse"``, if the graph has no valid ``dt`` in its metadata;
        for ``"norse"``, if its ``r`` cannot be folded (:func:`~spikeff.nir.rewrite.fold_r`).
    """
    graph = read_graph(source)
    ref = reference_outputs(net, x)
    runners = {"spikeff": lambda g, x: reference_outputs(from_nir(g), x), "snntorch": _run_snntorch,
               "norse": _run_norse}
    result: dict[str, dict[str, Any]] = {}
    for name in consumers:
        if name not in runners:
            raise ValueError(f"unknown consumer {name!r}; expected one of {sorted(runners)}")
        got = runners[name](graph, x)
        layers = [int((a.reshape(b.shape) != b).sum()) for a, b in zip(got[:-1], ref[:-1])]
        out, rout = got[-1].reshape(ref[-1].shape), ref[-1]
        if net.head.kind == "lif":
            out_mis = int((out != rout).sum())
        else:  # compare the deterministic predictions, argmax of z^2 with z = mean_t
            out_mis = int((out.mean(0).pow(2).argmax(-1) != rout.mean(0).pow(2).argmax(-1)).sum())
        result[name] = {
            "layers": layers, "output": out_mis,
            "output_max_abs": float((out - rout).abs().max()),
            "spikes": int(sum(r.numel() for r in ref[:-1])),
        }
    return result
