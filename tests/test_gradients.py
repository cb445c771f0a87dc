"""The layer gradients estimate the gradient of the *expected* ED loss under the neurons' own noise.

For each term (consistency, diversity, their difference and their log ratio), both noise kinds (escape, membrane) and a
small conv layer at initialisation and after a few training steps: the gradient averaged
over noise draws is a descent direction of the loss averaged over fresh draws (the same
draws before and after the step: common random numbers). A step along -gradient lowers
it, a step along +gradient raises it, and a random step of the same size moves it less.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeff.ed import EDLossConfig, ed_loss
from spikeff.network import SpikingLayer, spike_counts
from spikeff.neurons import LIFParams

TRIALS = 8
NOISE = {"escape": LIFParams(delta=0.2), "membrane": LIFParams(delta=0.0, sigma=0.3)}
TERMS = {
    "consistency": EDLossConfig(alpha=1.0), "diversity": EDLossConfig(alpha=0.0),
    "sum": EDLossConfig(form="difference"), "log-ratio": EDLossConfig(form="log_ratio"),
}


def small_layer(lif: LIFParams, norm: bool = False) -> tuple[SpikingLayer, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(2, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.uniform_(-0.6, 0.6, generator=g)
        conv.bias.uniform_(-0.2, 0.2, generator=g)
    x = (torch.rand(8, 6, 2, 12, 12, generator=g) < 0.15).float()  # (T, B, C, H, W) input spikes
    return SpikingLayer(conv, nn.AvgPool2d(2), lif, norm=nn.BatchNorm2d(8, affine=False) if norm else None), x


def layer_loss(layer: SpikingLayer, x: torch.Tensor, cfg: EDLossConfig, seed: int) -> torch.Tensor:
    spikes = layer(x, torch.Generator().manual_seed(seed), TRIALS)
    return ed_loss(spike_counts(spikes, TRIALS), cfg)[0]


def expected_loss(layer: SpikingLayer, x: torch.Tensor, cfg: EDLossConfig, seeds: range) -> float:
    with torch.no_grad():
        return torch.stack([layer_loss(layer, x, cfg, s) for s in seeds]).mean().item()


def step_effects(layer, x, cfg, draws=24, evals=48, eps=0.02):
    """Change of the expected loss after steps of norm ``eps`` along -grad, +grad and a random direction."""
    params = list(layer.parameters())
    grads = [torch.zeros_like(p) for p in params]
    for d in range(draws):
        for g_sum, g in zip(grads, torch.autograd.grad(layer_loss(layer, x, cfg, 1000 + d), params)):
            g_sum += g / draws
    gen = torch.Generator().manual_seed(5)
    directions = {"down": [-g for g in grads], "up": grads,
                  "random": [torch.randn(p.shape, generator=gen) for p in params]}
    seeds = range(20_000, 20_000 + evals)
    base = expected_loss(layer, x, cfg, seeds)
    out = {}
    for name, dirs in directions.items():
        scale = eps / torch.sqrt(sum((d**2).sum() for d in dirs))
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p += scale * d
        out[name] = expected_loss(layer, x, cfg, seeds) - base
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p -= scale * d
    return out


def pretrain(layer, x, steps):
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for i in range(steps):
        opt.zero_grad()
        layer_loss(layer, x, EDLossConfig(), 10_000 + i).backward()
        opt.step()


@pytest.mark.parametrize("warm", [0, 5], ids=["init", "trained"])
@pytest.mark.parametrize("term", list(TERMS))
@pytest.mark.parametrize("noise", list(NOISE))
def test_gradient_descends_the_expected_loss(noise, term, warm):
    layer, x = small_layer(NOISE[noise])
    pretrain(layer, x, warm)
    d = step_effects(layer, x, TERMS[term])
    assert d["down"] < 0 < d["up"], d
    assert abs(d["random"]) < min(-d["down"], d["up"]), d


def test_gradient_descends_with_batch_norm():
    layer, x = small_layer(NOISE["escape"], norm=True)
    layer.train()
    d = step_effects(layer, x, EDLossConfig())
    assert d["down"] < 0 < d["up"], d


def test_expected_spike_gradient_ascends_the_consistency_term():
    # Why the pathwise gradient is the default: the derivative of the spike probability is
    # blind to the trial-to-trial variance, and on this layer it points uphill.
    layer, x = small_layer(LIFParams(delta=0.2, gradient="expected"))
    d = step_effects(layer, x, EDLossConfig(alpha=1.0))
    assert d["down"] > 0 > d["up"], d
