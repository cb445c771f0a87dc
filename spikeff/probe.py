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
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor
from tqdm.auto import tqdm

from .network import SpikingNet, device_of, input_parts

__all__ = ["PROBE_CS", "FrozenFeatures", "FeatureCollector", "frozen_features", "layer_features", "fit_probe",
           "probe_accuracy", "layer_probes"]

PROBE_CS: tuple[float, ...] = (0.01, 0.1, 1.0)

Batch = tuple[Tensor, Tensor]


class FrozenFeatures(NamedTuple):
    """Frozen representations of one split: what the probes and the label-efficient readouts read."""

    layers: list[np.ndarray]  # input event counts, then every layer's spike counts: (N, D) each, / T, trial mean
    labels: np.ndarray  # (N,)
    top_trials: Tensor | None  # the linear head's input per trial (trials, N, D), float16 on the CPU, if kept

    def to_tensors(self) -> dict[str, Any]:
        """The features as tensors (for a state file read with ``weights_only=True``)."""
        return {"layers": [torch.from_numpy(a) for a in self.layers], "labels": torch.from_numpy(self.labels),
                "top_trials": self.top_trials}

    @classmethod
    def from_tensors(cls, d: dict[str, Any]) -> FrozenFeatures:
        """The inverse of :meth:`to_tensors`."""
        return cls([t.numpy() for t in d["layers"]], d["labels"].numpy(), d["top_trials"])


class FeatureCollector:
    """Gathers :class:`FrozenFeatures` batch by batch from passes that run anyway (the readout fit's
    over the training split, the evaluation's over the held-out one), so that no extra pass is needed.

    Parameters
    ----------
    trials : noisy trials per input in the passes collected.
    keep_trials : also keep the top layer's per-trial features.
    keep_layers : keep the input's and every layer's trial-mean counts (``False``: ``layers`` is empty,
        for a pass that needs only the top layer's per-trial features, such as the readout fit's).
    """

    def __init__(self, trials: int, keep_trials: bool = False, keep_layers: bool = True) -> None:
        self.trials, self.keep_trials, self.keep_layers = trials, keep_trials, keep_layers
        self.batches = 0
        self.layers: list[list[np.ndarray]] = []
        self.labels: list[np.ndarray] = []
        self.tops: list[Tensor] = []

    @torch.no_grad()
    def add(self, x: Tensor, outs: Sequence[Tensor], y: Tensor | None = None) -> None:
        """One batch: inputs ``x`` ``(T, B, ...)``, every layer's spikes ``(T, trials * B, ...)``, labels ``(B,)``."""
        kept = outs if self.keep_layers else outs[-1:]
        per_trial = [s.flatten(2).mean(0).unflatten(0, (self.trials, x.shape[1])) for s in kept]
        if self.keep_layers:
            reps = [x.mean(0).flatten(1)] + [t.mean(0) for t in per_trial]
            if not self.layers:
                self.layers = [[] for _ in reps]
            for acc, r in zip(self.layers, reps):
                acc.append(r.float().cpu().numpy())
        if self.keep_trials:
            self.tops.append(per_trial[-1].to("cpu", torch.float16))
        if y is not None:
            self.labels.append(y.cpu().numpy())
        self.batches += 1

    def result(self, labels: Tensor | np.ndarray | None = None) -> FrozenFeatures:
        """The features gathered, with ``labels`` (default: those given to :meth:`add`).

        Raises
        ------
        ValueError : nothing was gathered.
        """
        if not self.batches:
            raise ValueError("no batches to probe")
        y = np.concatenate(self.labels) if labels is None else np.asarray(labels)
        return FrozenFeatures([np.concatenate(f) for f in self.layers], y,
                              torch.cat(self.tops, 1) if self.keep_trials else None)


@torch.no_grad()
def frozen_features(
    net: SpikingNet, batches: Iterable[Batch], trials: int, generator: torch.Generator, *, keep_trials: bool = False,
) -> FrozenFeatures:
    """One pass over ``batches``: every representation's features.

    Parameters
    ----------
    net : the network; switched to eval mode.
    batches : time-first inputs ``(T, B, ...)`` and labels ``(B,)``.
    trials : noisy trials averaged per input.
    generator : source of the neuron noise.
    keep_trials : also keep the top layer's per-trial features (for an energy readout).

    Returns
    -------
    FrozenFeatures

    Raises
    ------
    ValueError : ``batches`` is empty.
    """
    net.eval()
    device = device_of(net)
    collect = FeatureCollector(trials, keep_trials)
    for x, y in tqdm(batches, desc="frozen features", leave=False, dynamic_ncols=True):
        sizes = input_parts(x.shape[1], trials)
        for xp, yp in zip(x.to(device).split(sizes, dim=1), y.split(sizes)):
            collect.add(xp, net.layer_outputs(xp, generator, trials), yp)
    return collect.result()


def layer_features(
    net: SpikingNet, batches: Iterable[Batch], trials: int, generator: torch.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per representation (input, then every layer) the features ``(N, D)``, and the labels ``(N,)``:
    :func:`frozen_features`'s ``layers`` and ``labels`` (same parameters; raises as it does)."""
    f = frozen_features(net, batches, trials, generator)
    return f.layers, f.labels


def fit_probe(
    train: np.ndarray, y_train: np.ndarray, cs: Sequence[float] = PROBE_CS, folds: int = 3, seed: int = 0
) -> Pipeline:
    """Standardise, then a logistic regression whose ``C`` is cross-validated on ``train`` alone.

    With one candidate, or when some class has fewer than ``folds`` training inputs (a few labels per
    class), ``C`` is fixed at the middle candidate instead: nothing is chosen on inputs that were not
    labelled.

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
    if len(cs) == 1 or np.unique(y_train, return_counts=True)[1].min() < folds:  # one C, or too few to cross-validate
        model = LogisticRegression(C=cs[len(cs) // 2], max_iter=500, random_state=seed)
    else:
        model = LogisticRegressionCV(Cs=list(cs), cv=folds, max_iter=500, random_state=seed, scoring="accuracy")
    clf = make_pipeline(StandardScaler(), model)
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
