"""NIR export and import of the deterministic :class:`~spikeff.network.SpikingNet`.

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

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import nir
import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import first_nonfinite
from .fileio import atomic_write, staged
from .network import NetworkConfig, SpikingLayer, SpikingNet, fold_norm
from .neurons import LIFParams

__all__ = [
    "NIRExportError",
    "NIRImportError",
    "LoihiQuantization",
    "to_nir_graph",
    "export_nir",
    "from_nir",
    "quantize_loihi",
    "verify_nir",
    "add_export_parser",
    "cmd_export",
]

Pooling = Literal["sum", "avg"]

SNNTORCH_DT = 1e-4  # snntorch's NIR import hard-codes this time step
# Loihi 2 fixed-point ranges (as in Lava's bit-accurate LIF process model).
LOIHI_WEIGHT_BITS = 8
LOIHI_DECAY_SCALE = 4096  # du/dv are 12-bit: 0..4095
LOIHI_THRESHOLD_MAX = 2**17 - 1  # vth mantissa
LOIHI_BIAS_MAX = 2**12 - 1  # bias mantissa, 13-bit signed


class NIRExportError(ValueError):
    """A network, option or path cannot be exported to NIR."""


class NIRImportError(ValueError):
    """A NIR graph cannot be loaded as a spikeff network."""


# ----------------------------------------------------------------------------- helpers


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _below(theta: float) -> np.float32:
    """Largest float32 strictly below ``theta``: ``v > _below(theta)`` iff ``v >= theta`` in float32."""
    return np.nextafter(np.float32(theta), np.float32(-np.inf))


def _above(v_th: float) -> float:
    """Inverse of :func:`_below`: ``v >= _above(v_th)`` iff ``v > v_th`` in float32."""
    return float(np.nextafter(np.float32(v_th), np.float32(np.inf)))


def _check_dt(dt: float) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NIRExportError(f"dt must be a number of seconds, got {dt!r}") from None
    if not math.isfinite(dt) or dt <= 0:
        raise NIRExportError(f"dt must be a positive, finite number of seconds, got {dt}")
    return dt


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _head_lif(net: SpikingNet) -> LIFParams:
    return net.config.lif


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


def _layer_parts(layer: nn.Module, i: int) -> tuple[nn.Module, int]:
    """Validate a layer; returns its synapse and pool size (1 = no pooling)."""
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


# ----------------------------------------------------------------------------- export


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
    """
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    net = fold_norm(net)
    dt = _check_dt(dt)
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
        return _f32(wt), _f32(b)

    flat = False
    n_conv = 0
    for i, layer in enumerate(net.layers):
        s, p = _layer_parts(layer, i)
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
            n_conv += 1
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
        hl = _head_lif(net)
        _check_lif(hl, "readout")
        wt, b = synapse_arrays(head.fc, hl)
        add("readout", nir.Affine(weight=wt, bias=b))
        add("readout_lif", _lif_node(hl, (cfg.n_classes,), dt, fold_r, {}))
    else:  # no LIF after the linear head: its weights are never folded
        wt, b = _f32(head.fc.weight.detach().cpu().numpy()), _f32(head.fc.bias.detach().cpu().numpy())
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
        "beta": float(lif.beta),
        "threshold": float(lif.threshold),
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
        "pool": int(cfg.pool),
    }
    meta.update(metadata or {})
    try:
        return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata=meta, type_check=True)
    except (ValueError, AssertionError) as e:
        raise NIRExportError(f"NIR rejected the exported graph: {e}") from e


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise NIRExportError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise NIRExportError(f"cannot write {path}: folder {path.parent} does not exist")


def _write_graph(graph: nir.NIRGraph, path: str | Path) -> None:
    path = Path(path)
    _check_target(path)
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

    ``quantize="loihi"`` first applies :func:`quantize_loihi` and writes the dequantised
    parameters, with the integer form in each node's metadata.
    """
    dt = _check_dt(dt)
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    bad = _nonfinite(net)
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


# ----------------------------------------------------------------------------- Loihi quantisation


@dataclass(frozen=True)
class LoihiQuantization:
    """Integer form of a Loihi-quantised network; one entry per synapse, in graph order.

    A synapse's dequantised weight is ``weight_int * 2**weight_exp`` (8-bit signed mantissa,
    shared per-layer exponent), its bias ``bias_int * 2**weight_exp`` (13-bit signed), the
    threshold of the LIF it feeds ``threshold_int * 2**weight_exp`` (17-bit unsigned; a
    linear readout has none: -1), and the decay ``beta = 1 - decay_int / 4096`` (12 bit).
    """

    names: tuple[str, ...]
    weight_int: tuple[np.ndarray, ...]
    bias_int: tuple[np.ndarray, ...]
    weight_exp: tuple[int, ...]
    threshold_int: tuple[int, ...]
    decay_int: int
    bias_clipped: int

    def summary(self) -> dict[str, Any]:
        return {
            "weight_bits": LOIHI_WEIGHT_BITS,
            "decay_int": self.decay_int,
            "decay_scale": LOIHI_DECAY_SCALE,
            "weight_exp": np.array(self.weight_exp),
            "threshold_int": np.array(self.threshold_int),
            "bias_clipped": self.bias_clipped,
        }

    def node_metadata(self, net: SpikingNet, pooling: Pooling, fold_r: bool) -> dict[str, dict[str, Any]]:
        """Integer form per NIR node, in the units of the written (possibly pool-scaled) weights."""
        out: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(self.names):
            shift = 0
            if name.startswith("conv") and pooling == "sum":
                p = net.config.pool
                shift = int(round(math.log2(p * p))) if p > 1 else 0
            exp = self.weight_exp[j] - shift
            syn = {"weight_int": self.weight_int[j].astype(np.int8), "bias_int": self.bias_int[j].astype(np.int16),
                   "weight_exp": exp, "quantization": "loihi"}
            if fold_r:
                syn["note"] = "fold_r: written weights are the integer form times 1/(1-beta)"
            out[name] = syn
            if self.threshold_int[j] >= 0:
                lif_name = ("readout_lif" if name == "readout"
                            else "lif" + name[4:] if name.startswith("conv") else "lif" + name[2:])
                out[lif_name] = {
                    "threshold_int": int(self.threshold_int[j]) << shift, "threshold_exp": exp,
                    "decay_int": self.decay_int, "decay_scale": LOIHI_DECAY_SCALE,
                    "loihi_vth_strict": "a chip firing on v > vth needs vth = threshold_int - 1 (integer v)",
                }
        return out


def _quantize_synapse(w: Tensor, b: Tensor, theta: float | None) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    w64, b64 = w.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()
    wmax = float(np.abs(w64).max(initial=0.0))
    qmax = 2 ** (LOIHI_WEIGHT_BITS - 1) - 1
    exp = math.ceil(math.log2(wmax / qmax)) if wmax > 0 else 0
    if theta is not None:  # keep the threshold mantissa within its 17 bits
        exp = max(exp, math.ceil(math.log2(theta / LOIHI_THRESHOLD_MAX)))
    scale = 2.0**exp
    wi = np.clip(np.round(w64 / scale), -qmax - 1, qmax)
    bi_raw = np.round(b64 / scale)
    bi = np.clip(bi_raw, -LOIHI_BIAS_MAX - 1, LOIHI_BIAS_MAX)
    ti = int(round(theta / scale)) if theta is not None else -1
    if theta is not None and ti < 1:
        ti = 1
    return wi, bi, exp, ti, int((bi != bi_raw).sum())


def quantize_loihi(net: SpikingNet) -> tuple[SpikingNet, LoihiQuantization]:
    """A copy of ``net`` with Loihi fixed-point parameters, and their integer form.

    Weights become 8-bit signed mantissas with one power-of-two exponent per layer (the
    smallest that fits the largest weight), biases and thresholds integers on the same
    scale, and ``beta`` becomes ``1 - dv/4096`` with integer ``dv``. The copy's layers carry
    their own :class:`LIFParams` (thresholds differ per layer); noise parameters are kept.
    """
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    q = fold_norm(net)
    base = net.config.lif
    dv = int(min(max(round((1.0 - base.beta) * LOIHI_DECAY_SCALE), 0), LOIHI_DECAY_SCALE - 1))
    beta_q = 1.0 - dv / LOIHI_DECAY_SCALE
    names, wis, bis, exps, tis, clipped = [], [], [], [], [], 0
    syns: list[tuple[str, nn.Module, SpikingLayer | None]] = []
    for i, layer in enumerate(q.layers):
        s, _ = _layer_parts(layer, i)
        syns.append((f"conv{i}" if isinstance(s, nn.Conv2d) else f"fc{i}", s, layer))
    syns.append(("readout", q.head.fc, None))
    for name, s, layer in syns:
        lif = layer.lif if layer is not None else net.config.lif
        theta = lif.threshold if (layer is not None or q.head.kind == "lif") else None
        wi, bi, exp, ti, nc = _quantize_synapse(s.weight, s.bias, theta)
        with torch.no_grad():
            s.weight.copy_(torch.from_numpy(wi * 2.0**exp))
            s.bias.copy_(torch.from_numpy(bi * 2.0**exp))
        names.append(name), wis.append(wi), bis.append(bi), exps.append(exp), tis.append(ti)
        clipped += nc
        if theta is not None:
            ql = replace(lif, beta=beta_q, threshold=ti * 2.0**exp)
            if layer is not None:
                layer.lif = ql
            else:
                q.config = replace(q.config, lif=ql)
    if q.head.kind == "linear":
        q.config = replace(q.config, lif=replace(base, beta=beta_q))
    info = LoihiQuantization(tuple(names), tuple(wis), tuple(bis), tuple(exps), tuple(tis), dv, clipped)
    return q, info


# ----------------------------------------------------------------------------- import

SUPPORTED_IMPORT = ("Input", "Output", "Conv2d", "SumPool2d", "AvgPool2d", "LIF", "Flatten", "Affine", "Linear")


def _read(path_or_graph: str | Path | nir.NIRGraph) -> nir.NIRGraph:
    if isinstance(path_or_graph, nir.NIRGraph):
        return path_or_graph
    path = Path(path_or_graph)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as e:  # h5py and nir raise many types for foreign or corrupt files
        raise NIRImportError(f"{path} is not a readable NIR graph ({type(e).__name__}: {e})") from e


def _chain(graph: nir.NIRGraph) -> list[str]:
    """Node names from the single Input to the single Output; the graph must be a simple chain."""
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
    chain, node = [inputs[0]], inputs[0]
    while node != outputs[0]:
        nxt = succ.get(node, [])
        if len(nxt) != 1:
            raise NIRImportError(
                f"node {node!r} has {len(nxt)} successors; spikeff loads feed-forward chains only"
            )
        node = nxt[0]
        if node in chain:
            raise NIRImportError(f"the graph has a cycle through {node!r}; recurrent graphs are not supported")
        chain.append(node)
    if len(chain) != len(graph.nodes) or len(graph.edges) != len(chain) - 1:
        extra = sorted(set(graph.nodes) - set(chain))
        raise NIRImportError(f"nodes or edges off the Input->Output chain: {extra or 'extra edges'}")
    return chain


def _uniform(name: str, field: str, a: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise NIRImportError(f"{name}: {field} differs between neurons; spikeff needs one value per layer")
    return float(a.flat[0])


def _meta(node: nir.NIRNode) -> dict[str, Any]:
    m = getattr(node, "metadata", None)
    return m if isinstance(m, dict) else {}


def _meta_float(m: dict[str, Any], key: str) -> float | None:
    v = m.get(key)
    try:
        return None if v is None else float(np.asarray(v))
    except (TypeError, ValueError):
        return None


def _lif_from_node(name: str, node: nir.LIF, dt: float, noise: dict[str, float]) -> tuple[LIFParams, float]:
    """spikeff parameters of a NIR LIF and the gain ``r dt / tau`` to fold into its input weights."""
    tau = _uniform(name, "tau", node.tau)
    r = _uniform(name, "r", node.r)
    if _uniform(name, "v_leak", node.v_leak) != 0.0:
        raise NIRImportError(f"{name}: v_leak != 0 is not supported (spikeff's LIF leaks to 0)")
    if _uniform(name, "v_reset", node.v_reset) != 0.0:
        raise NIRImportError(f"{name}: v_reset != 0 is not supported (spikeff resets to 0)")
    v_th = _uniform(name, "v_threshold", node.v_threshold)
    if not (tau > 0 and math.isfinite(tau)):
        raise NIRImportError(f"{name}: tau must be positive and finite, got {tau}")
    beta = 1.0 - dt / tau
    if not 0.0 <= beta < 1.0:
        raise NIRImportError(
            f"{name}: dt={dt} > tau={tau} gives beta={beta:.4g} < 0; forward Euler is unstable, pass a smaller dt"
        )
    gain = r * dt / tau
    threshold = _above(v_th)
    m = _meta(node)
    mb, mt = _meta_float(m, "beta"), _meta_float(m, "threshold")
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
    graph metadata when present (else 0). Layers whose thresholds differ keep their own
    :class:`LIFParams` on ``layer.lif``.
    """
    graph = _read(path_or_graph)
    chain = _chain(graph)
    gm = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        dt = _meta_float(gm, "dt")
        if dt is None:
            raise NIRImportError("the graph has no dt in its metadata; pass dt= (seconds per time step)")
    try:
        dt = _check_dt(dt)
    except NIRExportError as e:
        raise NIRImportError(str(e)) from None
    noise = {k: max(_meta_float(gm, k) or 0.0, 0.0) for k in ("delta", "sigma")}
    nodes = [(k, graph.nodes[k]) for k in chain[1:-1]]
    inp = np.asarray(graph.nodes[chain[0]].input_type["input"]).astype(int).tolist()
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
    if len({c["k"] for c in convs}) > 1 or len({c["p"] for c in convs}) > 1:
        raise NIRImportError("all conv layers must share one kernel size and one pool size in spikeff")
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
    try:
        cfg = NetworkConfig(
            input_shape=tuple(inp), n_classes=int(head["w"].shape[0]),
            conv_channels=tuple(int(c["w"].shape[0]) for c in convs),
            hidden=tuple(int(d["w"].shape[0]) for d in hidden),
            kernel_size=convs[0]["k"] if convs else 3, pool=convs[0]["p"] if convs else 2,
            lif=head["lif"] if kind == "lif" else lifs[0], readout=kind, norm="none",  # folded on export
        )
        net = SpikingNet(cfg, torch.Generator().manual_seed(0))  # weights overwritten below
        with torch.no_grad():
            for layer, src, lif in zip(net.layers, convs + hidden, lifs):
                layer.synapse.weight.copy_(torch.from_numpy(src["w"]))
                layer.synapse.bias.copy_(torch.from_numpy(src["b"]))
                layer.lif = lif
            net.head.fc.weight.copy_(torch.from_numpy(head["w"]))
            net.head.fc.bias.copy_(torch.from_numpy(head["b"]))
    except (ValueError, RuntimeError) as e:
        raise NIRImportError(f"the graph does not describe a consistent spikeff network: {e}") from e
    bad = _nonfinite(net)
    if bad is not None:
        raise NIRImportError(f"the graph holds non-finite parameters: {bad}")
    return net.eval()


def _nonfinite(net: SpikingNet) -> str | None:
    return first_nonfinite(net.state_dict(), [asdict(layer.lif) for layer in net.layers])


# ----------------------------------------------------------------------------- verification


def reference_outputs(net: SpikingNet, x: Tensor) -> list[Tensor]:
    """Deterministic spikes of every layer ``(T, B, ...)`` and, last, the head's per-step output
    ``(T, B, K)``: readout spikes for the ``lif`` head, readout currents for the ``linear`` head."""
    net = fold_norm(net)
    with torch.no_grad():
        outs = net.layer_outputs(x, deterministic=True)
        top = outs[-1]
        if net.head.kind == "lif":
            head = net.head.spikes(top, net.config.lif.deterministic())
        else:
            head = net.head.fc(top.flatten(2))
    return outs + [head]


def _graph_dt(graph: nir.NIRGraph, dt: float | None) -> float:
    if dt is not None:
        return _check_dt(dt)
    d = _meta_float(graph.metadata if isinstance(graph.metadata, dict) else {}, "dt")
    if d is None:
        raise NIRExportError("the graph has no dt in its metadata; pass dt=")
    return d


def retime(graph: nir.NIRGraph, new_dt: float, dt: float | None = None) -> nir.NIRGraph:
    """The same discrete network for a consumer stepping at ``new_dt``: ``tau`` scaled by
    ``new_dt / dt`` (``r = tau/dt`` is unchanged). snntorch's importer assumes ``dt = 1e-4``."""
    import copy

    old = _graph_dt(graph, dt)
    g = copy.deepcopy(graph)
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            beta = _meta_float(_meta(node), "beta")
            tau = new_dt / (1.0 - beta) if beta is not None else np.asarray(node.tau, np.float64) * (new_dt / old)
            node.tau = np.full(np.shape(node.tau), tau, dtype=np.float32) if beta is not None else _f32(tau)
    g.metadata = {**g.metadata, "dt": float(new_dt)}
    return g


def fold_r(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same network with every LIF's ``r`` multiplied into the weights and bias feeding it
    and ``r = 1`` (norse ignores ``r``). Pooling between a synapse and its LIF is linear."""
    import copy

    g = copy.deepcopy(graph)
    chain = _chain(g)
    for j, name in enumerate(chain):
        node = g.nodes[name]
        if not isinstance(node, nir.LIF):
            continue
        r = _uniform(name, "r", node.r)
        if r == 1.0:
            continue
        i = j - 1
        while isinstance(g.nodes[chain[i]], (nir.SumPool2d, nir.AvgPool2d)):
            i -= 1
        syn = g.nodes[chain[i]]
        if not isinstance(syn, (nir.Conv2d, nir.Affine)):
            raise NIRExportError(f"{name}: cannot fold r into {type(syn).__name__} {chain[i]!r}")
        syn.weight = _f32(np.asarray(syn.weight, np.float64) * r)
        syn.bias = _f32(np.asarray(syn.bias, np.float64) * r)
        node.r = np.ones_like(node.r)
    g.metadata = {**g.metadata, "fold_r": 1}
    return g


def _probe_names(graph: nir.NIRGraph) -> list[str]:
    """Hidden LIF node names in chain order, then the node feeding the Output."""
    chain = _chain(graph)
    return [k for k in chain[1:-2] if isinstance(graph.nodes[k], nir.LIF)] + [chain[-2]]


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
    import contextlib
    import io

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
    import logging
    import warnings

    import norse.torch as norse

    dt = _graph_dt(graph, None)
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

    Returns ``{consumer: {"layers": [mismatches per hidden layer], "output": mismatches of the
    readout spikes (lif head) or class-prediction disagreements (linear head), "output_max_abs":
    largest difference of the readout values, "spikes": total spikes compared}}``.
    """
    graph = _read(source)
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


# ----------------------------------------------------------------------------- command line


def add_export_parser(subparsers: Any) -> Any:
    """Register ``spikeff export MODEL.pt --out model.nir [--dt S] [--quantize loihi] [--verify]``."""
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
    """
    from .checkpoint import load_checkpoint

    net, meta = load_checkpoint(args.model)
    dt = _check_dt(args.dt)
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
    _check_target(args.out)
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
