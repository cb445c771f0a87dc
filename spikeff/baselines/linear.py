"""``linear``: logistic regression on the raw event counts, the floor every method must clear.

Each input becomes its event counts summed over time, ``(C * H * W,)``; a standardised
multinomial logistic regression (:func:`spikeff.probe.fit_probe`, ``C`` cross-validated on
the training split alone) classifies them. Inference is event-driven: the standardisation
folds into the weights, so each input event adds one weight column (``n_classes`` ACs), and
the bias and argmax cost ``n_classes`` MACs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..energy import OpCounts
from ..evaluation import Inference, evaluate_batches
from ..label_efficiency import DRAWS, LABELS_PER_CLASS, describe, labelled_draws, linear_curve, view_batches
from ..probe import fit_probe
from .bptt import BaselineResult

__all__ = ["event_counts", "train_linear", "counts_label_efficiency"]

Batch = tuple[Tensor, Tensor]


def _features(x: Tensor) -> np.ndarray:
    """``(T, B, C, H, W)`` events -> ``(B, C * H * W)`` counts summed over time."""
    return x.sum(0).flatten(1).double().numpy()


def event_counts(batches: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, C * H * W)`` (events summed over time) and labels ``(N,)`` of time-first batches.

    Parameters
    ----------
    batches : time-first inputs ``(T, B, C, H, W)`` and labels ``(B,)``, on the CPU.

    Returns
    -------
    features : ``(N, C * H * W)``, float64.
    labels : ``(N,)``.

    Raises
    ------
    ValueError : ``batches`` is empty.
    """
    feats, labels = [], []
    for x, y in batches:
        feats.append(_features(x))
        labels.append(y.numpy())
    if not labels:
        raise ValueError("the training set is empty")
    return np.concatenate(feats), np.concatenate(labels)


def train_linear(
    train_batches: Iterable[Batch], test_batches: Iterable[Batch], n_classes: int, *, seed: int = 0
) -> BaselineResult:
    """Fit on the training batches, then accuracy and op counts per inference on the test batches.

    Parameters
    ----------
    train_batches, test_batches : time-first inputs and labels, on the CPU.
    n_classes : the number of classes.
    seed : the solver's random state.

    Returns
    -------
    BaselineResult, with the fitted pipeline as ``net`` and the chosen ``C`` in ``history``.

    Raises
    ------
    ValueError : the training set is empty.
    DataError : the test set is empty.
    """
    t0 = time.perf_counter()
    clf = fit_probe(*event_counts(train_batches), seed=seed)
    train_seconds = time.perf_counter() - t0
    n_features = clf[-1].coef_.shape[1]

    def infer(x: Tensor) -> Inference:
        pred = torch.as_tensor(clf.predict(_features(x)))
        events = float(x.sum()) / x.shape[1]
        ops = OpCounts(synops=(events * n_classes,), macs=(float(n_classes),), spikes=(), neuron_updates=(),
                       synops_unfused=(events * n_classes,), connections=(float(n_features * n_classes),))
        return Inference({"deterministic": pred}, ops)

    ev = evaluate_batches(test_batches, torch.device("cpu"), infer)
    acc, ops = ev.accuracy["deterministic"], ev.ops
    c = float(clf[-1].C_[0]) if hasattr(clf[-1], "C_") else float(clf[-1].C)  # fixed C: too few to cross-validate
    return BaselineResult(clf, acc, ops, [{"C": c}], train_seconds, 1)


def counts_label_efficiency(
    train_batches: Iterable[Batch], test_batches: Iterable[Batch], *, seed: int = 0,
    ks: tuple[int | None, ...] = LABELS_PER_CLASS, draws: int = DRAWS,
) -> dict[str, Any]:
    """The label-efficient accuracy of the logistic regression on the raw event counts
    (:func:`spikeff.label_efficiency.label_efficiency`'s raw-count row, for the same ``seed``).

    Parameters
    ----------
    train_batches, test_batches : re-iterable time-first inputs and labels, on the CPU.
    seed : seeds the labelled draws, the perturbations and the solver.
    ks, draws : labels per class (``None``: all) and labelled sets per ``k``.

    Returns
    -------
    dict, as :func:`~spikeff.label_efficiency.label_efficiency`'s with ``results["raw counts"]`` only.
    """
    train, y_train = event_counts(train_batches)
    tests = {v: event_counts(batches) for v, batches in view_batches(test_batches, seed).items()}
    sets = labelled_draws(y_train, ks, draws, torch.Generator().manual_seed(seed))
    curve = linear_curve(train, y_train, {v: f for v, (f, _) in tests.items()}, tests["clean"][1], sets, seed)
    return {**describe(ks, draws, "event counts summed over time"), "results": {"raw counts": {"input": curve}}}
