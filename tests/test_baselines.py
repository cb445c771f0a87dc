"""BPTT (snntorch) baseline: same shapes, same neurons, op counts, training runs (Forward-Forward: test_ff.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_batches

from spikeff.baselines import BPTTConfig, SnnTorchNet, train_bptt
from spikeff.baselines.bptt import _leaky, run_leaky, sigmoid_surrogate
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import LIFParams, lif_scan


def cfg(readout: str = "linear", reset: str = "zero") -> NetworkConfig:
    return NetworkConfig((2, 8, 8), 2, conv_channels=(4,), hidden=(6,), lif=LIFParams(reset=reset), readout=readout)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_snntorch_leaky_is_spikeffs_deterministic_lif(reset):
    c = cfg(reset=reset)
    currents = torch.rand(12, 3, 5, generator=torch.Generator().manual_seed(1)) * 0.9
    ref, _ = lif_scan(currents, c.lif.deterministic())
    assert torch.equal(run_leaky(_leaky(c), currents), ref)


def test_sigmoid_surrogate_matches_snntorch_and_stays_finite_far_below_threshold():
    from snntorch import surrogate

    x = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    ours, theirs = sigmoid_surrogate(5.0)(x), surrogate.sigmoid(slope=5.0)(x)
    assert torch.equal(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)
    far = torch.tensor([-30.0, -1e4, 30.0], requires_grad=True)  # snntorch 1.0.0 gives NaN at -30
    (g,) = torch.autograd.grad(sigmoid_surrogate(5.0)(far).sum(), far)
    assert torch.equal(g, torch.zeros(3))


@pytest.mark.parametrize("readout", ["linear", "lif"])
def test_snntorch_net_has_spikeffs_shapes_weights_and_spikes(readout):
    c = cfg(readout)
    ours = SpikingNet(c, torch.Generator().manual_seed(3))
    theirs = SnnTorchNet(c, torch.Generator().manual_seed(3))
    for layer, syn in zip(ours.layers, theirs.synapses):
        assert torch.equal(layer.synapse.weight, syn.weight)
    assert torch.equal(ours.head.fc.weight, theirs.head.weight)
    x, _ = toy_batches(1)[0]
    with torch.no_grad():
        z, spikes, head_spikes = theirs(x)
        ref = ours.layer_outputs(x, deterministic=True)
        zref = ours(x, deterministic=True)[0]
    for a, b in zip(spikes, ref):
        assert torch.equal(a, b)
    assert z.shape == (8, 2) and torch.allclose(z, zref)
    assert (head_spikes is None) == (readout == "linear")


def test_bptt_trains_and_counts_ops():
    data = toy_batches()
    res = train_bptt(cfg(), BPTTConfig(epochs=6, lr=1e-2), data, data, generator=torch.Generator().manual_seed(0))
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.accuracy > 0.5
    assert len(res.ops.synops) == 3 and res.ops.random_draws == 0.0
    assert res.ops.neuron_updates == (4 * 4 * 4 * 4, 4 * 6)  # T x C x H x W after pooling; T x hidden
    assert res.passes == 6 and res.train_seconds > 0


def test_baseline_configs_reject_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        BPTTConfig(epochs=-1)
