"""Energy accounting against hand-counted values on tiny networks with hand-set spikes."""

from __future__ import annotations

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
from spikeff.network import NetworkConfig, SpikingNet
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


def test_conv_net_hand_counted_with_pool():
    """Conv(1 -> 2, 3x3, pad 1) -> AvgPool -> LIF; the pool does not change the conv's ops."""
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1  # corner: 2 * 2 * 2 = 8
    x[0, 0, 0, 1, 1] = 1  # centre: 2 * 9 = 18
    x[0, 0, 0, 0, 1] = 2  # top edge: 2 * 2 * 3 = 12, twice
    conv = nn.Conv2d(1, 2, 3, padding=1)
    spikes = torch.zeros(1, 1, 2, 1, 1)  # after a 3x3 -> 1x1 pool
    spikes[0, 0, 1] = 1
    ops = count_ops(x, [spikes], [conv])
    assert ops.synops == (8 + 18 + 24,)
    assert ops.spikes == (1.0,) and ops.neuron_updates == (2.0,)
    dense = count_ops(x, [spikes], [conv], input_ops="dense")
    # 49 valid (output, tap) pairs x 2 out channels x 1 in channel x T=1
    assert dense.synops == (0.0,) and dense.macs == (98.0,)


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
    ops = count_ops(x, spikes, [l.synapse for l in net.layers], head=net.head.fc)
    conv = net.layers[0].synapse
    brute0 = F.conv2d(x.sum(0), torch.ones(4, 2, 3, 3), padding=1).sum() / 2
    assert ops.synops[0] == pytest.approx(float(brute0))
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
    with pytest.raises(Exception):
        COST_MODELS["cmos45"].synop_pj = 2.0  # frozen


def test_opcounts_mean_weights_batches():
    a = OpCounts((1.0,), (0.0,), (2.0,), (4.0,))
    b = OpCounts((4.0,), (0.0,), (5.0,), (4.0,))
    m = OpCounts.mean([a, b], [1, 2])
    assert m.synops == (3.0,) and m.spikes == (4.0,)
    assert m.to_dict([COST_MODELS["cmos45"]])["energy_pj"]["cmos45"] == pytest.approx(3 * 0.9 + 4 * 4.6)
