"""Effective dimensionality (ED) and the layer-local ED-compression loss.

``ED(C) = tr(C)^2 / ||C||_F^2 = (sum_i l_i)^2 / sum_i l_i^2`` for the eigenvalues ``l_i``
of a covariance ``C`` (the participation ratio). It is 1 for a rank-1 covariance, ``d``
for an isotropic one in ``d`` dimensions, and invariant to the scale of ``C``.

A layer's responses are spike counts ``c = sum_t s[t]`` of shape ``(n, B, C, *S)``:
``n`` noisy trials of ``B`` inputs, ``C`` channels (the features) and optional spatial
positions ``S``, which count as extra samples, as in the paper. Per layer, ``form=``::

    loss = alpha * log ED_consistency - (1 - alpha) * log ED_diversity    "log_ratio" (default)
    loss = alpha * ED_consistency - (1 - alpha) * ED_diversity            "difference" (the paper's)

The log ratio weighs a relative change of either term alike. In the difference, the
consistency ED of a layer's own independent noise (about the number of noisy neurons, tens)
outweighs the diversity ED of its signal (a few at the first layer), and with a right
gradient the cheapest descent is to fire less (see ``benchmarks/results/``).

* consistency: for each input, the covariance of its counts across the ``n`` trials
  (and positions); its ED is minimised and averaged over the batch. In supervised
  mode there is one covariance per class, pooling all inputs of the class.
* diversity: the covariance across the batch of the trial-averaged counts; its ED is
  maximised.

Consistency, ``covariance=``:

* ``"trial"`` (default): centred across trials, the trial-to-trial (noise) covariance:
  the neurons' own variability.
* ``"second_moment"``: uncentred, as the paper's reference code does.

Diversity, ``diversity=``:

* ``"signal"`` (default): the scatter of the trial means about the batch mean minus the
  share of trial noise it keeps, ``(1 - 1/B) sum_b C_noise,b / n``: an unbiased estimate of
  the scatter of the inputs' expected counts (the signal), tested by Monte Carlo. Without
  the correction a few noisy trials inflate the diversity ED with isotropic noise. The
  estimate can be indefinite when the noise dominates; its ED is then a plug-in value.
* ``"covariance"``: the plain covariance of the trial means.
* ``"second_moment"``: their uncentred second moment, as the paper's reference code does.

So by default a layer minimises the dimensionality of its noise and maximises that of its
signal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .choices import check_choices

__all__ = [
    "effective_dimensionality",
    "effective_dimensionality_eig",
    "sample_ed",
    "EDLossConfig",
    "consistency_ed",
    "diversity_ed",
    "diversity_matrix",
    "ed_loss",
    "random_projection",
]

Covariance = Literal["trial", "second_moment"]
Diversity = Literal["signal", "covariance", "second_moment"]
Form = Literal["difference", "log_ratio"]


def effective_dimensionality(cov: Tensor, eps: float = 1e-12) -> Tensor:
    """Fast form ``tr(C)^2 / ||C||_F^2``, batched over the leading dimensions of ``cov`` ``(..., d, d)``.

    Parameters
    ----------
    cov : symmetric matrices ``(..., d, d)``.
    eps : added to the denominator (an all-zero ``cov`` gives 0).

    Returns
    -------
    Tensor ``(...)``.
    """
    tr = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    return tr**2 / (cov.pow(2).sum((-2, -1)) + eps)


def effective_dimensionality_eig(cov: Tensor, eps: float = 1e-12) -> Tensor:
    """Exact form from the eigenvalues of the symmetric ``cov`` ``(..., d, d)``.

    Parameters
    ----------
    cov, eps : as in :func:`effective_dimensionality`.

    Returns
    -------
    Tensor ``(...)``.
    """
    lam = torch.linalg.eigvalsh(cov)
    return lam.sum(-1) ** 2 / (lam.pow(2).sum(-1) + eps)


def sample_ed(x: Tensor, eps: float = 1e-12) -> Tensor:
    """ED of the second moment of samples ``x`` ``(..., m, d)`` (rows are samples).

    Uses whichever Gram matrix is smaller: ``x^T x`` (d x d) and ``x x^T`` (m x m) share
    their non-zero eigenvalues, so both give the same ED. Centre ``x`` first for a covariance.

    Parameters
    ----------
    x : samples ``(..., m, d)``.
    eps : as in :func:`effective_dimensionality`.

    Returns
    -------
    Tensor ``(...)``.
    """
    m, d = x.shape[-2:]
    gram = x.transpose(-2, -1) @ x if d <= m else x @ x.transpose(-2, -1)
    return effective_dimensionality(gram, eps)


def random_projection(channels: int, dim: int, generator: torch.Generator) -> Tensor:
    """A fixed random matrix ``(channels, dim)`` with orthonormal columns (``dim <= channels``).

    Parameters
    ----------
    channels : the input dimension.
    dim : the projected dimension.
    generator : source of the matrix.

    Returns
    -------
    Tensor ``(channels, dim)``.

    Raises
    ------
    ValueError : ``dim`` is not in ``[1, channels]``.
    """
    if not 0 < dim <= channels:
        raise ValueError(f"projection dim must be in [1, {channels}], got {dim}")
    q, _ = torch.linalg.qr(torch.randn(channels, dim, generator=generator))
    return q


@dataclass(frozen=True)
class EDLossConfig:
    """Settings of the layer-local ED loss."""

    alpha: float = field(default=0.5, metadata={"help": "weight of the consistency term (1 - alpha: diversity)"})
    covariance: Covariance = field(default="trial", metadata={
        "help": "consistency: trial-to-trial covariance or uncentred second moment"})
    diversity: Diversity = field(default="signal", metadata={
        "help": "diversity: noise-corrected signal covariance, covariance or second moment of trial means"})
    supervised: bool = field(default=False, metadata={"help": "one consistency covariance per class"})
    form: Form = field(default="log_ratio", metadata={
        "help": "difference: alpha*ED_cons - (1-alpha)*ED_div; log_ratio: the same of their logs"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        check_choices(self)


def _check_counts(counts: Tensor) -> None:
    if counts.dim() < 3:
        raise ValueError(
            f"counts must have shape (trials, batch, channels, *spatial), got {tuple(counts.shape)}"
        )


def _features_last(x: Tensor) -> Tensor:
    """``(a, b, C, *S)`` -> ``(a, b, prod(S), C)``: channels become the feature axis."""
    return x.flatten(3).transpose(-2, -1) if x.dim() > 3 else x.unsqueeze(-2)


def consistency_ed(
    counts: Tensor,
    covariance: Covariance = "trial",
    labels: Tensor | None = None,
) -> Tensor:
    """Mean ED of the per-input (or, with ``labels``, per-class) covariance across trials.

    Parameters
    ----------
    counts : spike counts ``(n, B, C, *S)``.
    covariance : ``"trial"`` (centred across trials) or ``"second_moment"``.
    labels : class per input ``(B,)``; the per-class EDs are weighted by class size.

    Returns
    -------
    Tensor, a scalar.

    Raises
    ------
    ValueError : ``counts`` has fewer than 3 dimensions, the trial covariance gets fewer than 2
        trials, or ``labels`` is not ``(B,)``.
    """
    _check_counts(counts)
    n, b = counts.shape[:2]
    if labels is None:
        if covariance == "trial":
            if n < 2:
                raise ValueError(f"the trial covariance needs at least 2 trials, got {n}")
            counts = counts - counts.mean(0, keepdim=True)
        x = _features_last(counts).transpose(0, 1).flatten(1, 2)  # (B, n*S, C)
        return sample_ed(x).mean()
    if labels.shape != (b,):
        raise ValueError(f"labels must have shape ({b},), got {tuple(labels.shape)}")
    feats = _features_last(counts)  # (n, B, S, C)
    total = counts.new_zeros(())
    for cls in torch.unique(labels):
        group = feats[:, labels == cls]  # (n, b_k, S, C)
        if covariance == "trial":
            group = group - group.mean((0, 1), keepdim=True)
        total = total + sample_ed(group.reshape(-1, group.shape[-1])) * (group.shape[1] / b)
    return total


Reduce = Callable[[Tensor], Tensor]
_LOG_EPS = 1e-6  # keeps log ED finite for an all-silent layer (ED 0)


def diversity_ed(counts: Tensor, kind: Diversity = "signal", reduce: Reduce | None = None) -> Tensor:
    """ED of :func:`diversity_matrix`: the diversity term of the loss.

    Parameters
    ----------
    counts, kind, reduce : as in :func:`diversity_matrix`.

    Returns
    -------
    Tensor, a scalar.

    Raises
    ------
    ValueError : as :func:`diversity_matrix`.
    """
    return effective_dimensionality(diversity_matrix(counts, kind, reduce))


def diversity_matrix(counts: Tensor, kind: Diversity = "signal", reduce: Reduce | None = None) -> Tensor:
    """``C x C`` signal scatter, scatter or second moment of the trial-averaged counts across the batch.

    Built from batch sums, so the batch may be split across processes: ``reduce`` (e.g. a
    differentiable all-reduce sum, :mod:`spikeff.distributed`) is applied to every sum, the
    per-position batch sum with the batch size first (for the mean that centres), then the
    ``C x C`` second moment of the centred means. Centring by the global mean before the
    second sum avoids the cancellation of ``sum m m^T - N mu mu^T`` in float32. With
    ``reduce=None`` the batch is the whole batch.

    Parameters
    ----------
    counts : spike counts ``(n, B, C, *S)``.
    kind : ``"signal"``, ``"covariance"`` or ``"second_moment"``.
    reduce : a differentiable sum over the processes, or ``None``.

    Returns
    -------
    Tensor ``(C, C)``.

    Raises
    ------
    ValueError : ``counts`` has fewer than 3 dimensions, a centred kind gets a (global) batch of
        fewer than 2 inputs, or ``"signal"`` gets fewer than 2 trials.
    """
    _check_counts(counts)
    x = _features_last(counts.mean(0).unsqueeze(0))[0]  # (B, S, C)
    batch = None
    if kind != "second_moment":
        stats = torch.cat([x.sum(0).flatten(), x.new_full((1,), x.shape[0])])
        if reduce is not None:
            stats = reduce(stats)
        batch = stats[-1]
        if batch.item() < 2:
            raise ValueError("the diversity covariance needs a batch of at least 2 inputs")
        x = x - (stats[:-1] / batch).view(x.shape[1:])
    x = x.flatten(0, 1)  # (B*S, C)
    second = x.transpose(0, 1) @ x
    if kind == "signal":
        # Each trial mean keeps 1/n of its input's trial noise N_b, and the scatter about the
        # batch mean keeps (1 - 1/B) of that: E[scatter] = signal scatter + (1 - 1/B) sum_b N_b / n.
        n = counts.shape[0]
        if n < 2:
            raise ValueError(f"the signal covariance needs at least 2 trials, got {n}")
        dev = _features_last(counts - counts.mean(0, keepdim=True)).flatten(0, 2)  # (n*B*S, C)
        second = second - (1.0 - 1.0 / batch) * (dev.transpose(0, 1) @ dev) / (n * (n - 1))
    return second if reduce is None else reduce(second)


def ed_loss(
    counts: Tensor,
    config: EDLossConfig = EDLossConfig(),
    labels: Tensor | None = None,
    projection: Tensor | None = None,
    reduce: Reduce | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``alpha * ED_consistency - (1 - alpha) * ED_diversity`` for counts ``(n, B, C, *S)``.

    ``projection`` ``(C, k)`` maps the channels to ``k`` dimensions first. Returns the loss
    and the two (undetached) ED terms.

    ``reduce`` (a differentiable sum over the processes that each hold a part of the batch,
    see :mod:`spikeff.distributed`) makes both terms those of the global batch: the
    diversity statistics are summed before the covariance is formed, and the per-input
    consistency EDs, computed locally, are averaged over the global batch (exact for
    unequal parts too). Supervised consistency pools inputs across the batch and is not
    supported with ``reduce``.

    Parameters
    ----------
    counts : spike counts ``(n, B, C, *S)``.
    config : the loss settings.
    labels : class per input ``(B,)``; needed when ``config.supervised``.
    projection : ``(C, k)``, or ``None``.
    reduce : a differentiable sum over the processes, or ``None``.

    Returns
    -------
    loss : a scalar, in ``config.form`` (of the log EDs for ``"log_ratio"``).
    consistency, diversity : the two EDs.

    Raises
    ------
    ValueError : supervised without ``labels``, supervised with ``reduce``, or as
        :func:`consistency_ed` and :func:`diversity_matrix`.
    """
    _check_counts(counts)
    if config.supervised and labels is None:
        raise ValueError("supervised consistency needs the labels of the batch")
    if projection is not None:
        counts = torch.movedim(torch.movedim(counts, 2, -1) @ projection, -1, 2)
    if reduce is not None and config.supervised:
        raise ValueError("supervised consistency cannot be split across processes (use one process)")
    cons = consistency_ed(counts, config.covariance, labels if config.supervised else None)
    if reduce is not None:
        b = counts.shape[1]
        total = reduce(torch.stack([cons * b, cons.new_tensor(float(b))]))
        cons = total[0] / total[1]
    div = diversity_ed(counts, config.diversity, reduce)
    if config.form == "log_ratio":
        return config.alpha * torch.log(cons + _LOG_EPS) - (1.0 - config.alpha) * torch.log(div + _LOG_EPS), cons, div
    return config.alpha * cons - (1.0 - config.alpha) * div, cons, div
