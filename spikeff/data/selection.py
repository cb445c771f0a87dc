"""Seeded sample selection: a stratified held-out split and a class-balanced subset."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(fraction * N)`` samples, spread over the classes.

    Each class gets ``floor(fraction * n_c)``; the remaining slots go to the classes with the
    largest remainders (ties in a seeded order), so tiny classes are handled sensibly.

    Parameters
    ----------
    labels : np.ndarray
        One label per sample.
    fraction : float
        The share to hold out; at least one sample is held out and one kept when ``N > 1``.
    rng : np.random.Generator
        Seeds the choice.

    Returns
    -------
    tuple of np.ndarray
        Sorted indices ``(keep, held_out)``.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    n_held = round(fraction * len(labels))
    if 0 < fraction and len(labels) > 1:
        n_held = min(max(n_held, 1), len(labels) - 1)
    exact = np.array([fraction * np.sum(labels == c) for c in classes])
    quota = np.floor(exact).astype(int)
    spare = n_held - quota.sum()
    if spare > 0:
        tiebreak = rng.permutation(len(classes))
        order = np.lexsort((tiebreak, -(exact - quota)))
        quota[order[:spare]] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return keep_idx, held_idx


def balanced_subset(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` samples, as class-balanced as possible, seeded.

    Parameters
    ----------
    labels : np.ndarray
        One label per sample.
    limit : int
        How many samples to keep at most.
    rng : np.random.Generator
        Seeds the choice inside each class and between classes.

    Returns
    -------
    np.ndarray
        Sorted indices of the samples kept (all of them when ``limit >= N``).
    """
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[rng.permutation(idx)] = np.arange(len(idx))  # round-robin position inside the class
    order = np.lexsort((rng.permutation(len(labels)), rank))
    return np.sort(order[:limit])
