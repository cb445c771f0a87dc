import numpy as np
import torch

from spikeff.network import NetworkConfig, SpikingNet
from spikeff.probe import layer_features, layer_probes, probe_accuracy


def toy_batches(n_batches: int, seed: int):
    """Class 0: events in the left half; class 1: in the right half."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.arange(8) % 2
        x = (torch.rand(4, 8, 2, 8, 8, generator=g) < 0.5).float()
        mask = torch.zeros(8, 1, 1, 8)
        mask[y == 0, ..., :4] = 1
        mask[y == 1, ..., 4:] = 1
        out.append((x * mask, y))
    return out


def test_probes_read_the_input_and_every_layer():
    net = SpikingNet(NetworkConfig((2, 8, 8), 2, conv_channels=(4,), hidden=(6,)), torch.Generator().manual_seed(0))
    feats, labels = layer_features(net, toy_batches(2, 0), trials=3, generator=torch.Generator().manual_seed(1))
    assert [f.shape for f in feats] == [(16, 128), (16, 64), (16, 6)] and labels.shape == (16,)
    accs = layer_probes(net, toy_batches(4, 0), toy_batches(2, 1), 3, torch.Generator().manual_seed(1))
    assert len(accs) == 3 and accs[0] == 1.0  # the toy input is linearly separable
    assert all(0.0 <= a <= 1.0 for a in accs)


def test_probe_is_at_chance_on_shuffled_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 20))
    y = rng.integers(0, 4, 200)
    assert probe_accuracy(x[:150], y[:150], x[150:], y[150:]) < 0.5
