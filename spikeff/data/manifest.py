"""The data manifest: which samples a run trained and was tested on, in a form that survives
copying the data elsewhere (identities are paths relative to ``data_dir`` and sizes)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from .model import Sample

MANIFEST_VERSION = 1


def fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 of a split's sample identities (relative path and size) and labels, in order.

    Parameters
    ----------
    samples : sequence of Sample
        One split, in its order.

    Returns
    -------
    str
        The hex digest.
    """
    return hashlib.sha256("\n".join(f"{s.ident}:{s.label}" for s in samples).encode()).hexdigest()


def sample_digest(ident: str) -> str:
    """A short (16 hex) digest of one sample identity, as recorded for training samples."""
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def make_manifest(
    dataset: str, rule: Mapping[str, object], train: Sequence[Sample], test: Sequence[Sample]
) -> dict[str, object]:
    """Which data a run used.

    Parameters
    ----------
    dataset : str
        The dataset's name.
    rule : mapping
        How the splits were chosen (split names, seed, ``val_fraction``, ``limit``).
    train, test : sequence of Sample
        The samples of each split, in order.

    Returns
    -------
    dict
        The split rule, a fingerprint per split, the test samples' identities, and a short
        digest per training sample (to prove that a test set holds none of them).
    """
    return {
        "version": MANIFEST_VERSION,
        "dataset": dataset,
        "rule": dict(rule),
        "train": {"n": len(train), "fingerprint": fingerprint(train),
                  "digests": [sample_digest(x.ident) for x in train]},
        "test": {"n": len(test), "fingerprint": fingerprint(test), "samples": [x.ident for x in test]},
    }


def manifest_summary(manifest: Mapping[str, object]) -> dict[str, object]:
    """The manifest without the per-sample training digests (for ``metrics.json``).

    Parameters
    ----------
    manifest : mapping
        A manifest from :func:`make_manifest` (:attr:`Splits.manifest`).

    Returns
    -------
    dict
        The same, its ``train`` entry without ``digests``.
    """
    return {**manifest, "train": {k: v for k, v in manifest["train"].items() if k != "digests"}}


def manifest_changes(recorded: Mapping[str, object], now: Mapping[str, object]) -> str | None:
    """What differs between the data a run recorded and the data found now.

    Parameters
    ----------
    recorded : mapping
        The manifest the run recorded.
    now : mapping
        The manifest of the data as loaded now.

    Returns
    -------
    str or None
        ``None`` if ``now`` names the same samples as ``recorded``, else what changed, in words.
    """
    if recorded["dataset"] != now["dataset"]:
        return f"dataset {now['dataset']}, the run used {recorded['dataset']}"
    changes = []
    for split, ids in (("train", "digests"), ("test", "samples")):
        was, got = recorded[split], now[split]
        if was["fingerprint"] != got["fingerprint"]:
            gone = len(set(was[ids]) - set(got[ids]))
            new = len(set(got[ids]) - set(was[ids]))
            changes.append(f"{split} split {got['n']} samples, the run had {was['n']} "
                           f"({gone} gone or changed, {new} new)")
    return "; ".join(changes) or None
