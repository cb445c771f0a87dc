"""Forward-Forward baseline: label embedding, goodness, hard negatives, layer-local learning, op counts."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_batches

from spikeff.baselines import FFConfig, FFNet, train_ff
from spikeff.baselines.ff import evaluate_ff, mine_negatives, normalise, train_layers
from spikeff.network import NetworkConfig, SpikingLayer, spike_counts
from spikeff.neurons import lif_scan
from spikeff.objectives import goodness


def cfg(n_classes: int = 2) -> NetworkConfig:
    return NetworkConfig((2, 8, 8), n_classes, conv_channels=(4,), hidden=(6,))


def test_normalisation_keeps_the_pattern_not_the_magnitude():
    s = torch.zeros(3, 2, 4)
    s[:, 0, 0] = 1  # neuron 0 of sample 0 spikes 3 times
    c = normalise(s * 7).sum(0)
    assert c[0].norm().item() == pytest.approx(4**0.5)  # sqrt(N) / ||c||: magnitude removed
    assert torch.equal(c[1], torch.zeros(4))  # a silent sample stays silent


def test_label_inputs_and_the_shared_layers_and_neurons():
    net = FFNet(cfg(3), FFConfig(label_scale=2.0), torch.Generator().manual_seed(0))
    assert all(isinstance(layer, SpikingLayer) for layer in net.layers) and net.layers[0].synapse.in_channels == 5
    x, _ = toy_batches(1)[0]
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    e = net.feed(0, x, y)
    assert e.shape == (4, 8, 5, 8, 8) and torch.equal(e[:, :, :2], x)
    assert torch.all(e[:, y == 1, 3] == 2.0) and torch.all(e[:, y == 1, 2] == 0.0)
    neutral = net.feed(0, x, torch.full((8,), -1))
    assert torch.allclose(neutral[:, :, 2:], torch.full_like(neutral[:, :, 2:], 2.0 / 3))
    labels = torch.arange(3).repeat_interleave(8)  # three label-major passes of the same inputs
    rep = net.feed(0, x, labels)
    assert rep.shape[1] == 24 and torch.equal(rep[:, 8:16], net.feed(0, x, torch.full((8,), 1)))
    # the spikes are the network's layer with lif_scan's deterministic neurons; upper layers read normalised spikes
    spikes = net.layer_spikes(x, y)
    assert torch.equal(spikes[0], lif_scan(net.layers[0].currents(e), net.config.lif.deterministic())[0])
    assert torch.equal(net.feed(1, spikes[0], y), normalise(spikes[0]))  # label_layers="first": no labels above
    g, passes = net.label_goodness(x)
    assert g.shape == (2, 3, 8) and torch.equal(g[1, 2], goodness(spike_counts(passes[1], 3))[2])


def test_hard_negatives_are_the_highest_goodness_wrong_labels():
    net = FFNet(cfg(4), FFConfig(hard_fraction=1.0, mine_candidates=None), torch.Generator().manual_seed(1))
    x = (torch.rand(4, 16, 2, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    y = torch.arange(16) % 4
    net.init_from_batch(x, y)
    assert torch.all(net.thresholds > 0)  # the threshold loss's theta_l: where the goodness lies at init
    neg = mine_negatives(net, x, y, torch.Generator().manual_seed(3))
    gl, _ = net.label_goodness(x)
    score = gl.sum(0).masked_fill(torch.nn.functional.one_hot(y, 4).T.bool(), float("-inf"))
    assert torch.all(neg != y) and torch.equal(neg, score.argmax(0))
    # among 2 of the 3 wrong labels: a wrong label, never the lowest-goodness one
    net.ff = FFConfig(hard_fraction=1.0, mine_candidates=2)
    two = mine_negatives(net, x, y, torch.Generator().manual_seed(4))
    lowest = gl.sum(0).masked_fill(torch.nn.functional.one_hot(y, 4).T.bool(), float("inf")).argmin(0)
    assert torch.all(two != y) and torch.all(two != lowest)
    rand = mine_negatives(net.__class__(cfg(4), FFConfig(hard_fraction=0.0)), x, y, torch.Generator().manual_seed(3))
    assert torch.all(rand != y) and not torch.equal(rand, neg)  # random wrong labels, not the mined ones


def test_layer_local_training_separates_positive_from_negative_goodness():
    data = toy_batches()
    ff = FFConfig(epochs=5, lr=1e-2, loss="threshold", sharpness=1.0)  # Hinton's loss
    net = FFNet(cfg(), ff, torch.Generator().manual_seed(0))
    hist = train_layers(net, data, torch.Generator().manual_seed(1))
    for layer in (1, 2):
        assert hist[-1][f"layer{layer}/loss"] < hist[0][f"layer{layer}/loss"] - 0.05
        assert hist[-1][f"layer{layer}/goodness_gap"] > 0.5
    assert hist[0]["layer1/loss"] == pytest.approx(2 * 0.6931, abs=0.15)  # threshold where goodness lies at init
    assert {"layer1/rate", "layer1/spikes_per_bin"} <= set(hist[0])  # the shared loop's records


def test_symba_training_raises_the_gap_and_only_the_layers_learn():
    net = FFNet(cfg(), FFConfig(epochs=5, lr=1e-2, loss="symba", sharpness=4.0), torch.Generator().manual_seed(0))
    head = [p.detach().clone() for p in net.head.parameters()]
    hist = train_layers(net, toy_batches(), torch.Generator().manual_seed(1))
    for layer in (1, 2):
        assert hist[-1][f"layer{layer}/loss"] < hist[0][f"layer{layer}/loss"]
        assert hist[-1][f"layer{layer}/goodness_gap"] > 0.1
    assert all(torch.equal(p, q) for p, q in zip(head, net.head.parameters()))  # the head is fitted afterwards


@pytest.mark.parametrize("predict", ["goodness", "head"])
def test_train_ff_is_seeded_and_counts_every_pass(predict):
    data = toy_batches(2)
    c = cfg()
    run = lambda: train_ff(c, FFConfig(epochs=2, lr=1e-2, predict=predict, head_epochs=3), data, data,  # noqa: E731
                           generator=torch.Generator().manual_seed(0))
    a, b = run(), run()
    assert a.accuracy == b.accuracy and a.ops == b.ops
    assert all(torch.equal(p, q) for p, q in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    passes = 2 if predict == "goodness" else 1
    neurons1 = 4 * 4 * 4  # after pooling
    assert a.ops.extra["passes"] == passes
    assert a.ops.neuron_updates == (passes * 4 * neurons1, passes * 4 * 6)  # passes x T x neurons
    assert a.ops.extra["label_bias_adds"] == pytest.approx(passes * 4 * neurons1)
    assert len(a.ops.synops) == (3 if predict == "head" else 2)  # the head's event-driven adds


def test_label_at_every_layer_and_fully_connected_layers_on_top():
    c = cfg(3)  # conv 4, fc 6
    net = FFNet(c, FFConfig(label_layers="all", hidden=[5], label_scale=2.0), torch.Generator().manual_seed(0))
    assert net.ff.hidden == (5,)  # a JSON list becomes a tuple
    assert len(net.layers) == 3 and isinstance(net.layers[-1].synapse, torch.nn.Linear)
    # every layer has K = 3 label inputs more: channels of the first, inputs of the fully connected ones
    assert [layer.synapse.weight.shape[1] for layer in net.layers] == [2 + 3, 64 + 3, 6 + 3]
    assert net.head.in_features == 5
    x, _ = toy_batches(1)[0]
    below = net.layer_spikes(x, torch.full((8,), -1))[0]
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    fed = net.feed(1, below, y)  # the normalised spikes, flattened for the linear layer, then the label inputs
    assert torch.equal(fed[..., :64], normalise(below).flatten(2))
    assert torch.equal(fed[0, :, 64:], torch.nn.functional.one_hot(y, 3).float() * 2.0)
    net.init_from_batch(x, y)  # active layers
    with torch.no_grad():
        net.layers[0].synapse.weight[:, 2:] = 0  # no label in the first layer: it still reaches layers 2 and 3
    zero, one = torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)
    a, b = net.layer_spikes(x, zero), net.layer_spikes(x, one)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    first = FFNet(c, FFConfig(), torch.Generator().manual_seed(0))
    assert [layer.synapse.weight.shape[1] for layer in first.layers] == [2 + 3, 64] and len(first.layers) == 2
    # layer-local: each layer's label weights are its own parameters and learn
    net = FFNet(c, FFConfig(label_layers="all", epochs=2, lr=1e-2), torch.Generator().manual_seed(0))
    before = [layer.synapse.weight[:, -3:].detach().clone() for layer in net.layers[1:]]
    train_layers(net, toy_batches(2), torch.Generator().manual_seed(1))
    assert all(not torch.equal(w, layer.synapse.weight[:, -3:]) for w, layer in zip(before, net.layers[1:]))
    # op counts: one label add per neuron of every layer, bin and pass
    res = train_ff(c, FFConfig(label_layers="all", hidden=(5,), epochs=1, lr=1e-2, predict="goodness"),
                   toy_batches(1), toy_batches(1), generator=torch.Generator().manual_seed(0))
    assert res.ops.extra["label_bias_adds"] == pytest.approx(3 * 4 * (4 * 4 * 4 + 6 + 5))


def test_head_on_the_normalised_counts_of_several_layers():
    c = cfg(3)  # conv 4 (4 x 4 x 4 after pooling), fc 6, plus fc 5 of FF
    x, _ = toy_batches(1)[0]
    nets = {h: FFNet(c, FFConfig(hidden=(5,), head_layers=h), torch.Generator().manual_seed(0))
            for h in ("top", "upper", "all")}
    assert {h: n.head.in_features for h, n in nets.items()} == {"top": 5, "upper": 6 + 5, "all": 64 + 6 + 5}
    net = nets["all"]
    with torch.no_grad():
        net.layers[0].synapse.weight.mul_(4.0)  # some spikes in every layer
        for layer in net.layers[1:]:
            layer.synapse.weight.mul_(4.0)
    f, spikes = net.head_features(x)
    counts = [s.sum(0).flatten(1) for s in spikes]
    assert all(cnt.sum() > 0 for cnt in counts)
    want = torch.cat([cnt * cnt.shape[1] ** 0.5 / cnt.norm(dim=1, keepdim=True).clamp_min(1e-6) for cnt in counts], 1)
    assert torch.allclose(f, want)  # each layer's block normalised on its own, not the concatenation
    # op counts: the head adds n_classes per spike of every layer it reads, one scaling per class and layer
    k, b = 3, x.shape[1]
    _, top_ops = evaluate_ff(nets["top"], [(x, torch.zeros(b, dtype=torch.long))], mode="head")
    _, all_ops = evaluate_ff(net, [(x, torch.zeros(b, dtype=torch.long))], mode="head")
    spikes_per = [float(s.sum()) / b for s in spikes]
    assert all_ops.synops[-1] == pytest.approx(k * sum(spikes_per))
    assert all_ops.extra["head_synops"] == pytest.approx(k * sum(spikes_per[:2]))
    assert all_ops.connections[-1] == pytest.approx(k * (64 + 6 + 5))
    assert all_ops.macs[-1] - top_ops.macs[-1] == pytest.approx(2 * k)
    assert top_ops.extra["head_synops"] == 0.0
    top = FFNet(c, FFConfig(), torch.Generator().manual_seed(0))
    assert top.head.in_features == 6 and top.head_layers == [1]  # the default head reads the top layer
    before = [p.detach().clone() for p in top.layers.parameters()]
    top.set_head("all", torch.Generator().manual_seed(1))  # another head on the same layers
    assert top.head.in_features == 64 + 6 and top.ff.head_layers == "all" and top.head_layers == [0, 1]
    assert all(torch.equal(p, q) for p, q in zip(before, top.layers.parameters()))
    res = train_ff(c, FFConfig(head_layers="all", epochs=1, head_epochs=2), toy_batches(1), toy_batches(1),
                   generator=torch.Generator().manual_seed(0))
    assert res.net.head.in_features == 64 + 6 and 0.0 <= res.accuracy <= 1.0


def test_ff_config_rejects_bad_values():
    with pytest.raises(ValueError, match="positive"):
        FFConfig(threshold=0.0)
    with pytest.raises(ValueError, match="hard_fraction"):
        FFConfig(hard_fraction=1.5)
    with pytest.raises(ValueError, match="predict"):
        FFConfig(predict="vote")
    with pytest.raises(ValueError, match="hidden"):
        FFConfig(hidden=(0,))
    with pytest.raises(ValueError, match="loss"):
        FFConfig(loss="hinge")
    with pytest.raises(ValueError, match="label_layers"):
        FFConfig(label_layers="last")
    with pytest.raises(ValueError, match="head_layers"):
        FFConfig(head_layers="first")
