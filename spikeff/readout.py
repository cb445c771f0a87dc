"""Readout: a head on the top layer's spikes, and the three prediction modes.

For trial outputs ``z`` ``(n, B, K)`` of ``n`` noisy trials:

* ``energy`` (default): ``E_k = mean_n z_k^2``, the mean spike energy of class ``k``;
* ``average``: ``mean_n z_k``;
* ``deterministic``: noise off (``delta = sigma = 0``), one trial, scored by ``z_k^2``.

Two heads:

* ``linear``: ``z = W (c / T) + b`` on the top layer's spike counts ``c``. ``z`` can be
  negative, and a squared output scores large negative values as high.
* ``lif``: ``z`` is the spike count of a layer of stochastic LIF neurons driven by
  ``W s[t] + b``. Counts are non-negative, so ``E[z^2] = mean^2 + variance`` has no sign
  ambiguity, and the energy grows with both the rate and the trial-to-trial spread.

Training feeds :func:`scores` to cross-entropy as logits: the energies ``E_k`` themselves in
energy mode, so that the class probabilities are ``softmax_k(E_k)`` (a Boltzmann distribution
whose temperature the head learns through its scale), and ``mean_n z_k`` in average mode.
The energies are the logits, not their logs: the gradient of ``log E_k``, ``2 z / (z^2 + eps)``,
explodes as outputs approach zero, which can collapse a linear head and silence a spiking one
(every ``E_k = 0``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .neurons import LIFParams
from .scan import NeuronModel, ScanFn, eager_scan

__all__ = ["MODES", "Mode", "HeadKind", "Readout", "scores"]

Mode = Literal["energy", "average", "deterministic"]
HeadKind = Literal["linear", "lif"]
MODES: tuple[Mode, ...] = ("energy", "average", "deterministic")


def scores(z: Tensor, mode: Mode) -> Tensor:
    """Class scores ``(B, K)`` from trial outputs ``z`` ``(n, B, K)``.

    Parameters
    ----------
    z : head outputs of ``n`` trials ``(n, B, K)``.
    mode : one of :data:`MODES`.

    Returns
    -------
    Tensor ``(B, K)``: ``mean_n z^2`` (energy, deterministic) or ``mean_n z`` (average).

    Raises
    ------
    ValueError : ``z`` is not 3-dimensional, or an unknown mode.
    """
    if z.dim() != 3:
        raise ValueError(f"trial outputs must have shape (trials, batch, classes), got {tuple(z.shape)}")
    if mode == "average":
        return z.mean(0)
    if mode in ("energy", "deterministic"):
        return z.pow(2).mean(0)
    raise ValueError(f"unknown readout mode {mode!r}; expected one of {MODES}")


class Readout(nn.Module):
    """Linear or spiking head on time-first spikes ``(T, N, ...)``; returns ``z`` ``(N, K)``.

    ``scan`` integrates the spiking head's currents (see :mod:`spikeff.neurons`).

    Parameters
    ----------
    in_features : size of the flattened top-layer spikes.
    n_classes : number of outputs ``K``.
    kind : ``"linear"`` or ``"lif"``.
    lif : the spiking head's neuron parameters (unused by the linear head).
    scan : the spiking head's neuron scan (:mod:`spikeff.scan`).

    Raises
    ------
    ValueError : an unknown ``kind``.
    """

    def __init__(
        self, in_features: int, n_classes: int, kind: HeadKind = "linear", lif: NeuronModel | None = None,
        scan: ScanFn = eager_scan,
    ) -> None:
        super().__init__()
        if kind not in ("linear", "lif"):
            raise ValueError(f"readout must be 'linear' or 'lif', got {kind!r}")
        self.kind = kind
        self.fc = nn.Linear(in_features, n_classes)
        self.lif = LIFParams() if lif is None else lif
        self.scan = scan

    @staticmethod
    def features(spikes: Tensor) -> Tensor:
        """The linear head's input: spike counts / T, ``(T, N, ...) -> (N, D)``.

        Parameters
        ----------
        spikes : time-first spikes ``(T, N, ...)``.

        Returns
        -------
        Tensor ``(N, D)``.
        """
        return spikes.flatten(2).mean(0)

    def spikes(
        self, spikes: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        """The spiking head's own spikes ``(T, N, K)`` for input spikes ``(T, N, ...)``.

        Parameters
        ----------
        spikes : time-first top-layer spikes ``(T, N, ...)``.
        generator : source of the neuron noise.
        deterministic : switch the neuron noise off.

        Returns
        -------
        Tensor ``(T, N, K)`` of 0/1.
        """
        lif = self.lif.deterministic() if deterministic else self.lif
        return self.scan(self.fc(spikes.flatten(2)), lif, generator)[0]

    def forward(
        self, spikes: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        """``z`` ``(N, K)``: the linear head's output or the spiking head's spike counts.

        Parameters
        ----------
        spikes, generator, deterministic : as in :meth:`spikes` (unused by the linear head but ``spikes``).

        Returns
        -------
        Tensor ``(N, K)``.
        """
        if self.kind == "linear":
            return self.fc(self.features(spikes))
        return self.spikes(spikes, generator, deterministic).sum(0)
