"""Export of the deterministic :class:`~spikeff.network.SpikingNet` as a NIR graph.

Export writes the network with its noise switched off (``delta = sigma = 0``) as a
`NIR <https://neuroir.org>`_ graph::

    Input (C, H, W)
    -> [Conv2d -> SumPool2d (weights / p^2) | AvgPool2d -> LIF] per conv layer
    -> Flatten (start_dim 0: the graph has no batch dimension)
    -> [Affine -> LIF] per hidden layer
    -> Affine (readout) [-> LIF for the ``lif`` head] -> Output

spikeff's neuron ``v[t] = beta u[t-1] + I[t]``, spike ``v >= theta``, reset to zero, is
NIR's ``tau dv/dt = (v_leak - v) + r I`` stepped by forward Euler at ``dt``::

    v[t] = v[t-1] + dt/tau (v_leak - v[t-1] + r I[t])
    tau = dt / (1 - beta),  r = tau / dt = 1 / (1 - beta),  v_leak = v_reset = 0

with the input of step ``t`` integrated before the spike test of step ``t`` (no delay).
NIR fires on ``v > v_threshold``; spikeff on ``v >= theta``; in float32 these are the same
test when ``v_threshold`` is the float32 number just below ``theta``, which is what is
written (``theta`` itself is in the graph metadata). See ``docs/nir.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
from torch import nn

from ..checkpoint import net_nonfinite
from ..fileio import atomic_write
from ..network import SpikingNet, fold_norm
from ..neurons import LIFParams
from ._common import NIRExportError, Pooling, check_dt, check_target, f32, layer_parts
from .loihi import quantize_loihi

__all__ = ["to_nir_graph", "export_nir"]


def _below(theta: float) -> np.float32:
    """Largest float32 strictly below ``theta``: ``v > _below(theta)`` iff ``v >= theta`` in float32."""
    return np.nextafter(np.float32(theta), np.float32(-np.inf))


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_lif(lif: LIFParams, where: str) -> None:
    if lif.reset != "zero":
        raise NIRExportError(
            f"{where}: reset='{lif.reset}' cannot be expressed in NIR: NIR's LIF sets v to v_reset "
            "after a spike; spikeff's subtract reset (v -= theta) has no NIR node. Train with --reset zero"
        )
    if lif.beta >= 1.0:
        raise NIRExportError(
            f"{where}: beta=1 (no leak) gives tau = dt / (1 - beta) = infinity; NIR's LIF needs a finite tau"
        )


def _lif_node(lif: LIFParams, shape: tuple[int, ...], dt: float, fold_r: bool, meta: dict[str, Any]) -> nir.LIF:
    k = 1.0 - lif.beta
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    return nir.LIF(
        tau=full(dt / k),
        r=full(1.0 if fold_r else 1.0 / k),
        v_leak=full(0.0),
        v_threshold=full(_below(lif.threshold)),
        v_reset=full(0.0),
        metadata={"beta": float(lif.beta), "threshold": float(lif.threshold), "spike_rule": "v >= threshold", **meta},
    )


def _shared(net: SpikingNet, name: str) -> float | np.ndarray:
    """A neuron parameter of the spiking modules as they run: one value when all share it, else one
    per module in layer order (the head last), as after Loihi quantisation."""
    values = [float(getattr(m.lif, name)) for m in net.neurons() if m is not net.head or net.head.kind == "lif"]
    return values[0] if len(set(values)) == 1 else np.array(values)


def to_nir_graph(
    net: SpikingNet,
    *,
    dt: float = 1e-3,
    pooling: Pooling = "sum",
    fold_r: bool = False,
    metadata: dict[str, Any] | None = None,
    node_metadata: dict[str, dict[str, Any]] | None = None,
) -> nir.NIRGraph:
    """The deterministic network as a type-checked :class:`nir.NIRGraph` (no batch dimensions).

    ``pooling="sum"`` writes ``SumPool2d`` with the conv weights and bias divided by
    ``p^2`` (read by snntorch and norse; exact for power-of-two ``p``), ``"avg"`` writes
    ``AvgPool2d`` (not read by norse). ``fold_r=True`` writes ``r = 1`` and multiplies the
    weights feeding each LIF by ``1 / (1 - beta)`` (for importers that ignore ``r``).

    Parameters
    ----------
    net : SpikingNet
        The network; normalisation layers are folded into the synapses first.
    dt : float
        Seconds per time step.
    pooling : {"sum", "avg"}
        Pooling node type.
    fold_r : bool
        Write ``r = 1`` with ``r`` folded into the weights.
    metadata : dict, optional
        Extra graph metadata (overrides the written keys of the same name).
    node_metadata : dict, optional
        Extra metadata per node name.

    Returns
    -------
    nir.NIRGraph
        The graph; :class:`NIRExportError` where the network has no NIR form.

    Raises
    ------
    NIRExportError
        If ``net`` is not a :class:`SpikingNet`, ``dt`` or ``pooling`` is invalid, a layer has
        no NIR mapping (see :func:`~spikeff.nir._common.layer_parts`), a neuron uses the
        subtract reset or ``beta = 1``, a Conv2d follows a Linear layer, a pool size is not a
        power of two with ``pooling="sum"``, or NIR's type check rejects the graph.
    """
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    other = sorted({m.lif.name for m in net.neurons() if not isinstance(m.lif, LIFParams)})
    if other:
        raise NIRExportError(f"NIR export writes LIF neurons only; this network has {', '.join(other)} neurons")
    net = fold_norm(net)
    dt = check_dt(dt)
    if pooling not in ("sum", "avg"):
        raise NIRExportError(f"pooling must be 'sum' or 'avg', got {pooling!r}")
    node_metadata = node_metadata or {}
    cfg = net.config
    c, h, w = cfg.input_shape
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([c, h, w])})}
    chain = ["input"]

    def add(name: str, node: nir.NIRNode) -> None:
        if name in node_metadata:
            node.metadata = {**node.metadata, **node_metadata[name]}
        nodes[name] = node
        chain.append(name)

    def synapse_arrays(s: nn.Module, lif: LIFParams, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        g = scale / (1.0 - lif.beta) if fold_r else scale
        wt = s.weight.detach().cpu().double().numpy() * g
        b = s.bias.detach().cpu().double().numpy() * g
        return f32(wt), f32(b)

    flat = False
    for i, layer in enumerate(net.layers):
        s, p = layer_parts(layer, i)
        lif: LIFParams = layer.lif
        _check_lif(lif, f"layer {i}")
        if isinstance(s, nn.Conv2d):
            if flat:
                raise NIRExportError(f"layer {i}: a Conv2d after a Linear layer is not supported")
            if pooling == "sum" and p > 1 and not _is_pow2(p * p):
                raise NIRExportError(f"layer {i}: pool {p} is not a power of two; use pooling='avg'")
            k = s.kernel_size[0]
            scale = 1.0 / (p * p) if pooling == "sum" else 1.0
            wt, b = synapse_arrays(s, lif, scale)
            add(f"conv{i}", nir.Conv2d(
                input_shape=(h, w), weight=wt, stride=(1, 1), padding=(k // 2, k // 2), dilation=(1, 1),
                groups=1, bias=b,
            ))
            c = s.out_channels
            if p > 1:
                arr = dict(kernel_size=np.array([p, p]), stride=np.array([p, p]), padding=np.array([0, 0]))
                add(f"pool{i}", nir.SumPool2d(**arr) if pooling == "sum" else nir.AvgPool2d(**arr))
                h, w = h // p, w // p
            add(f"lif{i}", _lif_node(lif, (c, h, w), dt, fold_r, {}))
        else:
            if not flat:
                add("flatten", nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1))
                flat = True
            wt, b = synapse_arrays(s, lif)
            add(f"fc{i}", nir.Affine(weight=wt, bias=b))
            add(f"lif{i}", _lif_node(lif, (s.out_features,), dt, fold_r, {}))
    if not flat:
        add("flatten", nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1))
    head = net.head
    if head.kind == "lif":
        hl = head.lif
        _check_lif(hl, "readout")
        wt, b = synapse_arrays(head.fc, hl)
        add("readout", nir.Affine(weight=wt, bias=b))
        add("readout_lif", _lif_node(hl, (cfg.n_classes,), dt, fold_r, {}))
    else:  # no LIF after the linear head: its weights are never folded
        wt, b = f32(head.fc.weight.detach().cpu().numpy()), f32(head.fc.bias.detach().cpu().numpy())
        add("readout", nir.Affine(weight=wt, bias=b))
    add("output", nir.Output(output_type={"output": np.array([cfg.n_classes])}))

    lif = cfg.lif
    meta: dict[str, Any] = {
        "source": "spikeff",
        "dt": dt,
        "discretisation": "forward Euler, tau = dt/(1-beta), r = tau/dt, input integrated before the spike test",
        "deterministic": "noise parameters below are ignored by deterministic consumers",
        "delta": float(lif.delta),
        "sigma": float(lif.sigma),
        **{k: _shared(net, k) for k in ("beta", "threshold")},
        "reset": lif.reset,
        "spike_rule": "v >= threshold (v_threshold is the float32 just below threshold)",
        "readout": head.kind,
        "readout_output": (
            "class scores z = mean over time steps of the readout Affine's output"
            if head.kind == "linear" else "class scores z = spike counts of readout_lif over time"
        ),
        "readout_score": "deterministic mode scores z**2; energy/average modes need noisy trials (not in NIR)",
        "pooling": pooling,
        "fold_r": int(fold_r),
        "input_shape": np.array(cfg.input_shape),
        "n_classes": int(cfg.n_classes),
        "kernel_size": int(cfg.kernel_size),
        "pool": np.array(cfg.pools),
    }
    meta.update(metadata or {})
    try:
        return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata=meta, type_check=True)
    except (ValueError, AssertionError) as e:
        raise NIRExportError(f"NIR rejected the exported graph: {e}") from e


def _write_graph(graph: nir.NIRGraph, path: str | Path) -> None:
    path = Path(path)
    check_target(path)
    # h5py needs a readable, seekable file object, hence "w+b".
    atomic_write(path, lambda f: nir.write(f, graph), mode="w+b")


def export_nir(
    net: SpikingNet,
    path: str | Path | None = None,
    *,
    dt: float = 1e-3,
    quantize: str | None = None,
    pooling: Pooling = "sum",
    fold_r: bool = False,
    metadata: dict[str, Any] | None = None,
) -> nir.NIRGraph:
    """Export the deterministic ``net`` as NIR; write it atomically to ``path`` if given.

    ``quantize="loihi"`` first applies :func:`~spikeff.nir.loihi.quantize_loihi` and writes
    the dequantised parameters, with the integer form in each node's metadata.

    Parameters
    ----------
    net : SpikingNet
        The network; refused if any parameter is non-finite.
    path : str or Path, optional
        NIR file (HDF5) to write; a failed write leaves a previous file unchanged.
    dt, pooling, fold_r, metadata
        As for :func:`to_nir_graph`.
    quantize : {"loihi"}, optional
        Fixed-point form to apply before export.

    Returns
    -------
    nir.NIRGraph
        The exported graph.

    Raises
    ------
    NIRExportError
        If ``dt`` is invalid, ``net`` is not a :class:`SpikingNet` or has a non-finite
        parameter, ``quantize`` is unknown, :func:`to_nir_graph` or
        :func:`~spikeff.nir.loihi.quantize_loihi` refuses the network, or ``path`` is a folder
        or lies in a missing one.
    OSError
        If ``path`` cannot be written; a previous file there is left as it was.
    """
    dt = check_dt(dt)
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    bad = net_nonfinite(net)
    if bad is not None:
        raise NIRExportError(f"not exporting a network with non-finite parameters: {bad}")
    node_meta: dict[str, dict[str, Any]] = {}
    meta = dict(metadata or {})
    if quantize is not None:
        if quantize != "loihi":
            raise NIRExportError(f"unknown quantize={quantize!r}; supported: 'loihi'")
        net, q = quantize_loihi(net)
        node_meta = q.node_metadata(net, pooling, fold_r)
        meta.update(quantization="loihi", **{f"loihi_{k}": v for k, v in q.summary().items()})
    graph = to_nir_graph(net, dt=dt, pooling=pooling, fold_r=fold_r, metadata=meta, node_metadata=node_meta)
    if path is not None:
        _write_graph(graph, path)
    return graph
