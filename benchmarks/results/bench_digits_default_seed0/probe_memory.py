"""Peak resident memory of one layer probe fit (spikeff.probe.fit_probe) on features of the bench's shape.

usage: OMP_NUM_THREADS=1 python probe_memory.py N D   (N inputs, D features; random, 10 % non-zero)
"""

import sys
import time

import numpy as np
import torch

from spikeff.bench.runner import _peak_memory_mib  # the bench's peak-memory column, measured the same way
from spikeff.probe import fit_probe


def peak_mib() -> int:
    return int(_peak_memory_mib(torch.device("cpu")))


def main() -> None:
    n, d = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = (rng.random((n, d), dtype=np.float32) < 0.1).astype(np.float32)
    y = np.arange(n) % 10
    print("before fit", peak_mib(), "MiB; features", x.nbytes >> 20, "MiB", flush=True)
    t = time.time()
    fit_probe(x, y)
    print("after fit", peak_mib(), "MiB", round(time.time() - t, 1), "s")


if __name__ == "__main__":
    main()
