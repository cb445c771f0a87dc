"""Layer-local objectives: a layer's trial-resolved responses -> a loss and named statistics.

An objective is any object with a tuple of statistic ``names`` and a call::

    loss, stats = objective(counts, labels, reduce)

``counts`` are a layer's spike counts ``(n, B, C, *S)`` (``n`` trials of ``B`` inputs, ``C`` channels,
optional positions ``S``), ``labels`` the batch's classes ``(B,)`` and ``reduce`` a differentiable
sum over the processes that each hold part of the batch (``None`` on one process, see
:mod:`spikeff.distributed`). ``stats`` maps each of ``names`` to a 0-d tensor; the trainer records
them per layer (:class:`~spikeff.records.LayerStats`) and the epoch line prints them.

The objectives of this module; the first three are chosen by ``TrainConfig.objective`` through
:data:`OBJECTIVES`, the last by Forward-Forward (:mod:`spikeff.baselines.ff`), whose inputs carry
the label embedding it needs:

* ``"ed"`` (:class:`EDObjective`): ED compression in the form and with the covariance kinds of
  :class:`~spikeff.ed.EDLossConfig` (:func:`spikeff.ed.ed_loss`);
* ``"seed"`` (:class:`SeedObjective`): the published method: uncentred second moments pooled over
  copies and positions, ``0.5 * ED_cons - 0.5 * ED_div`` raw (with ``--projection`` for its random
  orthogonal projection);
* ``"ed_guarded"`` (:class:`GuardedEDObjective`): ``"ed"`` plus a variance floor on every channel
  and a decorrelation penalty (VICReg-like), against the silent or collapsed layer;
* ``"goodness"`` (:class:`GoodnessObjective`): Forward-Forward's goodness, the trials being the
  positive (``counts[0]``) and the negative (``counts[1]``) pass of each input.

The ED math (effective dimensionality, the covariances) stays in :mod:`spikeff.ed`.

To add an objective: write a frozen dataclass with ``names`` and ``__call__`` (here or in your own
module) and add its name to :data:`ObjectiveName` and :data:`OBJECTIVES`; ``docs/architecture.md``
has a worked example.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .ed import EDLossConfig, Reduce, ed_loss

__all__ = ["Objective", "ObjectiveName", "OBJECTIVES", "make_objective", "project", "EDObjective", "SeedObjective",
           "GuardedEDObjective", "GoodnessObjective", "goodness"]

ObjectiveName = Literal["ed", "seed", "ed_guarded"]


class Objective(Protocol):
    """A layer-local objective: ``(counts, labels, reduce) -> (loss, {name: statistic})``."""

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the statistics the call returns, in order."""
        ...

    def __call__(self, counts: Tensor, labels: Tensor | None = None,
                 reduce: Reduce | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        ...


def project(counts: Tensor, projection: Tensor | None) -> Tensor:
    """Map the channels of ``counts`` ``(n, B, C, *S)`` to ``k`` dimensions by ``projection`` ``(C, k)``.

    Parameters
    ----------
    counts : spike counts ``(n, B, C, *S)``.
    projection : ``(C, k)``, or ``None`` (``counts`` unchanged).

    Returns
    -------
    Tensor ``(n, B, k, *S)``.
    """
    if projection is None:
        return counts
    return torch.movedim(torch.movedim(counts, 2, -1) @ projection, -1, 2)


@dataclass(frozen=True)
class EDObjective:
    """ED compression (:func:`spikeff.ed.ed_loss`): statistics ``ed_consistency`` and ``ed_diversity``."""

    config: EDLossConfig = EDLossConfig()
    names: tuple[str, ...] = ("ed_consistency", "ed_diversity")

    def __call__(self, counts: Tensor, labels: Tensor | None = None,
                 reduce: Reduce | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        loss, cons, div = ed_loss(counts, self.config, labels, None, reduce)
        return loss, {"ed_consistency": cons, "ed_diversity": div}


# The published method's settings: uncentred second moments across trials and positions (consistency)
# and of the trial means across inputs and positions (diversity), the raw difference at alpha = 0.5.
_SEED = EDLossConfig(alpha=0.5, covariance="second_moment", diversity="second_moment", supervised=False,
                     form="difference")


@dataclass(frozen=True)
class SeedObjective(EDObjective):
    """The seed method: ``0.5 * ED_cons - 0.5 * ED_div`` of uncentred second moments, whatever the loss config."""

    config: EDLossConfig = _SEED


@dataclass(frozen=True)
class GuardedEDObjective:
    """``"ed"`` plus ``variance * mean_c relu(floor - std_c) + decorrelation * mean_{c != c'} r_cc'^2``.

    ``std_c`` is channel ``c``'s standard deviation of the trial-mean counts across the batch (and
    positions), ``r`` their correlation matrix; the floor keeps every channel spiking differently
    for different inputs, the decorrelation keeps channels from copying each other. Both are
    computed on the local batch (under ``reduce`` the ED terms are global, the guards per rank).
    """

    config: EDLossConfig = EDLossConfig()
    variance: float = 1.0
    decorrelation: float = 0.1
    floor: float = 1.0
    names: tuple[str, ...] = ("ed_consistency", "ed_diversity", "std_penalty", "corr_penalty")

    def __call__(self, counts: Tensor, labels: Tensor | None = None,
                 reduce: Reduce | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        loss, cons, div = ed_loss(counts, self.config, labels, None, reduce)
        means = counts.mean(0).movedim(1, -1).reshape(-1, counts.shape[2])  # (B*S, C)
        std = means.std(0) if means.shape[0] > 1 else means.new_zeros(means.shape[1])
        std_pen = F.relu(self.floor - std).mean()
        z = (means - means.mean(0)) / (std + 1e-4)
        corr = z.T @ z / max(means.shape[0] - 1, 1)
        c = corr.shape[0]
        corr_pen = (corr.pow(2).sum() - corr.diagonal().pow(2).sum()) / max(c * (c - 1), 1)
        total = loss + self.variance * std_pen + self.decorrelation * corr_pen
        return total, {"ed_consistency": cons, "ed_diversity": div, "std_penalty": std_pen, "corr_penalty": corr_pen}


def goodness(counts: Tensor) -> Tensor:
    """Forward-Forward's goodness: the mean squared spike count per neuron, ``(n, B, C, *S) -> (n, B)``.

    Parameters
    ----------
    counts : spike counts ``(n, B, C, *S)``.

    Returns
    -------
    Tensor ``(n, B)``: each sample's goodness in each pass.
    """
    return counts.flatten(2).pow(2).mean(-1)


@dataclass(frozen=True)
class GoodnessObjective:
    """Forward-Forward's layer loss on ``counts`` ``(2, B, ...)``: the positive then the negative pass.

    ``"symba"`` (Lee & Song, 2023): ``mean softplus(-a (g_pos - g_neg))``; ``"threshold"`` (Hinton's):
    ``mean softplus(-a (g_pos - theta)) + mean softplus(a (g_neg - theta))``, ``a = sharpness``.
    Statistics: the mean goodness of each pass, ``g_pos`` and ``g_neg``, and their difference ``goodness_gap``.
    """

    kind: Literal["symba", "threshold"] = "symba"
    sharpness: float = 10.0
    threshold: float = 1.0
    names: tuple[str, ...] = ("g_pos", "g_neg", "goodness_gap")

    def __call__(self, counts: Tensor, labels: Tensor | None = None,
                 reduce: Reduce | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        if counts.shape[0] != 2:
            raise ValueError(f"the goodness objective needs 2 trials (positive, negative), got {counts.shape[0]}")
        g = goodness(counts)
        a, pos, neg = self.sharpness, g[0], g[1]
        if self.kind == "symba":
            loss = F.softplus(-a * (pos - neg)).mean()
        else:
            loss = F.softplus(-a * (pos - self.threshold)).mean() + F.softplus(a * (neg - self.threshold)).mean()
        g_pos, g_neg = pos.detach().mean(), neg.detach().mean()
        return loss, {"g_pos": g_pos, "g_neg": g_neg, "goodness_gap": g_pos - g_neg}


#: The objectives a setting can name, each built from the run's loss settings.
OBJECTIVES: Mapping[str, Callable[[EDLossConfig], Objective]] = types.MappingProxyType({
    "ed": EDObjective,
    "seed": lambda config: SeedObjective(),
    "ed_guarded": GuardedEDObjective,
})


def make_objective(name: ObjectiveName, config: EDLossConfig | None = None) -> Objective:
    """The objective ``name`` of :data:`OBJECTIVES`, built from ``config``.

    Parameters
    ----------
    name : one of :data:`ObjectiveName`.
    config : the loss settings (read by the ED objectives); default ``EDLossConfig()``.

    Returns
    -------
    Objective

    Raises
    ------
    ValueError : an unknown name.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name](EDLossConfig() if config is None else config)
