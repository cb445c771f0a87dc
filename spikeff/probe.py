"""Linear probes: how much of the label a linear classifier reads from each layer's spike counts.

A probe is a multinomial logistic regression (scikit-learn) on one representation of every
input, fitted on the training split and scored once on the held-out split. Its inverse
regularisation ``C`` is chosen by cross-validation on the training split alone. The
representations: the input's event counts (layer 0: the floor every layer must clear) and each
layer's spike counts averaged over ``trials`` noisy trials, all divided by ``T``.

Layer-local learning is only useful if depth adds to what a linear readout can find; a probe
that falls with depth shows a layer that loses information.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from .network import SpikingNet, device_of

__all__ = ["PROBE_CS", "layer_features", "fit_probe", "probe_accuracy", "layer_probes"]

PROBE_CS: tuple[float, ...] = (0.01, 0.1, 1.0)

Batch = tuple[Tensor, Tensor]


@torch.no_grad()
def layer_features(
    net: SpikingNet, batches: Iterable[Batch], trials: int, generator: torch.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per representation (input, then every layer) the features ``(N, D)``, and the labels ``(N,)``.

    Parameters
    ----------
    net : the network; switched to eval mode.
    batches : time-first inputs ``(T, B, ...)`` and labels ``(B,)``.
    trials : noisy trials averaged per input.
    generator : source of the neuron noise.

    Returns
    -------
    features : one ``(N, D)`` array per representation, counts divided by ``T``.
    labels : ``(N,)``.

    Raises
    ------
    ValueError : ``batches`` is empty.
    """
    net.eval()
    device = device_of(net)
    feats: list[list[np.ndarray]] = []
    labels = []
    for x, y in batches:
        x = x.to(device)
        outs = net.layer_outputs(x, generator, trials)
        reps = [x.mean(0).flatten(1)] + [s.mean(0).unflatten(0, (trials, x.shape[1])).mean(0).flatten(1) for s in outs]
        if not feats:
            feats = [[] for _ in reps]
        for acc, r in zip(feats, reps):
            acc.append(r.float().cpu().numpy())
        labels.append(y.numpy())
    if not labels:
        raise ValueError("no batches to probe")
    return [np.concatenate(f) for f in feats], np.concatenate(labels)


def fit_probe(
    train: np.ndarray, y_train: np.ndarray, cs: Sequence[float] = PROBE_CS, folds: int = 3, seed: int = 0
) -> Pipeline:
    """Standardise, then a logistic regression whose ``C`` is cross-validated on ``train`` alone.

    Parameters
    ----------
    train, y_train : features ``(N, D)`` and labels ``(N,)``.
    cs : the candidate values of ``C``.
    folds : cross-validation folds.
    seed : the solver's random state.

    Returns
    -------
    Pipeline, fitted.
    """
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=list(cs), cv=folds, max_iter=500, random_state=seed, scoring="accuracy")
    )
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults; the settings above are explicit
        warnings.simplefilter("ignore", FutureWarning)
        return clf.fit(train, y_train)


def probe_accuracy(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
    cs: Sequence[float] = PROBE_CS, folds: int = 3, seed: int = 0,
) -> float:
    """Held-out accuracy of :func:`fit_probe` fitted on the training split.

    Parameters
    ----------
    train, y_train : the training features and labels.
    test, y_test : the held-out features and labels.
    cs, folds, seed : as in :func:`fit_probe`.

    Returns
    -------
    float
    """
    return float(fit_probe(train, y_train, cs, folds, seed).score(test, y_test))


def layer_probes(
    net: SpikingNet, train: Iterable[Batch], test: Iterable[Batch], trials: int, generator: torch.Generator
) -> list[float]:
    """Probe accuracy of the input (index 0) and of every layer (index ``k`` for layer ``k``).

    Parameters
    ----------
    net : the network.
    train, test : batches of the training and held-out splits.
    trials, generator : as in :func:`layer_features`.

    Returns
    -------
    list of float

    Raises
    ------
    ValueError : a split is empty.
    """
    f_train, y_train = layer_features(net, train, trials, generator)
    f_test, y_test = layer_features(net, test, trials, generator)
    return [probe_accuracy(a, y_train, b, y_test) for a, b in zip(f_train, f_test)]
