"""Peak resident memory of one training or evaluation step (default N-MNIST layers), one case per process.

    python benchmarks/results/speed_memory_probes/peak_step.py bptt | train/eager | train/compiled | eval/eager
"""

import resource
import sys
from dataclasses import replace

import torch

from spikeff.baselines.bptt import SnnTorchNet, bptt_epoch
from spikeff.evaluation import evaluate
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.trainer import LayerTrainer, TrainConfig, cosine_schedule


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(case: str) -> None:
    torch.set_num_threads(1)
    cfg = NetworkConfig(conv_channels=(64, 128)).for_data((2, 34, 34), 10)
    g = torch.Generator().manual_seed(0)
    b = 64 if case.startswith("eval") else 32
    x = (torch.rand(10, b, 2, 34, 34, generator=g) < 0.05).float()
    y = torch.randint(0, 10, (b,), generator=g)
    base = rss_mib()
    if case == "bptt":
        net = SnnTorchNet(cfg, g)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        bptt_epoch(net, opt, cosine_schedule(opt, 10), [(x, y)])
    else:
        net = SpikingNet(replace(cfg, scan=case.split("/")[1]), g)
        if case.startswith("eval"):
            evaluate(net, [(x, y)], 8, torch.Generator().manual_seed(1))
        else:
            trainer = LayerTrainer(net, TrainConfig(), torch.Generator().manual_seed(1), progress=False)
            trainer.train_epoch([(x, y)])
    print(f"{case}: base {base:.0f} MiB, peak {rss_mib():.0f} MiB, step {rss_mib() - base:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1])
