"""Loihi 2 fixed-point quantisation of a :class:`~spikeff.network.SpikingNet`.

Weights become 8-bit signed mantissas with one power-of-two exponent per layer, biases
13-bit and thresholds 17-bit integers on the same scale, and the decay a 12-bit integer
(``beta = 1 - decay_int / 4096``), as in Lava's bit-accurate LIF process model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..network import SpikingLayer, SpikingNet, fold_norm
from ..readout import Readout
from ._common import NIRExportError, Pooling, layer_parts

__all__ = [
    "LOIHI_WEIGHT_BITS",
    "LOIHI_DECAY_SCALE",
    "LOIHI_THRESHOLD_MAX",
    "LOIHI_BIAS_MAX",
    "LoihiQuantization",
    "quantize_loihi",
]

# Loihi 2 fixed-point ranges (as in Lava's bit-accurate LIF process model).
LOIHI_WEIGHT_BITS = 8
LOIHI_DECAY_SCALE = 4096  # du/dv are 12-bit: 0..4095
LOIHI_THRESHOLD_MAX = 2**17 - 1  # vth mantissa
LOIHI_BIAS_MAX = 2**12 - 1  # bias mantissa, 13-bit signed


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
        """Graph-level summary.

        Returns
        -------
        dict
            Bit widths, decay, per-synapse exponents and thresholds, and how many biases were clipped.
        """
        return {
            "weight_bits": LOIHI_WEIGHT_BITS,
            "decay_int": self.decay_int,
            "decay_scale": LOIHI_DECAY_SCALE,
            "weight_exp": np.array(self.weight_exp),
            "threshold_int": np.array(self.threshold_int),
            "bias_clipped": self.bias_clipped,
        }

    def node_metadata(self, net: SpikingNet, pooling: Pooling, fold_r: bool) -> dict[str, dict[str, Any]]:
        """Integer form per NIR node, in the units of the written (possibly pool-scaled) weights.

        Parameters
        ----------
        net : SpikingNet
            The quantised network (for its pool size).
        pooling, fold_r
            As passed to :func:`~spikeff.nir.export.to_nir_graph`.

        Returns
        -------
        dict
            ``{node name: metadata}`` for every synapse and the LIF it feeds.
        """
        out: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(self.names):
            shift = 0
            if name.startswith("conv") and pooling == "sum":
                _, p = layer_parts(net.layers[j], j)  # the pool as to_nir_graph writes it
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
    scale, and ``beta`` becomes ``1 - dv/4096`` with integer ``dv``. The copy's layers and
    spiking head carry their own :class:`LIFParams` (thresholds differ per layer); noise
    parameters are kept.

    Parameters
    ----------
    net : SpikingNet
        The network (left unchanged).

    Returns
    -------
    tuple of (SpikingNet, LoihiQuantization)
        The dequantised copy and its integer form.

    Raises
    ------
    NIRExportError
        If ``net`` is not a :class:`SpikingNet`, its spiking neurons differ in ``beta``, or a
        layer has no NIR mapping (see :func:`~spikeff.nir._common.layer_parts`).
    """
    if not isinstance(net, SpikingNet):
        raise NIRExportError(f"expected a spikeff SpikingNet, got {type(net).__name__}")
    spiking = [m for m in net.neurons() if m is not net.head or net.head.kind == "lif"]
    betas = sorted({m.lif.beta for m in spiking})
    if len(betas) > 1:
        raise NIRExportError(
            f"Loihi quantisation uses one decay for every neuron; this net's neurons have beta {betas}")
    dv = int(min(max(round((1.0 - betas[0]) * LOIHI_DECAY_SCALE), 0), LOIHI_DECAY_SCALE - 1))
    q = fold_norm(net)
    beta_q = 1.0 - dv / LOIHI_DECAY_SCALE
    names, wis, bis, exps, tis, clipped = [], [], [], [], [], 0
    syns: list[tuple[str, nn.Module, SpikingLayer | Readout]] = []
    for i, layer in enumerate(q.layers):
        s, _ = layer_parts(layer, i)
        syns.append((f"conv{i}" if isinstance(s, nn.Conv2d) else f"fc{i}", s, layer))
    syns.append(("readout", q.head.fc, q.head))
    for name, s, owner in syns:
        spiking = owner is not q.head or q.head.kind == "lif"
        wi, bi, exp, ti, nc = _quantize_synapse(s.weight, s.bias, owner.lif.threshold if spiking else None)
        with torch.no_grad():
            s.weight.copy_(torch.from_numpy(wi * 2.0**exp))
            s.bias.copy_(torch.from_numpy(bi * 2.0**exp))
        names.append(name), wis.append(wi), bis.append(bi), exps.append(exp), tis.append(ti)
        clipped += nc
        if spiking:
            owner.lif = replace(owner.lif, beta=beta_q, threshold=ti * 2.0**exp)
    q.config = replace(q.config, lif=replace(q.config.lif, beta=beta_q))
    info = LoihiQuantization(tuple(names), tuple(wis), tuple(bis), tuple(exps), tuple(tis), dv, clipped)
    return q, info
