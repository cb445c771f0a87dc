"""Peak resident memory of one evaluation batch (64 inputs x 8 trials, three readout modes, op counts and
features collected, as `spikeff train` evaluates) of an untrained conv 64/128 net on N-MNIST-shaped
input, and a checksum of the predictions and features (equal checksums: the same numbers).

    python benchmarks/results/eval_memory/eval_peak.py
    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/results/eval_memory/eval_peak.py   # peak of live blocks
"""

import hashlib
import resource

import torch

from spikeff.evaluation import evaluate
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.probe import FeatureCollector


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    net = SpikingNet(NetworkConfig(conv_channels=(64, 128)).for_data((2, 34, 34), 10), g).eval()
    batches = [((torch.rand(10, 64, 2, 34, 34, generator=g) < 0.05).float(), torch.randint(10, (64,), generator=g))
               for _ in range(3)]
    base = rss_mib()
    col = FeatureCollector(8, keep_trials=True)
    ev = evaluate(net, batches, 8, torch.Generator().manual_seed(1), count=True, collect=col)
    h = hashlib.sha1()
    for _, p in sorted(ev.predictions.items()):
        h.update(p.numpy().tobytes())
    for layer in col.layers:
        for a in layer:
            h.update(a.tobytes())
    for t in col.tops:
        h.update(t.numpy().tobytes())
    print(f"base {base:.0f} MiB, peak {rss_mib():.0f} MiB, delta {rss_mib() - base:.0f} MiB; sha {h.hexdigest()[:12]}")


if __name__ == "__main__":
    main()
