"""How far a linear classifier on the raw input gets: the reference for what layers must add.

    python benchmarks/linear_input.py --dataset digits --out benchmarks/results/linear_input.md
    python benchmarks/linear_input.py --dataset nmnist --data-dir ../shared/data --append ...

Features: each sample's frames summed over time, ``(T, 2, H, W) -> 2 * H * W`` event counts,
standardised on the training split. Classifier: scikit-learn's multinomial logistic
regression, its inverse regularisation ``C`` chosen by 5-fold cross-validation on the
training split alone; the held-out split (the same one ``spikeff train`` reports, same seed)
is scored once. Fixed-``C`` scores are listed for reference, not selected from.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.preprocessing import StandardScaler

from spikeff.config import parse_ints
from spikeff.data import load_splits
from spikeff.provenance import git_commit

REPO = Path(__file__).resolve().parents[1]
GRID = (0.01, 0.1, 1.0)


def summed_counts(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack([x.sum(0).flatten() for x in xs]).numpy(), np.asarray(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0, help="split seed, as spikeff train --seed")
    ap.add_argument("--limit", type=parse_ints, default=None, help="as spikeff train --limit (N or TRAIN,TEST)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--append", action="store_true", help="add a section to --out instead of replacing it")
    args = ap.parse_args()
    splits = load_splits(args.dataset, args.data_dir, seed=args.seed, limit=args.limit)
    xtr, ytr = summed_counts(splits.train)
    xte, yte = summed_counts(splits.test)
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    cv = LogisticRegressionCV(Cs=list(GRID), cv=5, max_iter=3000).fit(xtr, ytr)
    fixed = {c: LogisticRegression(C=c, max_iter=3000).fit(xtr, ytr).score(xte, yte) for c in GRID}
    commit = git_commit(REPO)
    lines = [
        f"## {args.dataset} (split seed {args.seed}: {len(ytr)} train / {len(yte)} {splits.test_name})",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- commit: {commit['commit']}{' (with uncommitted changes)' if commit['dirty'] else ''}; date {date.today()}",
        f"- features: {xtr.shape[1]} summed event counts per sample ({splits.n_time_bins} bins summed)",
        "",
        f"- **held-out accuracy, C chosen by 5-fold CV on train (C = {cv.C_[0]:g}): {cv.score(xte, yte):.4f}**",
        "- fixed C, for reference: " + ", ".join(f"C={c:g}: {a:.4f}" for c, a in fixed.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        head = "# Linear classifier on the raw input (summed event counts)\n\n" + (__doc__.split("\n\n", 2)[2]) + "\n"
        old = args.out.read_text() if args.append and args.out.exists() else head
        args.out.write_text(old + text)


if __name__ == "__main__":
    main()
