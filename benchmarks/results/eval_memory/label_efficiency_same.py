"""A checksum of ``label_efficiency``'s full result (two nets, two shapes, every k, view, draw and the energy
readout) on seeded toy data, with the ``spikeff`` of the checkout named: equal checksums, the same numbers.

    python benchmarks/results/eval_memory/label_efficiency_same.py /path/to/checkout
"""

import hashlib
import json
import sys

checkout = sys.argv[1] if len(sys.argv) > 1 else "."
sys.path[:0] = [checkout, f"{checkout}/tests"]

import torch  # noqa: E402
from test_probe import toy_batches  # noqa: E402

import spikeff.label_efficiency as le  # noqa: E402
from spikeff.network import NetworkConfig, SpikingNet  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for hidden in ((6,), ()):
        cfg = NetworkConfig((2, 8, 8), 2, conv_channels=(4, 5), hidden=hidden)
        nets = {name: SpikingNet(cfg, torch.Generator().manual_seed(i))
                for i, name in enumerate(("trained", "control"))}
        res = le.label_efficiency(nets, toy_batches(6, 0), toy_batches(3, 1), 3, ks=(1, 2, None), draws=3, seed=4,
                                  per_layer=True, energy=le.EnergyFit(epochs=2, lr=1e-2, batch_size=8))
        res.pop("seconds")
        out[str(hidden)] = res
    text = json.dumps(out, sort_keys=True)
    print(f"{le.__file__}: {len(text)} characters, sha1 {hashlib.sha1(text.encode()).hexdigest()[:12]}")


if __name__ == "__main__":
    main()
