"""Data-loading benchmark: first (cold) vs second (cached) epoch over the real N-MNIST sample.

    python benchmarks/data_loading.py [--data-dir ../shared/data] [--repeats 3]

Epoch 1 (cold): ``load_splits`` with an empty cache dir (decode every .bin with tonic, frame,
write the cache) plus one pass over train and test through ``make_loader``.
Epoch 2 (cached): a fresh ``load_splits`` that finds the cache (what a new run or the next
epoch of a re-started job pays) plus one pass. Also timed: a pass alone over the in-memory
splits, and an augmented train pass (events cached, framed on the fly). Median of repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import tonic
import torch

from spikeff.data import load_splits, make_loader
from spikeff.provenance import device_name, git_commit

REPO = Path(__file__).resolve().parents[1]


def one_pass(splits, batch_size: int, num_workers: int) -> int:
    n = 0
    for ds in (splits.train, splits.test):
        for _frames, labels in make_loader(ds, batch_size, shuffle=True, seed=0, num_workers=num_workers):
            n += len(labels)
    return n


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    default_data = os.environ.get("SPIKEFF_DATA", str(REPO.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=default_data)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-time-bins", type=int, default=10)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "data_loading.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    rows: dict[str, list[float]] = {"cold": [], "warm": [], "pass": [], "aug_cold": [], "aug_pass": []}
    n = 0
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            kw = {"cache_dir": cache, "n_time_bins": args.n_time_bins}
            t_load, splits = timed(load_splits, "nmnist", args.data_dir, **kw)
            t_pass, n = timed(one_pass, splits, args.batch_size, args.num_workers)
            rows["cold"].append(t_load + t_pass)
            t_load2, splits2 = timed(load_splits, "nmnist", args.data_dir, **kw)
            assert all("from cache" in v for v in splits2.cache.values()), splits2.cache
            t_pass2, _ = timed(one_pass, splits2, args.batch_size, args.num_workers)
            rows["warm"].append(t_load2 + t_pass2)
            rows["pass"].append(t_pass2)
            t_aug_load, aug = timed(load_splits, "nmnist", args.data_dir, augment=True, **kw)
            t_aug_pass, _ = timed(one_pass, aug, args.batch_size, args.num_workers)
            rows["aug_cold"].append(t_aug_load + t_aug_pass)
            t_aug_pass2, _ = timed(one_pass, aug, args.batch_size, args.num_workers)
            rows["aug_pass"].append(t_aug_pass2)
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()))

    med = {k: statistics.median(v) for k, v in rows.items()}
    commit = git_commit(REPO)["commit"]
    cmd = "python benchmarks/data_loading.py " + " ".join(sys.argv[1:])

    def fmt(k: str) -> str:
        return f"{med[k]:.2f} s | {min(rows[k]):.2f}–{max(rows[k]):.2f} s"

    text = f"""# Data loading: N-MNIST, {n} samples (real data, 1000-sample local copy)

- command: `{cmd.strip()}` (from the repo root, venv active)
- git commit: {commit}
- device: {device_name('cpu')}, no GPU
- date: {date.today().isoformat()}
- software: Python {platform.python_version()}, torch {torch.__version__}, tonic {tonic.__version__}
- setup: T={args.n_time_bins} bins, frames (T, B, 2, 34, 34) float32, batch {args.batch_size}, \
num_workers={args.num_workers}, one pass = train (800) + validation (200); median of {args.repeats} repeats \
(min–max in the last column), each repeat with a fresh empty cache dir

| measurement | median | range |
|---|---|---|
| epoch 1, cold: `load_splits` (tonic decode + framing + cache write) + one pass | {fmt("cold")} |
| epoch 2, cached: fresh `load_splits` hitting the frame cache + one pass | {fmt("warm")} |
| one pass only, frames already in memory | {fmt("pass")} |
| augmented train, cold: decode + events cache + one pass with on-the-fly framing | {fmt("aug_cold")} |
| augmented, one more pass (events in memory, augment + frame per item) | {fmt("aug_pass")} |

Speed-up of the cached epoch over the cold one: {med["cold"] / med["warm"]:.1f}x. The .bin files sit
in the OS page cache after the first read, so "cold" here means "not yet framed", not "cold disk".
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
