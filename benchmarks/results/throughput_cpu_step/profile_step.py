"""Where one spikeff training step spends its time on the CPU: torch.profiler's operator table over two
batches of the default N-MNIST layers (conv 64/128, T = 10, B = 32, 8 trials, eager scan), one torch thread,
after one warm-up batch. Seeded Bernoulli frames, as in benchmarks/throughput.py.

    python benchmarks/results/throughput_cpu_step/profile_step.py > profile_step.txt
"""

from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from spikeff.network import NetworkConfig, SpikingNet
from spikeff.trainer import LayerTrainer, TrainConfig

torch.set_num_threads(1)
cfg = replace(NetworkConfig(), conv_channels=(64, 128), input_shape=(2, 34, 34), n_classes=10)
g = torch.Generator().manual_seed(0)
batches = [((torch.rand(10, 32, 2, 34, 34, generator=g) < 0.05).float(), torch.randint(0, 10, (32,), generator=g))
           for _ in range(2)]
trainer = LayerTrainer(SpikingNet(cfg, torch.Generator().manual_seed(1)), TrainConfig(trials=8),
                       torch.Generator().manual_seed(2))
trainer.train_epoch(batches[:1])
with profile(activities=[ProfilerActivity.CPU]) as prof:
    trainer.train_epoch(batches)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
