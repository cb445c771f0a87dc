"""Energy accounting against hand-counted values on tiny networks with hand-set spikes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeff.energy import (
    COST_MODELS,
    CostModel,
    OpCounts,
    conv_fanout_map,
    count_ops,
    dense_macs,
    get_cost_model,
    synaptic_ops,
)
from spikeff.network import NetworkConfig, SpikingNet, synapse_pool
from spikeff.neurons import LIFParams


def test_conv_fanout_map_counts_edges_exactly():
    # 3x3 input, k=3, padding 1: a row is covered by 2 (edge) or 3 (interior) output rows.
    m = conv_fanout_map(3, 3, out_channels=2, kernel_size=3, padding=1)
    assert m.tolist() == [[8, 12, 8], [12, 18, 12], [8, 12, 8]]
    # no padding, 3 x 4, k=3: one output row covers every input row; output columns 0..1
    # cover input column 0 once, 1 and 2 twice, 3 once
    assert conv_fanout_map(3, 4, 1, 3, 0).tolist() == [[1, 2, 2, 1]] * 3


def test_linear_net_hand_counted():
    """Linear(3 -> 4) -> LIF -> linear head (4 -> 2), T=2, one input, hand-set events and spikes."""
    x = torch.zeros(2, 1, 1, 1, 3)
    x[0, 0, 0, 0, 0] = 2  # two events on input 0 in bin 0
    x[1, 0, 0, 0, 2] = 3  # three events on input 2 in bin 1
    spikes = torch.zeros(2, 1, 4)
    spikes[0, 0, 1] = spikes[1, 0, 1] = spikes[1, 0, 3] = 1  # 3 spikes
    fc, head = nn.Linear(3, 4), nn.Linear(4, 2)
    ops = count_ops(x, [spikes], [fc], head=head)
    assert ops.synops == (5 * 4, 3 * 2)  # input events x 4 outputs; spikes x 2 classes
    assert ops.macs == (0.0, 2.0)  # head: n_classes per trial
    assert ops.spikes == (3.0,) and ops.neuron_updates == (8.0,)  # 4 neurons x 2 bins
    assert ops.random_draws == 0.0
    cmos = COST_MODELS["cmos45"]
    assert cmos.energy_pj(ops) == pytest.approx(26 * 0.9 + 2 * 4.6 + 8 * 4.6)
    assert COST_MODELS["cmos45-synaptic"].energy_pj(ops) == pytest.approx(26 * 0.9 + 2 * 4.6)
    loihi = COST_MODELS["loihi"]
    assert loihi.energy_pj(ops) == pytest.approx(28 * 23.6 + 5 * 52 + 3 * 81)
    assert loihi.breakdown(ops)["active_updates"] == pytest.approx(3 * 81)


def test_graded_outputs_drive_macs_not_synops():
    """ReLU units: each nonzero output drives one MAC per connection (the next layer's and the head's)."""
    x = torch.zeros(2, 1, 1, 1, 3)
    x[0, 0, 0, 0, 0] = 2
    out1 = torch.zeros(2, 1, 4)
    out1[0, 0, 1], out1[1, 0, 3] = 0.5, 2.0  # two nonzero graded outputs
    out2 = torch.zeros(2, 1, 2)
    out2[1, 0, 0] = 1.5
    ops = count_ops(x, [out1, out2], [nn.Linear(3, 4), nn.Linear(4, 2)], head=nn.Linear(2, 3))
    assert ops.synops == (2 * 4, 0.0, 0.0)  # only the input events are ACs
    assert ops.macs == (0.0, 2 * 2, 3.0 + 1 * 3)
    assert ops.spikes == (2.0, 1.0)


def test_conv_net_hand_counted_with_pool():
    """Conv(1 -> 2, 3x3, pad 1) -> AvgPool(3) -> LIF.

    Without ``pools`` the conv is counted at stride 1 (the old count, now also ``synops_unfused``).
    With the pool, the network runs one conv of stride 3 and kernel 5 (pad 1) on the 3x3
    input: a single output position whose window covers every pixel once, so each event
    drives 2 synapses (one per out channel) instead of 2 * n_h * n_w.
    """
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1  # corner: 2 * 2 * 2 = 8 unfused
    x[0, 0, 0, 1, 1] = 1  # centre: 2 * 9 = 18 unfused
    x[0, 0, 0, 0, 1] = 2  # top edge: 2 * 2 * 3 = 12 unfused, twice
    conv = nn.Conv2d(1, 2, 3, padding=1)
    spikes = torch.zeros(1, 1, 2, 1, 1)  # after a 3x3 -> 1x1 pool
    spikes[0, 0, 1] = 1
    ops = count_ops(x, [spikes], [conv])
    assert ops.synops == ops.synops_unfused == (8 + 18 + 24,)
    assert ops.spikes == (1.0,) and ops.neuron_updates == (2.0,)
    fused = count_ops(x, [spikes], [conv], pools=[nn.AvgPool2d(3)])
    assert fused.synops == (4 * 2,) and fused.synops_unfused == (8 + 18 + 24,)
    assert fused.connections == (9 * 2,)  # 9 pixels x 1 output position x 2 channels
    dense = count_ops(x, [spikes], [conv], input_ops="dense")
    # 49 valid (output, tap) pairs x 2 out channels x 1 in channel x T=1
    assert dense.synops == (0.0,) and dense.macs == (98.0,)
    # executed: the 9 valid taps of the one 5x5 window x 2 out channels
    assert count_ops(x, [spikes], [conv], input_ops="dense", pools=[nn.AvgPool2d(3)]).macs == (18.0,)


def test_synaptic_ops_equal_brute_force_conv_with_ones():
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 3, (3, 7, 5), generator=g).float()
    for k, p in ((3, 1), (5, 2), (3, 0)):
        conv = nn.Conv2d(3, 4, k, padding=p)
        brute = F.conv2d(counts[None], torch.ones(4, 3, k, k), padding=p).sum()
        assert synaptic_ops(counts, conv) == pytest.approx(float(brute))
        assert dense_macs((3, 7, 5), conv, 2) == pytest.approx(
            2 * float(F.conv2d(torch.ones(1, 3, 7, 5), torch.ones(4, 3, k, k), padding=p).sum())
        )


def test_trials_share_the_first_layer_and_multiply_the_rest():
    x = torch.zeros(1, 2, 1, 1, 2)
    x[0, :, 0, 0, 0] = 1  # one event per input
    fc1, fc2 = nn.Linear(2, 3), nn.Linear(3, 5)
    s1 = torch.zeros(1, 3 * 2, 3)
    s1[0, :, 0] = 1  # every trial of every input: one spike
    s2 = torch.zeros(1, 3 * 2, 5)
    shared = count_ops(x, [s1, s2], [fc1, fc2], trials=3, stochastic=True)
    assert shared.synops == (3.0, 3 * 5.0)  # first layer once; 3 trials x 1 spike x 5
    assert shared.neuron_updates == (9.0, 15.0)
    assert shared.random_draws == 24.0
    separate = count_ops(x, [s1, s2], [fc1, fc2], trials=3, shared_input=False)
    assert separate.synops[0] == 9.0
    with pytest.raises(ValueError, match="trials"):
        count_ops(x, [s1, s2], [fc1, fc2], trials=2)


def test_count_ops_on_a_spikingnet_matches_recorded_spikes():
    cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,), lif=LIFParams(delta=0.0))
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    x = (torch.rand(5, 2, 2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    with torch.no_grad():
        spikes = net.layer_outputs(x, deterministic=True)
    ops = count_ops(x, spikes, [layer.synapse for layer in net.layers], head=net.head.fc,
                    pools=[layer.pool for layer in net.layers])
    conv = net.layers[0].synapse
    # unfused: the stride-1 conv; executed: the fused conv of stride 2, kernel 4 that runs
    brute0 = F.conv2d(x.sum(0), torch.ones(4, 2, 3, 3), padding=1).sum() / 2
    assert ops.synops_unfused[0] == pytest.approx(float(brute0))
    fused0 = F.conv2d(x.sum(0), torch.ones(4, 2, 4, 4), stride=2, padding=1).sum() / 2
    assert ops.synops[0] == pytest.approx(float(fused0))
    assert ops.synops[1:] == ops.synops_unfused[1:]
    assert ops.synops[1] == pytest.approx(float(spikes[0].sum()) / 2 * 6)
    assert ops.synops[2] == pytest.approx(float(spikes[1].sum()) / 2 * 3)
    assert ops.neuron_updates == (5 * 4 * 4 * 4, 5 * 6)
    assert isinstance(conv, nn.Conv2d)


def test_cost_models_are_data_and_users_can_add_a_chip():
    chip = CostModel("mychip", synop_pj=1.0, mac_pj=2.0, neuron_update_pj=0.5, random_draw_pj=0.1)
    ops = OpCounts((10.0,), (1.0,), (2.0,), (4.0,), random_draws=4.0)
    assert chip.energy_pj(ops) == pytest.approx(10 + 2 + 4 * 0.5 + 0.4)
    assert chip.active_pj == 0.5
    with pytest.raises(ValueError, match="must be >= 0"):
        CostModel("bad", synop_pj=-1.0, mac_pj=1.0)
    with pytest.raises(ValueError, match="unknown cost model"):
        get_cost_model("tpu")
    assert COST_MODELS["loihi"].to_dict()["active_update_pj"] == 81.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        COST_MODELS["cmos45"].synop_pj = 2.0  # frozen


def test_opcounts_mean_weights_batches():
    a = OpCounts((1.0,), (0.0,), (2.0,), (4.0,))
    b = OpCounts((4.0,), (0.0,), (5.0,), (4.0,))
    m = OpCounts.mean([a, b], [1, 2])
    assert m.synops == (3.0,) and m.spikes == (4.0,)
    assert m.to_dict([COST_MODELS["cmos45"]])["energy_pj"]["cmos45"] == pytest.approx(3 * 0.9 + 4 * 4.6)


def _brute_force_executed_synops(counts: torch.Tensor, conv: nn.Conv2d, pool: nn.Module) -> float:
    """Feed each nonzero input element alone through the code that runs (ones weights, zero bias)."""
    ones = copy.deepcopy(conv)
    with torch.no_grad():
        ones.weight.fill_(1.0)
        ones.bias.zero_()
    total = 0.0
    for idx in counts.nonzero().tolist():
        x = torch.zeros(1, *counts.shape)
        x[(0, *idx)] = 1.0
        with torch.no_grad():
            y = synapse_pool(x, ones, pool)
        total += float(counts[tuple(idx)]) * int((y != 0).sum())
    return total


@pytest.mark.parametrize("shape", [(2, 7, 7), (2, 8, 6), (1, 34, 34)])
@pytest.mark.parametrize("padding", [1, 0])
def test_fused_conv_pool_synops_equal_brute_force_through_synapse_pool(shape, padding):
    g = torch.Generator().manual_seed(sum(shape) + padding)
    counts = torch.randint(0, 3, shape, generator=g).float()
    counts[:, 0, 0] = counts[:, -1, -1] = counts[:, 0, -1] = counts[:, -1, 0] = 2  # corners
    counts[:, :, -1] += 1  # a whole edge column (odd sizes: the one no window may reach)
    conv, pool = nn.Conv2d(shape[0], 3, 3, padding=padding), nn.AvgPool2d(2)
    spikes = torch.zeros(1, 1, 3, 1, 1)  # only the first stage's synops are checked here
    ops = count_ops(counts[None, None], [spikes], [conv], pools=[pool])
    assert ops.synops[0] == _brute_force_executed_synops(counts, conv, pool)
    assert ops.synops_unfused[0] == synaptic_ops(counts, conv)  # the old stride-1 count
    assert ops.connections[0] == _brute_force_executed_synops(torch.ones(shape), conv, pool)


def test_unfused_is_the_stride_1_count_and_the_interior_ratio_is_4_9():
    conv, pool = nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2)
    assert conv_fanout_map(5, 5, 2, 3, 1, stride=1).equal(conv_fanout_map(5, 5, 2, 3, 1))
    # stride 2, kernel 4, pad 1: an interior row is covered by exactly 2 windows
    assert (conv_fanout_map(6, 6, 1, 4, 1, stride=2)[1:-1, 1:-1] == 4).all()
    # n = 7: 3 outputs read rows -1..2, 1..4, 3..6, so rows 5 and 6 have one window each
    assert conv_fanout_map(7, 7, 1, 4, 1, stride=2)[1].tolist() == [2, 4, 4, 4, 4, 2, 2]
    counts = torch.zeros(1, 16, 16)
    counts[0, 4:12, 4:12] = 1  # interior only
    spikes = torch.zeros(1, 1, 2, 8, 8)
    ops = count_ops(counts[None, None], [spikes], [conv], pools=[pool])
    assert ops.synops_unfused[0] == 64 * 2 * 9
    assert ops.synops[0] / ops.synops_unfused[0] == pytest.approx(4 / 9)
    # a pool that is not fused (max pool, overlapping avg pool) or none: the stride-1 count
    for other in (None, nn.Identity(), nn.MaxPool2d(2), nn.AvgPool2d(3, stride=2)):
        o = count_ops(counts[None, None], [spikes], [conv], pools=[other])
        assert o.synops == o.synops_unfused == ops.synops_unfused
    with pytest.raises(ValueError, match="square"):
        count_ops(counts[None, None], [spikes], [nn.Conv2d(1, 2, (3, 1), padding=1)], pools=[pool])
    with pytest.raises(ValueError, match="stride-1"):
        count_ops(counts[None, None], [spikes], [nn.Conv2d(1, 2, 3, stride=2)], pools=[pool])
    with pytest.raises(ValueError, match="one pool"):
        count_ops(counts[None, None], [spikes], [conv], pools=[pool, None])


def test_connections_and_spikes_per_synapse_by_hand():
    """Linear(3 -> 4) -> LIF -> linear head (4 -> 2), T=2."""
    x = torch.zeros(2, 1, 1, 1, 3)
    x[0, 0, 0, 0, 0] = 2
    x[1, 0, 0, 0, 2] = 3  # 5 events
    spikes = torch.zeros(2, 1, 4)
    spikes[0, 0, 1] = spikes[1, 0, 1] = spikes[1, 0, 3] = 1  # 3 spikes of 8 updates
    ops = count_ops(x, [spikes], [nn.Linear(3, 4)], head=nn.Linear(4, 2))
    assert ops.connections == (12.0, 8.0)  # 3 x 4 synapses; 4 top neurons x 2 classes
    assert ops.synops_unfused == ops.synops == (20.0, 6.0)
    d = ops.to_dict()
    assert d["connections"] == [12.0, 8.0] and d["synops_unfused"] == [20.0, 6.0]
    assert d["spikes_per_synapse"] == [pytest.approx(20 / 12), pytest.approx(6 / 8)]
    assert d["activation_sparsity"] == [pytest.approx(1 - 3 / 8)]
    assert d["total_synops_unfused"] == 26.0
    m = OpCounts.mean([ops, ops], [1, 3])
    assert m.connections == ops.connections and m.synops_unfused == ops.synops_unfused
    old = OpCounts((1.0,), (0.0,), (2.0,), (4.0,))  # old call sites still construct it
    assert old.synops_unfused == (1.0,) and old.to_dict()["spikes_per_synapse"] == [None]


def test_every_preset_prices_random_draws_and_draws_cost_energy():
    for name, model in COST_MODELS.items():
        assert model.random_draw_pj >= 0, name
        assert model.reference.strip(), name
    x = torch.zeros(1, 1, 1, 1, 2)
    x[0, 0, 0, 0, 0] = 1
    s = torch.zeros(1, 1, 3)
    s[0, 0, 0] = 1
    det = count_ops(x, [s], [nn.Linear(2, 3)])
    sto = count_ops(x, [s], [nn.Linear(2, 3)], stochastic=True)
    assert sto.random_draws == 3.0 and det.random_draws == 0.0
    cmos = COST_MODELS["cmos45"]
    assert cmos.random_draw_pj > 0
    assert cmos.energy_pj(sto) == pytest.approx(cmos.energy_pj(det) + 3 * cmos.random_draw_pj)
    assert cmos.energy_pj(sto) > cmos.energy_pj(det)
