import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch

from spikeff import network
from spikeff.data import DataError
from spikeff.ed import EDLossConfig
from spikeff.evaluation import evaluate
from spikeff.network import (
    NetworkConfig,
    SpikingNet,
    expand_trials,
    fold_norm,
    input_parts,
    spike_counts,
    synapse_pool,
)
from spikeff.neurons import LIFParams
from spikeff.noise import trial_noise
from spikeff.objectives import EDObjective
from spikeff.probe import frozen_features
from spikeff.readout import scores
from spikeff.readout_fit import calibrate_norm
from spikeff.records import EpochRecord, LayerStats, warn_if_head_silent, warn_if_silent
from spikeff.trainer import LayerTrainer, TrainConfig, TrainingError, cosine_schedule


def tiny_net(seed: int = 0, readout: str = "linear", hidden=(6,), norm: str = "none") -> SpikingNet:
    cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=hidden, lif=LIFParams(delta=0.3), readout=readout,
                        norm=norm)
    return SpikingNet(cfg, torch.Generator().manual_seed(seed))


def tiny_batches(n_batches: int = 2, b: int = 6, t: int = 5):
    g = torch.Generator().manual_seed(11)
    return [((torch.rand(t, b, 2, 8, 8, generator=g) < 0.4).float() * 3, torch.arange(b) % 3) for _ in range(n_batches)]


def test_trials_share_input_and_are_trial_major():
    x = torch.arange(6.0).view(1, 3, 2)
    y = expand_trials(x, 4)
    assert y.shape == (1, 12, 2)
    assert torch.equal(y[0, 3:6], x[0]) and torch.equal(y[0, 9:12], x[0])
    counts = spike_counts(torch.ones(5, 12, 2), 4)
    assert counts.shape == (4, 3, 2) and torch.all(counts == 5)


def test_trial_noise_thins_and_shifts_each_copy_of_its_own_input():
    x = torch.poisson(torch.full((4, 3, 2, 9, 9), 3.0), generator=torch.Generator().manual_seed(0))
    thin = trial_noise(0.25, 0).apply(x, 50, torch.Generator().manual_seed(1))
    assert thin.shape == (4, 150, 2, 9, 9) and torch.all(thin <= expand_trials(x, 50))
    assert thin.sum() / (50 * x.sum()) == pytest.approx(0.25, abs=0.01)  # binomial thinning keeps a quarter
    moved = trial_noise(1.0, 2).apply(x, 6, torch.Generator().manual_seed(2))
    for i in range(18):  # trial-major: copy i is input i % 3, shifted by some (dy, dx) in [-2, 2]^2
        src = torch.nn.functional.pad(x[:, i % 3], (2, 2, 2, 2))
        assert any(torch.equal(moved[:, i], src[..., 2 - dy:11 - dy, 2 - dx:11 - dx])
                   for dy in range(-2, 3) for dx in range(-2, 3)), i
    assert not all(torch.equal(moved[:, i], moved[:, i % 3]) for i in range(3, 18))
    again = trial_noise(0.5, 2).apply(x, 6, torch.Generator().manual_seed(2))
    assert torch.equal(again, trial_noise(0.5, 2).apply(x, 6, torch.Generator().manual_seed(2)))


def test_training_with_input_noise_learns_and_is_seeded():
    def run(cfg):
        net = tiny_net()
        hist = LayerTrainer(net, cfg, torch.Generator().manual_seed(3)).fit(tiny_batches())
        return net.state_dict(), hist
    cfg = TrainConfig(epochs=1, trials=3, input_keep=0.7, input_shift=1)
    (a, hist), (b, _), (plain, _) = run(cfg), run(cfg), run(TrainConfig(epochs=1, trials=3))
    assert all(torch.equal(a[k], b[k]) for k in a) and math.isfinite(hist[0].head_loss)
    assert not torch.equal(a["layers.0.synapse.weight"], plain["layers.0.synapse.weight"])
    with pytest.raises(ValueError, match="input_keep"):
        TrainConfig(input_keep=0.0)


def test_trials_in_one_batch_equal_separate_first_layer_currents():
    net = tiny_net()
    x, _ = tiny_batches(1)[0]
    layer = net.layers[0]
    spikes = layer(x, torch.Generator().manual_seed(0), trials=3, deterministic=True)
    single = layer(x, deterministic=True)
    assert torch.equal(spikes.unflatten(1, (3, x.shape[1]))[:, 2], single)


@pytest.mark.parametrize("trials", [1, 3])
def test_a_pass_without_graph_gives_the_spikes_of_one_with_graph(trials):
    """Without a graph the trials share one copy of the currents and the synapse runs one step at a
    time: the same spikes, bit for bit, from the same draws."""
    net = tiny_net(norm="batch").eval()
    x, _ = tiny_batches(1)[0]
    with_graph = net.layer_outputs(x, torch.Generator().manual_seed(0), trials)
    assert with_graph[0].requires_grad
    with torch.no_grad():
        without = net.layer_outputs(x, torch.Generator().manual_seed(0), trials)
    assert all(torch.equal(a.detach(), b) for a, b in zip(with_graph, without))
    assert 0 < without[0].mean() < 1 and without[0].shape[1] == trials * x.shape[1]


def test_no_gradient_crosses_layers():
    """Layer 1's gradients do not depend on layer 2's loss."""
    grads = []
    for alpha2 in (0.5, 0.9):
        net = tiny_net()
        trainer = LayerTrainer(net, TrainConfig(trials=3), torch.Generator().manual_seed(5))
        x, y = tiny_batches(1)[0]
        h1, _ = trainer.layer_step(0, x, y, 3)
        g1 = [p.grad.clone() for p in net.layers[0].parameters()]
        # A different loss on layer 2 must leave layer 1's grads untouched.
        trainer.objective = EDObjective(EDLossConfig(alpha=alpha2))
        trainer.layer_step(1, h1, y, 1)
        assert all(torch.equal(a, p.grad) for a, p in zip(g1, net.layers[0].parameters()))
        grads.append(([p.grad.clone() for p in net.layers[1].parameters()], g1))
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
    assert not all(torch.equal(a, b) for a, b in zip(grads[0][0], grads[1][0]))


def test_layer_input_is_detached():
    net = tiny_net()
    x, y = tiny_batches(1)[0]
    x.requires_grad_(True)
    trainer = LayerTrainer(net, TrainConfig(trials=2), torch.Generator().manual_seed(0))
    trainer.layer_step(0, x, y, 2)
    assert x.grad is None


@pytest.mark.parametrize("schedule", ["greedy", "simultaneous"])
def test_schedules_train_every_layer_and_head(schedule):
    net = tiny_net()
    before = copy.deepcopy(net.state_dict())
    trainer = LayerTrainer(net, TrainConfig(epochs=1, trials=2, schedule=schedule), torch.Generator().manual_seed(0))
    hist = trainer.fit(tiny_batches())
    after = net.state_dict()
    for name in ("layers.0.synapse.weight", "layers.1.synapse.weight", "head.fc.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert len(hist[0].layers) == 2 and math.isfinite(hist[0].head_loss)


def test_training_is_reproducible():
    def run():
        net = tiny_net()
        LayerTrainer(net, TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(3)).fit(tiny_batches())
        return net.state_dict()
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_names_layer_and_epoch():
    net = tiny_net()
    with torch.no_grad():
        net.layers[1].synapse.weight.fill_(float("nan"))
    trainer = LayerTrainer(net, TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(0))
    with pytest.raises(TrainingError, match="layer 2 at epoch 1"):
        trainer.fit(tiny_batches(1))


def test_non_finite_weights_after_a_step_stop_training():
    trainer = LayerTrainer(tiny_net(), TrainConfig(trials=2, lr=float("inf")), torch.Generator().manual_seed(0))
    with pytest.raises(TrainingError, match="non-finite weights after the step in layer 1 at epoch 1"):
        trainer.fit(tiny_batches(1))


def test_nearly_silent_layer_warns_once():
    net = tiny_net()
    with torch.no_grad():
        net.layers[1].synapse.bias.fill_(-100.0)  # layer 2 never reaches threshold
    trainer = LayerTrainer(net, TrainConfig(epochs=2, trials=2), torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match=r"layer 2 is nearly silent in epoch 1: 0\.0 spikes") as caught:
        trainer.fit(tiny_batches(1))
    assert len([w for w in caught if "nearly silent" in str(w.message)]) == 1  # once, though both epochs were
    assert trainer.history[0].layers[0].rate >= 0.005  # layer 1 is active and not reported
    quiet = LayerTrainer(net, TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(0), diagnostics=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no diagnostic, no warning
        quiet.fit(tiny_batches(1))


def test_sparse_but_large_layer_is_not_silent(recwarn):
    layers = (LayerStats(0.0, 0.004, 33.0), LayerStats(0.0, 0.5, 3.0))
    warn_if_silent(EpochRecord(1, 0.0, layers, 0.0), [])
    assert not [w for w in recwarn if "nearly silent" in str(w.message)]


def test_a_silent_spiking_readout_is_measured_and_named():
    net = tiny_net(readout="lif").eval()
    batches = tiny_batches(1)
    alive = evaluate(net, batches, 2, torch.Generator().manual_seed(0))
    assert alive.head_rate > 0 and evaluate(tiny_net(), batches, 2, torch.Generator()).head_rate is None
    with torch.no_grad():
        net.head.fc.bias.fill_(-100.0)
    dead = evaluate(net, batches, 2, torch.Generator().manual_seed(0))
    assert dead.head_rate == 0.0 and torch.all(dead.predictions["energy"] == 0)
    with pytest.warns(RuntimeWarning, match="readout of the trained network never fired on the 6 held-out"):
        warn_if_head_silent({"head_rate": dead.head_rate, "control_head_rate": alive.head_rate, "n_test": 6})


def test_epoch_record_round_trips_through_its_flat_form():
    trainer = LayerTrainer(tiny_net(), TrainConfig(epochs=2, trials=2), torch.Generator().manual_seed(0))
    history = trainer.fit(tiny_batches(1))
    assert [len(r.layers) for r in history] == [2, 2] and all(r.head_loss > 0 for r in history)
    flat = [r.to_dict() for r in history]
    assert json.loads(json.dumps(flat)) == flat  # plain types
    assert sorted(flat[0]) == sorted(["epoch", "seconds", "head/loss"] + [
        f"layer{k}/{f}" for k in (1, 2) for f in ("loss", "ed_consistency", "ed_diversity", "rate", "spikes_per_bin")])
    assert [EpochRecord.from_dict(d) for d in flat] == history
    with pytest.raises(KeyError, match="layer2/rate"):
        EpochRecord.from_dict({k: v for k, v in flat[0].items() if k != "layer2/rate"})


def test_readout_modes():
    z = torch.tensor([[[1.0, -3.0]], [[1.0, 1.0]]])  # (n=2, B=1, K=2)
    assert torch.equal(scores(z, "energy"), torch.tensor([[1.0, 5.0]]))
    assert torch.equal(scores(z, "average"), torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="mode"):
        scores(z, "max")
    with pytest.raises(ValueError, match="trials, batch, classes"):
        scores(z[0], "energy")


@pytest.mark.parametrize("readout", ["linear", "lif"])
def test_evaluate_reports_all_modes(readout):
    net = tiny_net(readout=readout)
    res = evaluate(net, tiny_batches(), trials=3, generator=torch.Generator().manual_seed(0))
    assert set(res.accuracy) == {"energy", "average", "deterministic"} and len(res.layer_rates) == len(net.layers)
    labels = torch.cat([y for _, y in tiny_batches()])
    assert torch.equal(res.labels, labels) and res.n == len(labels) and res.ops is None
    for m, p in res.predictions.items():
        assert res.accuracy[m] == pytest.approx((p == labels).float().mean().item())
    # one mode alone, with op counts: the same noise stream, so the same energy predictions
    alone = evaluate(net, tiny_batches(), 3, torch.Generator().manual_seed(0), ("energy",), count=True)
    assert torch.equal(alone.predictions["energy"], res.predictions["energy"]) and alone.ops.synops[0] > 0
    with pytest.raises(DataError, match="evaluation set is empty"):
        evaluate(net, [], 3, torch.Generator().manual_seed(0))
    if readout == "lif":  # spike-count outputs are non-negative, and the head is not silent at init
        z = net(tiny_batches(1)[0][0], torch.Generator().manual_seed(0), trials=2)
        assert torch.all(z >= 0) and z.sum() > 0


def test_passes_with_many_trials_run_in_parts_of_inputs(monkeypatch):
    """Above TRIAL_INPUTS input-trials a pass without gradient runs in parts of inputs; reassembled, a
    noiseless net gives what one pass gives (predictions, op counts, rates, features), in order."""
    assert input_parts(64, 8) == [64] and input_parts(64, 16) == [32, 32] and input_parts(5, 10**6) == [1] * 5
    for readout in ("linear", "lif"):
        cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,), lif=LIFParams(delta=0.0), readout=readout)
        net, batches = SpikingNet(cfg, torch.Generator().manual_seed(0)), tiny_batches(b=7)
        runs = []
        for limit in (network.TRIAL_INPUTS, 4):  # 3 trials: one pass of 7 inputs, then parts of 1
            monkeypatch.setattr(network, "TRIAL_INPUTS", limit)
            ev = evaluate(net, batches, 3, torch.Generator().manual_seed(0), count=True)
            runs.append((ev, frozen_features(net, batches, 3, torch.Generator().manual_seed(0), keep_trials=True)))
        (one, f1), (parts, f2) = runs
        for m in one.predictions:
            assert torch.equal(one.predictions[m], parts.predictions[m])
        assert parts.layer_rates == pytest.approx(one.layer_rates) and parts.ops.synops == pytest.approx(one.ops.synops)
        assert (parts.head_rate is None) == (one.head_rate is None) and one.layer_rates[0] > 0
        if one.head_rate is not None:
            assert parts.head_rate == pytest.approx(one.head_rate)
        assert all(np.array_equal(a, b) for a, b in zip(f1.layers, f2.layers)) and np.array_equal(f1.labels, f2.labels)
        assert torch.equal(f1.top_trials, f2.top_trials)


def test_bad_input_shapes_and_configs():
    net = tiny_net()
    with pytest.raises(ValueError, match=r"\(T, B, 2, 8, 8\)"):
        net(torch.rand(6, 2, 8, 8))
    with pytest.raises(ValueError, match="trials >= 2"):
        TrainConfig(trials=1)
    with pytest.raises(ValueError, match="trials >= 2"):
        TrainConfig(trials=1, loss=EDLossConfig(covariance="second_moment"))
    TrainConfig(trials=1, loss=EDLossConfig(covariance="second_moment", diversity="covariance"))
    with pytest.raises(ValueError, match="shrink"):
        NetworkConfig((2, 4, 4), 3, conv_channels=(4, 4, 4))


@pytest.mark.parametrize("readout", ["linear", "lif"])
def test_fit_readout_trains_only_the_head(readout):
    from spikeff.readout_fit import fit_readout

    net = tiny_net(readout=readout)
    before = copy.deepcopy(net.state_dict())
    lrs = (1e-2, 3e-3, 1e-3)
    fit = fit_readout(net, tiny_batches(), TrainConfig(trials=2), torch.Generator().manual_seed(0), 2, lrs)
    after = net.state_dict()
    losses = fit["losses"]
    assert len(losses) == 2 and all(loss == loss for loss in losses)
    if readout == "linear":  # the learning rate was picked on a held-out share of the training inputs
        assert set(fit["selection"]) == set(lrs) and fit["lr"] in fit["selection"]
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("head."))
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])


def test_fit_linear_head_fits_cached_features_and_is_seeded():
    from spikeff.readout_fit import fit_linear_head

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    features = (torch.nn.functional.one_hot(y, 3).float() * 3 + 0.3 * torch.randn(60, 3, generator=g)).unsqueeze(0)

    def fit() -> tuple[torch.nn.Linear, list[float]]:
        fc = torch.nn.Linear(3, 3)
        for prm in fc.parameters():  # a head at chance
            torch.nn.init.zeros_(prm)
        return fc, fit_linear_head(fc, features, y, lr=0.1, epochs=5, batch_size=16,
                                   generator=torch.Generator().manual_seed(1))

    (fc, losses), (again, same) = fit(), fit()
    assert len(losses) == 5 and losses[-1] < losses[0] < math.log(3) + 1e-3  # from chance down
    assert (fc(features[0]).argmax(1) == y).float().mean() > 0.9
    assert losses == same and torch.equal(fc.weight, again.weight)


def test_cosine_schedule_decays_to_zero():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = cosine_schedule(opt, 4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    cosine_schedule(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 0)  # no division by zero


@pytest.mark.parametrize("k, p, size, pad, bias",
                         [(3, 2, 17, 1, True), (5, 2, 12, 2, False), (3, 3, 10, 1, True), (3, 2, 9, 0, True)])
def test_pooled_conv_equals_conv_then_avgpool(k, p, size, pad, bias):
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, k, padding=pad, bias=bias)
    with torch.no_grad():
        for prm in conv.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g))
    x = torch.randn(5, 3, size, size, generator=g, requires_grad=True)
    pool = torch.nn.AvgPool2d(p)
    ref, fast = pool(conv(x)), synapse_pool(x, conv, pool)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    w = torch.randn(ref.shape, generator=g)
    grads_ref = torch.autograd.grad((ref * w).sum(), [x, *conv.parameters()])
    grads_fast = torch.autograd.grad((fast * w).sum(), [x, *conv.parameters()])
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_synapse_pool_falls_back_where_the_pool_is_not_a_box():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=g)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    for synapse, pool in [(conv, torch.nn.MaxPool2d(2)), (conv, torch.nn.AvgPool2d(3, stride=2)),
                          (torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.AvgPool2d(2)), (conv, None)]:
        ref = synapse(x) if pool is None else pool(synapse(x))
        assert torch.equal(synapse_pool(x, synapse, pool), ref)


# ----------------------------------------------------------------------------- normalisation


def test_batch_norm_keeps_deep_layers_active_where_plain_layers_fall_silent():
    x = (torch.rand(6, 8, 2, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    rates = {}
    for norm in ("none", "batch"):
        cfg = NetworkConfig((2, 32, 32), 3, conv_channels=(8, 16, 32, 32), norm=norm)
        net = SpikingNet(cfg, torch.Generator().manual_seed(0)).train()
        with torch.no_grad():
            rates[norm] = [s.mean().item() for s in net.layer_outputs(x, torch.Generator().manual_seed(1))]
    assert min(rates["batch"]) > 0.02, rates
    assert rates["none"][-1] < 0.5 * min(rates["batch"]), rates


def test_calibrated_norm_folds_into_the_synapse():
    net = SpikingNet(NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,)), torch.Generator().manual_seed(0))
    batches = tiny_batches(3)
    calibrate_norm(net, batches, torch.Generator().manual_seed(1))
    assert not net.training
    norm = net.layers[0].norm
    assert norm.num_batches_tracked == 3 and not torch.allclose(norm.running_var, torch.ones(4))
    folded = fold_norm(net)
    assert folded.config.norm == "none" and all(layer.norm is None for layer in folded.layers)
    x = batches[0][0]
    for a, b in zip(net.layers, folded.layers):
        torch.testing.assert_close(a.currents(x), b.currents(x), rtol=1e-5, atol=1e-5)
        x = a(x, deterministic=True)
    x = batches[1][0]
    assert torch.equal(net(x, deterministic=True), folded(x, deterministic=True))


def test_checkpoints_written_before_norm_load_without_it(tmp_path):
    from spikeff.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", SpikingNet(NetworkConfig((2, 8, 8), 3, norm="none")))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["network"]["norm"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[0].config.norm == "none"
    with pytest.raises(ValueError, match="norm"):
        NetworkConfig((2, 8, 8), 3, norm="layer")
