"""Seconds of the first and second training step of the default net (digits frames), by scan backend.

One epoch of one batch (trials 8, batch 32, T 10, simultaneous schedule) through LayerTrainer.fit, then a
deterministic evaluation forward (the noiseless variant compiles separately). Run in a fresh process.
"""
import sys
import time

import torch

from spikeff.network import NetworkConfig, SpikingNet
from spikeff.trainer import LayerTrainer, TrainConfig

torch.set_num_threads(1)
backend = sys.argv[1]
shape = tuple(int(v) for v in sys.argv[2].split(",")) if len(sys.argv) > 2 else (2, 8, 8)
cfg = NetworkConfig(shape, 10, scan=backend)  # default layers: conv 64, 128, pool 2
net = SpikingNet(cfg, torch.Generator().manual_seed(0))
g = torch.Generator().manual_seed(1)
x = (torch.rand(10, 32, *shape, generator=g) < 0.2).float()
y = torch.arange(32) % 10
for rep in range(2):
    t0 = time.perf_counter()
    trainer = LayerTrainer(net, TrainConfig(epochs=1), torch.Generator().manual_seed(2))
    trainer.fit([(x, y)])
    with torch.no_grad():
        net.eval()
        net.layer_outputs(x, g, deterministic=True)
        net.train()
    print(f"{backend} step {rep + 1}: {time.perf_counter() - t0:.1f} s", flush=True)
