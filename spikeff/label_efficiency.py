"""Label-efficient evaluation: what a readout of frozen features scores with ``k`` labels per class.

Layers trained without labels are worth having when a readout needs few labels to use them. For
each ``k`` in :data:`LABELS_PER_CLASS` (``None``: every training label; a ``k`` at or above every
class's size is the same), ``draws`` labelled sets of ``k`` training inputs per class are drawn
from a seeded ``torch.Generator``, identical for every feature extractor (so trained, control and
raw counts are compared on the same labels, a paired comparison). On each set:

* the **linear readout** (:func:`spikeff.probe.fit_probe`: standardised logistic regression, ``C``
  cross-validated on the labelled inputs alone, or fixed when a class has fewer than the folds);
* optionally the **energy readout** of the network (:mod:`spikeff.readout_fit`'s linear-head fit
  on the top layer's per-trial features, scored in the run's ``train_mode``), with a fixed learning
  rate and as many optimiser steps as the full readout takes, whatever ``k``.

Each fit is scored on the whole test split in three **views**: clean, shifted (every test input
translated by an integer offset in ``[-3, 3]`` px per axis, :class:`~spikeff.noise.Shift`) and
thinned (each event kept with probability 0.5, :class:`~spikeff.noise.EventThinning`); the
readout always sees clean training inputs, so the views show the invariances the features carry.
The perturbation draws are seeded alike for every extractor. Nothing is chosen on the test split.

The readouts (:func:`label_readouts`) read :class:`~spikeff.probe.FrozenFeatures`: spike counts averaged
over noisy trials, and the input's own event counts as the raw-count representation.
:func:`label_efficiency` (the bench) makes them in one pass per net, split and view
(:func:`spikeff.probe.frozen_features`, with the evaluation trials), one net's at a time; ``spikeff train``
(:func:`compact_label_efficiency`) reads the passes its run made anyway (the readout fit's over the
training split, the evaluation's over the clean test split) and makes one of its own per net, over the
thinned test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import RunConfig
from .network import SpikingNet, device_of, init_fan_in_
from .noise import EventThinning, Perturbation, Shift
from .probe import PROBE_CS, FrozenFeatures, fit_probe, frozen_features
from .readout import Mode
from .readout_fit import fit_linear_head, linear_head_accuracy

__all__ = ["LABELS_PER_CLASS", "COMPACT_LABELS", "COMPACT_C", "DRAWS", "VIEWS", "EnergyFit", "k_name", "labelled_draws",
           "perturbed", "view_batches", "view_features", "describe", "energy_fit", "linear_curve", "energy_curve",
           "label_efficiency", "label_readouts", "COMPACT_VIEWS", "compact_label_efficiency", "label_table"]

LABELS_PER_CLASS: tuple[int | None, ...] = (1, 10, 100, None)
COMPACT_LABELS: tuple[int | None, ...] = (10, None)  # what `spikeff train` reports
COMPACT_VIEWS = ("clean", "thinned")  # and on which test views (the bench scores every view)
COMPACT_C = PROBE_CS[len(PROBE_CS) // 2]  # its linear readouts' fixed C
DRAWS = 5
SHIFT_PX, THIN_KEEP = 3, 0.5
VIEWS: dict[str, Perturbation | None] = {"clean": None, "shifted": Shift(SHIFT_PX), "thinned": EventThinning(THIN_KEEP)}

Batch = tuple[Tensor, Tensor]
Draws = dict[str, list[np.ndarray]]


@dataclass(frozen=True)
class EnergyFit:
    """How the energy readout is fitted at ``k`` labels: the full readout's ``epochs`` worth of
    steps (over all training inputs, batches of ``batch_size``) at the fixed ``lr``, scored in ``mode``."""

    epochs: int
    lr: float
    batch_size: int
    mode: Mode = "energy"


def k_name(k: int | None) -> str:
    """``"all"`` for ``None``, else ``str(k)`` (the key of ``k`` in every result)."""
    return "all" if k is None else str(k)


def labelled_draws(labels: np.ndarray, ks: Sequence[int | None], draws: int, generator: torch.Generator) -> Draws:
    """Index sets of the labelled training inputs: per ``k``, ``draws`` sets of ``k`` inputs per class.

    A class with at most ``k`` inputs gives all of them; when every class does (or ``k`` is
    ``None``), one set of every input stands for all draws.

    Parameters
    ----------
    labels : training labels ``(N,)``.
    ks : labels per class; ``None`` for all.
    draws : sets per ``k`` (>= 1).
    generator : source of the draws (CPU).

    Returns
    -------
    dict : ``k_name(k)`` -> list of sorted index arrays.

    Raises
    ------
    ValueError : ``draws < 1``, a ``k < 1``, or no labels.
    """
    if draws < 1 or any(k is not None and k < 1 for k in ks) or len(labels) == 0:
        raise ValueError(f"need draws >= 1, every k >= 1 and some labels, got draws={draws}, ks={list(ks)}, "
                         f"{len(labels)} labels")
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    out: Draws = {}
    for k in ks:
        if k is None or k >= max(len(i) for i in by_class):
            out[k_name(k)] = [np.arange(len(labels))]
            continue
        out[k_name(k)] = [np.sort(np.concatenate([i[torch.randperm(len(i), generator=generator)[:k].numpy()]
                                                  for i in by_class])) for _ in range(draws)]
    return out


def perturbed(batches: Iterable[Batch], perturbation: Perturbation | None, generator: torch.Generator
              ) -> Iterator[Batch]:
    """``batches`` with each input perturbed (one draw per input; ``None``: as they are)."""
    for x, y in batches:
        yield (x if perturbation is None else perturbation.apply(x, generator)), y


def view_batches(batches: Iterable[Batch], seed: int, views: Sequence[str] = tuple(VIEWS)
                 ) -> dict[str, Iterator[Batch]]:
    """One pass over ``batches`` per view (some of :data:`VIEWS`), each perturbed from its own
    generator seeded by ``seed`` and the view (the same draws whoever reads them)."""
    return {v: perturbed(batches, p, torch.Generator().manual_seed(seed * 1000 + 690 + i))
            for i, (v, p) in enumerate(VIEWS.items()) if v in views}


def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "min": float(v.min()),
            "max": float(v.max()), "per_draw": v.tolist()}


def _curve(scores: Mapping[str, list[dict[str, float]]], draws: Draws) -> dict[str, Any]:
    """Per ``k``: per view the statistics over draws, and the number of labelled inputs per draw."""
    return {k: {"n_labelled": [len(i) for i in draws[k]],
                **{v: _stats([s[v] for s in per_draw]) for v in per_draw[0]}} for k, per_draw in scores.items()}


def linear_curve(train: np.ndarray, y_train: np.ndarray, tests: Mapping[str, np.ndarray], y_test: np.ndarray,
                 draws: Draws, seed: int = 0, cs: Sequence[float] = PROBE_CS) -> dict[str, Any]:
    """The linear readout fitted on every labelled set of ``draws``, scored on every test view.

    Parameters
    ----------
    train, y_train : training features ``(N, D)`` and labels.
    tests : view name -> test features ``(M, D)`` (the same inputs, perturbed per view).
    y_test : test labels ``(M,)``.
    draws : from :func:`labelled_draws`.
    seed : the solver's random state.
    cs : the candidate values of the inverse regularisation (:func:`~spikeff.probe.fit_probe`; one: fixed).

    Returns
    -------
    dict : ``k`` -> ``{"n_labelled": [...], view: {"mean", "std", "min", "max", "per_draw"}}``.
    """
    scores = {}
    for k, sets in draws.items():
        fits = [fit_probe(train[i], y_train[i], cs, seed=seed)
                for i in tqdm(sets, desc=f"linear readouts, k={k}", leave=False, dynamic_ncols=True)]
        scores[k] = [{v: float(clf.score(f, y_test)) for v, f in tests.items()} for clf in fits]
    return _curve(scores, draws)


def energy_curve(train: Tensor, y_train: np.ndarray, tests: Mapping[str, Tensor], y_test: np.ndarray,
                 draws: Draws, n_classes: int, fit: EnergyFit, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
    """The network's energy readout (a fresh linear head on the top layer's per-trial features)
    fitted on every labelled set of ``draws``, scored on every test view.

    Parameters
    ----------
    train : per-trial training features ``(trials, N, D)`` (``FrozenFeatures.top_trials``).
    y_train : training labels ``(N,)``.
    tests : view name -> per-trial test features ``(trials, M, D)``.
    y_test : test labels ``(M,)``.
    draws : from :func:`labelled_draws`.
    n_classes : the head's outputs.
    fit : epochs, learning rate, batch size and score mode.
    generator : the heads' initial weights and the shuffling (CPU).
    device : where the head trains.

    Returns
    -------
    dict, as :func:`linear_curve`'s.
    """
    y_tr, y_te = torch.as_tensor(y_train), torch.as_tensor(y_test)
    steps = fit.epochs * math.ceil(len(y_tr) / fit.batch_size)
    scores = {}
    for k, sets in draws.items():
        scores[k] = []
        for i in tqdm(sets, desc=f"energy readouts, k={k}", leave=False, dynamic_ncols=True):
            fc = torch.nn.Linear(train.shape[-1], n_classes).to(device)
            init_fan_in_(fc, generator)
            epochs = max(1, round(steps / math.ceil(len(i) / fit.batch_size)))
            fit_linear_head(fc, train, y_tr, lr=fit.lr, epochs=epochs, batch_size=fit.batch_size, generator=generator,
                            mode=fit.mode, inputs=torch.as_tensor(i))
            scores[k].append({v: linear_head_accuracy(fc, f, y_te, fit.mode) for v, f in tests.items()})
    return _curve(scores, draws)


def describe(ks: Sequence[int | None], draws: int, features: str, views: Sequence[str] = tuple(VIEWS),
             cs: Sequence[float] = PROBE_CS) -> dict[str, Any]:
    """The head of a label-efficiency result: the ``k`` names, the draws, the views and how the
    ``features`` were made (a phrase); ``results`` is filled by the caller.

    Parameters
    ----------
    ks, draws : as in :func:`labelled_draws`.
    features : what the readouts read.
    views : the test views scored.
    cs : the linear readouts' candidate inverse regularisations (one: fixed).

    Returns
    -------
    dict
    """
    return {"labels_per_class": [k_name(k) for k in ks], "draws": draws,
            "views": {v: d for v, d in {"clean": "the test inputs as they are",
                                        "shifted": f"each translated by up to +-{SHIFT_PX} px",
                                        "thinned": f"each event kept with probability {THIN_KEEP}"}.items()
                      if v in views},
            "features": f"{features}; " + (f"C fixed at {cs[0]:g}" if len(cs) == 1 else
                                           "C cross-validated on the labelled inputs only (fixed when a class has "
                                           "fewer than 3)")}


def energy_fit(config: RunConfig) -> EnergyFit | None:
    """The energy readout at ``k`` labels for a run's ``config``: its readout epochs and batch size, its
    first readout learning rate (fixed: too few labels to choose it on) and its ``train_mode``; ``None``
    without readout epochs."""
    if not config.eval.readout_epochs:
        return None
    return EnergyFit(config.eval.readout_epochs, config.eval.readout_lrs[0], config.train.batch_size,
                     config.train.train_mode)


def _representations(f: FrozenFeatures, per_layer: bool) -> dict[str, np.ndarray]:
    """Each layer (only the top one unless ``per_layer``) and, with two or more, all layers side by side."""
    layers = f.layers[1:]
    reps = {f"layer {i + 1}": a for i, a in enumerate(layers) if per_layer or i == len(layers) - 1}
    if len(layers) > 1:
        reps["all layers"] = np.concatenate(layers, 1)
    return reps


def _noise(net: SpikingNet, seed: int) -> torch.Generator:
    return torch.Generator(device_of(net)).manual_seed(seed)


def view_features(net: SpikingNet, test: Iterable[Batch], views: Sequence[str], trials: int, seed: int,
                  noise_seed: int, keep_trials: bool) -> dict[str, FrozenFeatures]:
    """``net``'s features of each test view: one :func:`frozen_features` pass per view, perturbed as
    :func:`view_batches` with ``seed``, the i-th view's neuron noise seeded ``noise_seed + i``."""
    return {v: frozen_features(net, batches, trials, _noise(net, noise_seed + i), keep_trials=keep_trials)
            for i, (v, batches) in enumerate(view_batches(test, seed, views).items())}


NetFeatures = tuple[FrozenFeatures, Mapping[str, FrozenFeatures]]  # a net's training features; test view -> features


def label_efficiency(
    nets: Mapping[str, SpikingNet], train: Iterable[Batch], test: Iterable[Batch], trials: int, *, seed: int = 0,
    ks: Sequence[int | None] = LABELS_PER_CLASS, draws: int = DRAWS, per_layer: bool = True,
    energy: EnergyFit | None = None, views: Sequence[str] = tuple(VIEWS), cs: Sequence[float] = PROBE_CS,
) -> dict[str, Any]:
    """Label-efficient accuracy of every net in ``nets``, and of the raw event counts.

    Each net's features are computed once per split and view (:func:`frozen_features` with
    ``trials``), then read out by :func:`label_readouts`.

    Parameters
    ----------
    nets : name -> network (e.g. ``{"trained": net, "control": ctrl}``); each is put in eval mode.
    train, test : re-iterable time-first batches (CPU) of the training and test splits.
    trials : evaluation trials averaged per input.
    seed : seeds the labelled draws, the perturbations, the neuron noise and the solvers.
    ks, draws, per_layer, energy, cs : as in :func:`label_readouts`.
    views : the test views scored, some of :data:`VIEWS` with ``"clean"`` (one test pass each).

    Returns
    -------
    dict, as :func:`label_readouts`'s; ``seconds`` includes the feature passes.

    Raises
    ------
    ValueError : an empty split, or as :func:`labelled_draws`.
    """
    t0 = time.perf_counter()
    if "clean" not in views or set(views) - set(VIEWS):
        raise ValueError(f"views must be some of {list(VIEWS)} with 'clean', got {list(views)}")

    def features() -> Iterator[tuple[str, NetFeatures]]:  # one net's at a time: each is read out, then dropped
        for j, (name, net) in enumerate(nets.items()):
            keep = energy is not None and net.head.kind == "linear"
            noise = seed * 1000 + 700 + 10 * j
            yield name, (frozen_features(net, train, trials, _noise(net, noise), keep_trials=keep),
                         view_features(net, test, views, trials, seed, noise + 1, keep))

    out = label_readouts(nets, features(), f"spike counts / T averaged over {trials} evaluation trials", seed=seed,
                         ks=ks, draws=draws, per_layer=per_layer, energy=energy, cs=cs)
    out["seconds"] = time.perf_counter() - t0
    return out


def label_readouts(
    nets: Mapping[str, SpikingNet], features: Iterable[tuple[str, NetFeatures]], described: str, *, seed: int = 0,
    ks: Sequence[int | None] = LABELS_PER_CLASS, draws: int = DRAWS, per_layer: bool = True,
    energy: EnergyFit | None = None, cs: Sequence[float] = PROBE_CS,
) -> dict[str, Any]:
    """The label-efficient readouts of every net's frozen features, and of the raw event counts (the
    input representation of the first net's features).

    Parameters
    ----------
    nets : name -> network (its class count and device, for the energy head).
    features : (name, the net's training features and its test features per view, ``"clean"`` first) per
        net, read one at a time (a generator may make each when asked, so that one net's are alive at once).
    described : how the features were made (a phrase for the result's head).
    seed : seeds the labelled draws and the solvers.
    ks : labels per class (``None``: all).
    draws : labelled sets per ``k``.
    per_layer : every layer (else only the top one), and all layers together (with two or more).
    energy : fit the energy readout too, where a net's features kept their per-trial top layer.
    cs : the linear readouts' candidate inverse regularisations, cross-validated on the labelled
        inputs (one: fixed).

    Returns
    -------
    dict : ``labels_per_class``, ``draws``, ``views``, ``features`` (how they were made), ``seconds``
    (wall time), ``skipped`` (why, when a training split of one class leaves nothing to fit) and
    ``results``: per net, then ``"raw counts"``, representation -> :func:`linear_curve`'s dict
    (``"energy"``: :func:`energy_curve`'s; empty when skipped).

    Raises
    ------
    ValueError : no features, or as :func:`labelled_draws`.
    """
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for name, (f_train, f_test) in features:
        if not results:  # the first net's features also hold the labels and the raw counts
            out = describe(ks, draws, described, list(f_test), cs)
            if len(np.unique(f_train.labels)) < 2:  # a classifier needs two classes; the run warns of it already
                return {**out, "results": {}, "skipped": "the training split holds one class only",
                        "seconds": time.perf_counter() - t0}
            labels = labelled_draws(f_train.labels, ks, draws, torch.Generator().manual_seed(seed))
            y_test = f_test["clean"].labels
            raw = {"input": linear_curve(f_train.layers[0], f_train.labels,
                                         {v: f.layers[0] for v, f in f_test.items()}, y_test, labels, seed, cs)}
        results[name] = _net_readouts(nets[name], f_train, f_test, labels, y_test, seed, per_layer, energy, cs)
        del f_train, f_test  # the next net's features are made without this one's alive
    if not results:
        raise ValueError("label_readouts needs the features of one net or more, got none")
    out["results"] = {**results, "raw counts": raw}
    out["seconds"] = time.perf_counter() - t0
    return out


def _net_readouts(net: SpikingNet, f_train: FrozenFeatures, f_test: Mapping[str, FrozenFeatures], labels: Draws,
                  y_test: np.ndarray, seed: int, per_layer: bool, energy: EnergyFit | None, cs: Sequence[float]
                  ) -> dict[str, Any]:
    """One net's readouts (:func:`label_readouts`'s ``results[name]``)."""
    reps = _representations(f_train, per_layer)
    tests = {v: _representations(f, per_layer) for v, f in f_test.items()}
    out = {r: linear_curve(a, f_train.labels, {v: t[r] for v, t in tests.items()}, y_test, labels, seed, cs)
           for r, a in reps.items()}
    if energy is not None and f_train.top_trials is not None:
        out["energy"] = energy_curve(f_train.top_trials, f_train.labels, {v: f.top_trials for v, f in f_test.items()},
                                     y_test, labels, net.config.n_classes, energy, torch.Generator().manual_seed(seed),
                                     device_of(net))
    return out


def compact_label_efficiency(nets: Mapping[str, SpikingNet], features: Mapping[str, NetFeatures],
                             test: Iterable[Batch], config: RunConfig) -> dict[str, Any]:
    """What ``spikeff train`` reports: :func:`label_readouts` at :data:`COMPACT_LABELS`, the top
    layer and all layers, with the energy readout at the run's readout budget, on the test views
    :data:`COMPACT_VIEWS` (each view costs one test pass per net; the bench scores every view).

    The clean features are those of the run's own passes: the readout fit's over the training split
    (``config.train.trials`` trials, the noise the head was fitted on) and the evaluation's over the test
    split (``config.test_trials``, the noise the reported accuracy is measured with). Each other view gets one
    pass per net over ``test``, perturbed as :func:`view_batches` with ``config.seed``. The labelled draws
    are seeded by ``config.seed``. The energy head is fitted at ``config.eval.readout_lrs[0]`` (fixed: too
    few labels to choose it on), and the linear readouts at one fixed ``C`` (:data:`COMPACT_C`), not
    cross-validated as in the bench: cross-validation costs ten fits a readout, which would take longer
    than a small run's training.

    Parameters
    ----------
    nets : name -> network (``"trained"``, ``"control"``).
    features : name -> its training features and ``{"clean": test features}``.
    test : re-iterable time-first batches (CPU) of the test split, in the order of the clean features.
    config : the run's settings (``eval.label_draws``, ``seed``, the trials, the readout's).

    Returns
    -------
    dict, as :func:`label_readouts`'s.
    """
    def with_views() -> Iterator[tuple[str, NetFeatures]]:  # one net's view passes at a time
        for j, (name, (train, tests)) in enumerate(features.items()):
            views = [v for v in COMPACT_VIEWS if v not in tests]
            yield name, (train, {**tests, **view_features(nets[name], test, views, config.test_trials, config.seed,
                                                          config.seed * 1000 + 800 + 10 * j,
                                                          tests["clean"].top_trials is not None)})

    described = (f"spike counts / T averaged over the readout fit's {config.train.trials} trials (training inputs) "
                 f"and the evaluation's {config.test_trials} (test inputs)")
    return label_readouts(nets, with_views(), described, seed=config.seed, ks=COMPACT_LABELS,
                          draws=config.eval.label_draws, per_layer=False, energy=energy_fit(config), cs=(COMPACT_C,))


def label_table(result: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`label_efficiency`'s result: one row per net and representation,
    the clean accuracy per ``k`` (mean +- std over draws), then every other view's per ``k``.

    Parameters
    ----------
    result : :func:`label_efficiency`'s dict.

    Returns
    -------
    str
    """
    if "skipped" in result:
        return f"(skipped: {result['skipped']})"
    ks = result["labels_per_class"]
    col = {k: "all" if k == "all" else f"k={k}" for k in ks}
    others = [v for v in result["views"] if v != "clean"]
    head = ["", *col.values(), *[f"{v} {col[k]}" for v in others for k in ks]]
    rows = []
    for name, reps in result["results"].items():
        for rep, curve in reps.items():
            cell = lambda k, v, c=curve: (f"{c[k][v]['mean']:.3f}"  # noqa: E731
                                          + (f" ± {c[k][v]['std']:.3f}" if len(c[k]["n_labelled"]) > 1 else ""))
            rows.append([f"{name} {rep}", *[cell(k, "clean") for k in ks], *[cell(k, v) for v in others for k in ks]])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])
