"""Forward-Forward baseline: label embedding, goodness, hard negatives, layer-local learning, op counts."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_batches

from spikeff.baselines import FFConfig, FFNet, train_ff
from spikeff.baselines.ff import (
    evaluate_ff,
    ff_loss,
    goodness,
    hardest_wrong,
    mine_negatives,
    normalise,
    symba_loss,
    train_layers,
)
from spikeff.network import NetworkConfig
from spikeff.neurons import lif_scan


def cfg(n_classes: int = 2) -> NetworkConfig:
    return NetworkConfig((2, 8, 8), n_classes, conv_channels=(4,), hidden=(6,))


def test_goodness_loss_and_normalisation():
    s = torch.zeros(3, 2, 4)
    s[:, 0, 0] = 1  # neuron 0 of sample 0 spikes 3 times
    assert goodness(s).tolist() == [9 / 4, 0.0]
    assert (ff_loss(torch.tensor([5.0]), torch.tensor([1.0]), 3.0, 1.0)
            < ff_loss(torch.tensor([1.0]), torch.tensor([5.0]), 3.0, 1.0))
    h = normalise(s * 7)
    c = h.sum(0)
    assert c[0].norm().item() == pytest.approx(4**0.5)  # sqrt(N) / ||c||: magnitude removed
    assert torch.equal(c[1], torch.zeros(4))  # a silent sample stays silent


def test_label_embedding_shares_the_data_part_and_matches_the_concatenated_input():
    c = cfg(3)
    net = FFNet(c, FFConfig(label_scale=2.0), torch.Generator().manual_seed(0))
    x, _ = toy_batches(1)[0]
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    e = net.embed(x, y)
    assert e.shape == (4, 8, 5, 8, 8) and torch.equal(e[:, :, :2], x)
    assert torch.all(e[:, y == 1, 3] == 2.0) and torch.all(e[:, y == 1, 2] == 0.0)
    full = net.layers[0].currents(e)  # the conv on data + label channels, as one input
    assert torch.allclose(net.first_currents(x, y), full, atol=1e-5)
    labels = torch.arange(3).repeat_interleave(8)
    rep = net.first_currents(x, labels, repeat=3)  # label-major passes share the data part
    assert torch.allclose(rep[:, 8:16], net.layers[0].currents(net.embed(x, torch.full((8,), 1))), atol=1e-5)
    # the fast no-grad scan gives lif_scan's spikes
    with torch.no_grad():
        assert torch.equal(net._scan(net.layers[0], full), lif_scan(full, net.layers[0].lif.deterministic())[0])


def test_hard_negatives_are_the_highest_goodness_wrong_labels():
    g = torch.tensor([[5.0, 0.0], [1.0, 2.0], [3.0, 9.0]])  # (K=3 labels, B=2)
    labels = torch.arange(3).unsqueeze(1).expand(3, 2)
    assert hardest_wrong(g, labels, torch.tensor([0, 2])).tolist() == [2, 1]
    torch.manual_seed(0)
    net = FFNet(cfg(4), FFConfig(hard_fraction=1.0, mine_candidates=None), torch.Generator().manual_seed(1))
    x = (torch.rand(4, 16, 2, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    y = torch.arange(16) % 4
    net.init_from_batch(x, y)
    neg, right = mine_negatives(net, x, y, torch.Generator().manual_seed(3))
    gl, _ = net.label_goodness(x)
    score = gl.sum(0).masked_fill(torch.nn.functional.one_hot(y, 4).T.bool(), float("-inf"))
    assert torch.all(neg != y) and torch.equal(neg, score.argmax(0))
    assert right == int((gl.sum(0).argmax(0) == y).sum())
    # among 2 of the 3 wrong labels: a wrong label, never the lowest-goodness one
    net.ff = FFConfig(hard_fraction=1.0, mine_candidates=2)
    two, _ = mine_negatives(net, x, y, torch.Generator().manual_seed(4))
    lowest = gl.sum(0).masked_fill(torch.nn.functional.one_hot(y, 4).T.bool(), float("inf")).argmin(0)
    assert torch.all(two != y) and torch.all(two != lowest)
    rand = mine_negatives(net.__class__(cfg(4), FFConfig(hard_fraction=0.0)), x, y, torch.Generator().manual_seed(3))[0]
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


def test_symba_loss_compares_each_positive_with_its_negative():
    assert symba_loss(torch.tensor([5.0]), torch.tensor([5.0]), 2.0).item() == pytest.approx(0.6931, abs=1e-4)
    # the same gap at any goodness level gives the same loss (no threshold)
    assert symba_loss(torch.tensor([3.0]), torch.tensor([1.0]), 1.0) == symba_loss(torch.tensor([9.0]),
                                                                                   torch.tensor([7.0]), 1.0)
    net = FFNet(cfg(), FFConfig(epochs=5, lr=1e-2, loss="symba", sharpness=4.0), torch.Generator().manual_seed(0))
    hist = train_layers(net, toy_batches(), torch.Generator().manual_seed(1))
    for layer in (1, 2):
        assert hist[-1][f"layer{layer}/loss"] < hist[0][f"layer{layer}/loss"]
        assert hist[-1][f"layer{layer}/goodness_gap"] > 0.1


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
    assert net.head.in_features == 5 and [tuple(m.shape) for m in net.label_maps] == [(3, 6), (3, 5)]
    x, _ = toy_batches(1)[0]
    below = net.layer_spikes(x, None)[0]
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    with torch.no_grad():  # layer 2 adds E^T v: the one-hot label times label_scale, or the neutral 2/3 each
        diff = net.upper_currents(1, below, y) - net.upper_currents(1, below, None)
        want = (torch.nn.functional.one_hot(y, 3).float() * 2.0 - 2.0 / 3) @ net.label_maps[0]
        assert torch.allclose(diff, want.expand_as(diff), atol=1e-5)
        net.layers[0].synapse.weight[:, 2:] = 0  # no label in the first layer: it still reaches layers 2 and 3
        zero, one = torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)
        a, b = net.layer_spikes(x, zero), net.layer_spikes(x, one)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    # layer-local: each label map is stepped by its own layer's optimizer only
    assert any(p is net.label_maps[1] for p in net.layer_parameters(2))
    assert not any(p is net.label_maps[1] for p in net.layer_parameters(1))
    first = FFNet(c, FFConfig(), torch.Generator().manual_seed(0))
    assert len(first.label_maps) == 0 and len(first.layers) == 2
    net = FFNet(c, FFConfig(label_layers="all", epochs=2, lr=1e-2), torch.Generator().manual_seed(0))
    before = [m.detach().clone() for m in net.label_maps]
    train_layers(net, toy_batches(2), torch.Generator().manual_seed(1))
    assert all(not torch.equal(b, m) for b, m in zip(before, net.label_maps))
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
