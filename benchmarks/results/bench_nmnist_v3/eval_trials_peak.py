"""Peak RSS of one evaluation (2 batches of 64 inputs, energy mode, op counts) of an untrained conv 64/128 net on
N-MNIST-shaped input at N trials.  python eval_trials_peak.py N"""
import resource
import sys

import torch

from spikeff.evaluation import evaluate
from spikeff.network import NetworkConfig, SpikingNet

torch.set_num_threads(1)
n = int(sys.argv[1])
g = torch.Generator().manual_seed(0)
net = SpikingNet(NetworkConfig(conv_channels=(64, 128)).for_data((2, 34, 34), 10), g).eval()
batches = [((torch.rand(10, 64, 2, 34, 34, generator=g) < 0.05).float(), torch.randint(10, (64,), generator=g))
           for _ in range(2)]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ev = evaluate(net, batches, n, torch.Generator().manual_seed(1), ("energy",), count=True)
print(n, f"base {base:.0f} peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB")
