"""Local objectives (spikeff.objectives) and trial noise (spikeff.noise) on the one training loop."""

import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from spikeff.ed import EDLossConfig, ed_loss
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import LIFParams
from spikeff.noise import EventThinning, InputDropout, Shift, TrialNoise, expand_trials, trial_noise
from spikeff.objectives import (
    OBJECTIVES,
    EDObjective,
    GoodnessObjective,
    GuardedEDObjective,
    SeedObjective,
    goodness,
    make_objective,
    project,
)
from spikeff.records import EpochRecord
from spikeff.trainer import LayerTrainer, TrainConfig


def tiny_net(seed: int = 0) -> SpikingNet:
    cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,), lif=LIFParams(delta=0.3), norm="none")
    return SpikingNet(cfg, torch.Generator().manual_seed(seed))


def tiny_batches(n_batches: int = 2, b: int = 6, t: int = 5):
    g = torch.Generator().manual_seed(11)
    return [((torch.rand(t, b, 2, 8, 8, generator=g) < 0.4).float() * 3, torch.arange(b) % 3) for _ in range(n_batches)]


@dataclass(frozen=True)
class MeanRateObjective:
    """A new objective defined here, outside the package: pull each layer's mean count towards a target."""

    target: float = 2.0
    names: tuple[str, ...] = ("mean_count",)

    def __call__(self, counts: Tensor, labels: Tensor | None = None, reduce=None) -> tuple[Tensor, dict[str, Tensor]]:
        mean = counts.mean()
        return (mean - self.target) ** 2, {"mean_count": mean}


def test_a_new_objective_trains_a_tiny_net_through_the_normal_loop():
    net = tiny_net()
    trainer = LayerTrainer(net, TrainConfig(epochs=3, trials=2, lr=3e-2), torch.Generator().manual_seed(0),
                           progress=False, diagnostics=(), objective=MeanRateObjective(target=2.0))
    history = trainer.fit(tiny_batches())
    first, last = history[0].layers[0], history[-1].layers[0]
    assert set(first.objective) == {"mean_count"} and first.mean_count == first.objective["mean_count"]
    assert abs(last.mean_count - 2.0) < abs(first.mean_count - 2.0)  # the layer moved towards its target
    assert last.loss < first.loss
    flat = history[-1].to_dict()
    assert "layer1/mean_count" in flat and EpochRecord.from_dict(flat) == history[-1]


def test_every_named_objective_trains_and_records_its_statistics():
    for name in OBJECTIVES:
        trainer = LayerTrainer(tiny_net(), TrainConfig(epochs=1, trials=2, objective=name),
                               torch.Generator().manual_seed(0), progress=False, diagnostics=())
        record = trainer.fit(tiny_batches(1))[0]
        assert tuple(record.layers[0].objective) == trainer.objective.names, name
        assert all(torch.isfinite(torch.tensor(v)) for v in record.to_dict().values()), name
    with pytest.raises(ValueError, match="objective"):
        make_objective("nope")  # type: ignore[arg-type]


def test_ed_objective_is_ed_loss_and_seed_fixes_the_published_settings():
    counts = torch.poisson(torch.full((3, 5, 4, 2, 2), 2.0), generator=torch.Generator().manual_seed(0))
    cfg = EDLossConfig(alpha=0.3)
    loss, stats = EDObjective(cfg)(counts)
    ref = ed_loss(counts, cfg)
    assert torch.equal(loss, ref[0]) and torch.equal(stats["ed_consistency"], ref[1])
    seed_loss, seed_stats = make_objective("seed", cfg)(counts)  # the loss config is not read
    cons, div = seed_stats["ed_consistency"], seed_stats["ed_diversity"]
    assert isinstance(make_objective("seed"), SeedObjective)
    assert torch.allclose(seed_loss, 0.5 * cons - 0.5 * div)
    assert not torch.allclose(cons, stats["ed_consistency"])  # uncentred, unlike the default trial covariance
    p = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(1)))[0]
    assert torch.equal(ed_loss(counts, cfg, projection=p)[0], EDObjective(cfg)(project(counts, p))[0])


def test_guarded_objective_penalises_a_collapsed_layer():
    g = torch.Generator().manual_seed(0)
    lively = torch.poisson(torch.rand(1, 8, 4, generator=g).expand(3, 8, 4) * 6, generator=g)
    collapsed = torch.poisson(torch.full((3, 8, 4), 0.2), generator=g)
    obj = GuardedEDObjective()
    assert obj(collapsed)[1]["std_penalty"] > obj(lively)[1]["std_penalty"]
    copies = lively[:, :, :1].expand(3, 8, 4)  # four channels that copy one
    assert obj(copies)[1]["corr_penalty"] > obj(lively)[1]["corr_penalty"]


def test_goodness_objective_prefers_the_positive_pass():
    pos, neg = torch.full((1, 4, 3), 2.0), torch.full((1, 4, 3), 1.0)
    assert torch.equal(goodness(torch.cat([pos, neg])), torch.tensor([[4.0] * 4, [1.0] * 4]))
    good, _ = GoodnessObjective()(torch.cat([pos, neg]))
    bad, stats = GoodnessObjective()(torch.cat([neg, pos]))
    assert good < bad and stats["g_pos"] == 1.0
    assert stats["goodness_gap"] == stats["g_pos"] - stats["g_neg"] == -3.0
    thr, _ = GoodnessObjective(kind="threshold", threshold=2.0)(torch.cat([pos, neg]))
    assert thr > 0
    # symba compares each positive with its own negative: the same gap at any goodness level, the same loss
    low, high = torch.tensor([[[3.0]], [[1.0]]]), torch.tensor([[[17.0**0.5]], [[3.0]]])  # goodness 9 - 1, 17 - 9
    assert torch.allclose(GoodnessObjective(sharpness=0.1)(low)[0], GoodnessObjective(sharpness=0.1)(high)[0])
    with pytest.raises(ValueError, match="2 trials"):
        GoodnessObjective()(torch.ones(3, 4, 3))


def test_trial_noise_is_chosen_by_setting_and_seeded():
    assert not trial_noise() and trial_noise(0.5, 2, 0.1).perturbations == (EventThinning(0.5), Shift(2),
                                                                             InputDropout(0.1))
    x = torch.poisson(torch.full((4, 3, 2, 6, 6), 2.0), generator=torch.Generator().manual_seed(0))
    drop = TrialNoise((InputDropout(0.25),)).apply(x, 20, torch.Generator().manual_seed(1))
    kept = drop != 0
    assert drop.shape == (4, 60, 2, 6, 6) and torch.allclose(drop[kept], expand_trials(x, 20)[kept] / 0.75)
    share = kept.sum() / (expand_trials(x, 20) != 0).sum()
    assert share == pytest.approx(0.75, abs=0.02)
    again = TrialNoise((InputDropout(0.25),)).apply(x, 20, torch.Generator().manual_seed(1))
    assert torch.equal(drop, again)
    with pytest.raises(ValueError, match="dropout"):
        trial_noise(dropout=1.0)


def test_input_dropout_reaches_the_trainer():
    trainer = LayerTrainer(tiny_net(), TrainConfig(epochs=1, trials=2, input_dropout=0.3),
                           torch.Generator().manual_seed(0), progress=False, diagnostics=())
    assert trainer.noise.perturbations == (InputDropout(0.3),)
    assert trainer.fit(tiny_batches(1))[0].layers[0].rate > 0


def test_the_loop_takes_a_feed_one_objective_per_layer_and_can_leave_the_head_out():
    net, seen = tiny_net(), []

    def feed(k: int, h: Tensor, y: Tensor) -> Tensor:  # builds the first layer's two trials itself
        seen.append((k, h.shape[1]))
        return torch.cat([h, h.flip(1)], 1) if k == 0 else h

    head = [p.detach().clone() for p in net.head.parameters()]
    objectives = [GoodnessObjective(), MeanRateObjective()]
    trainer = LayerTrainer(net, TrainConfig(epochs=1, trials=2, lr=3e-2), torch.Generator().manual_seed(0),
                           progress=False, diagnostics=(), objective=objectives, feed=feed, head=False)
    record = trainer.fit(tiny_batches(1))[0]
    assert seen == [(0, 6), (1, 12)]  # the batch, then layer 1's 2 x 6 trials: the feed's trials are not expanded
    assert set(record.layers[0].objective) == {"g_pos", "g_neg", "goodness_gap"}
    assert set(record.layers[1].objective) == {"mean_count"}
    assert all(torch.equal(p, q) for p, q in zip(head, net.head.parameters()))
    assert math.isnan(record.head_loss)  # no head step, no head loss
    with pytest.raises(ValueError, match="one objective per layer"):
        LayerTrainer(net, TrainConfig(), torch.Generator(), objective=objectives[:1])


@dataclass(frozen=True)
class TimeJitter:
    """A new noise source defined here, outside the package: each copy's frames move by up to ``bins`` time bins."""

    bins: int = 1

    def apply(self, frames: Tensor, generator: torch.Generator | None) -> Tensor:
        d = torch.randint(-self.bins, self.bins + 1, (frames.shape[1],), generator=generator).tolist()
        return torch.stack([torch.roll(frames[:, i], d[i], 0) for i in range(frames.shape[1])], 1)


def test_a_new_noise_source_perturbs_each_trial_through_the_normal_loop():
    x = tiny_batches(1)[0][0]
    noise = TrialNoise((TimeJitter(2),))
    copies = noise.apply(x, 4, torch.Generator().manual_seed(0))
    assert copies.shape == (x.shape[0], 4 * x.shape[1], *x.shape[2:])
    assert copies.sum() == 4 * x.sum() and not torch.equal(copies, expand_trials(x, 4))  # moved, none lost
    runs = [LayerTrainer(tiny_net(), TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(0), progress=False,
                         diagnostics=(), noise=n).fit(tiny_batches(2))[0] for n in (noise, noise, None)]
    assert runs[0].to_dict() | {"seconds": 0} == runs[1].to_dict() | {"seconds": 0}  # seeded
    assert runs[0].layers[0].loss != runs[2].layers[0].loss  # the jitter reached the layers
