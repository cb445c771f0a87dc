"""One layer-training step of the default layers with the reference eager scan or the adjoint scan:
wall seconds per step, the step's peak resident memory, and a checksum of the trained weights.

    python benchmarks/results/adjoint_scan/step_compare.py reference|adjoint STEPS CHANNELS [THREADS]   # e.g. 6 16,32 1
"""

import resource
import sys
import time

import torch

from spikeff.network import NetworkConfig, SpikingNet
from spikeff.scan import adjoint_scan, eager_scan
from spikeff.trainer import LayerTrainer, TrainConfig


def main(case: str, steps: int, channels: str, threads: int) -> None:
    torch.set_num_threads(threads)
    cfg = NetworkConfig(conv_channels=tuple(int(c) for c in channels.split(","))).for_data((2, 34, 34), 10)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(10, 32, 2, 34, 34, generator=g) < 0.05).float()
    y = torch.randint(0, 10, (32,), generator=g)
    net = SpikingNet(cfg, g)
    for layer in net.layers:
        layer.scan = eager_scan if case == "reference" else adjoint_scan
    trainer = LayerTrainer(net, TrainConfig(), torch.Generator().manual_seed(1), progress=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_epoch([(x, y)])
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    checksum = sum(p.double().sum().item() for p in net.parameters())
    print(f"{case} {channels}: s per step {' '.join(f'{t:.2f}' for t in times)}; "
          f"step peak {peak:.0f} MiB; weights checksum {checksum:.17g}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1)
