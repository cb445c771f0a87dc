import pytest
import torch

from spikeff.neurons import LIFParams, LIFState, StochasticLIF, lif_scan, lif_step


def reference_lif(currents: torch.Tensor, beta: float, theta: float, reset: str) -> torch.Tensor:
    """Plain deterministic LIF written out step by step."""
    v = torch.zeros_like(currents[0])
    out = []
    for i in currents:
        v = beta * v + i
        s = (v >= theta).float()
        v = v * (1 - s) if reset == "zero" else v - theta * s
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_delta_zero_is_deterministic_lif(reset):
    g = torch.Generator().manual_seed(0)
    currents = torch.rand(20, 3, 7, generator=g) * 0.8
    p = LIFParams(beta=0.8, threshold=1.0, delta=0.0, reset=reset)
    spikes, _ = lif_scan(currents, p, g)
    assert torch.equal(spikes, reference_lif(currents, 0.8, 1.0, reset))
    assert spikes.sum() > 0


def test_membrane_update_and_zero_reset():
    p = LIFParams(beta=0.5, threshold=1.0, delta=0.0)
    s, st = lif_step(torch.tensor([0.6]), LIFState(torch.tensor([0.2])), p)
    assert s.item() == 0 and st.v.item() == pytest.approx(0.7)
    s, st = lif_step(torch.tensor([0.8]), st, p)  # 0.35 + 0.8 = 1.15 >= 1
    assert s.item() == 1 and st.v.item() == 0.0
    p_sub = LIFParams(beta=0.5, threshold=1.0, delta=0.0, reset="subtract")
    s, st = lif_step(torch.tensor([1.5]), LIFState(torch.tensor([0.0])), p_sub)
    assert s.item() == 1 and st.v.item() == pytest.approx(0.5)


def test_escape_noise_rate_matches_sigmoid():
    # A single step from rest: P(spike) = sigmoid((I - theta) / delta).
    p = LIFParams(beta=0.9, threshold=1.0, delta=0.25)
    i = torch.full((200_000,), 0.9)
    s, _ = lif_step(i, LIFState(torch.zeros_like(i)), p, torch.Generator().manual_seed(1))
    expected = torch.sigmoid(torch.tensor(-0.1 / 0.25)).item()
    assert s.mean().item() == pytest.approx(expected, abs=0.005)


def test_membrane_noise_rate():
    p = LIFParams(threshold=1.0, delta=0.0, sigma=0.5)
    i = torch.full((200_000,), 1.0)  # mean exactly at threshold -> half the trials spike
    s, _ = lif_step(i, LIFState(torch.zeros_like(i)), p, torch.Generator().manual_seed(2))
    assert s.mean().item() == pytest.approx(0.5, abs=0.005)


def test_seed_reproducibility():
    x = torch.rand(10, 4, 16, generator=torch.Generator().manual_seed(0)) * 1.5
    p = LIFParams(delta=0.3, sigma=0.1)
    a, _ = lif_scan(x, p, torch.Generator().manual_seed(7))
    b, _ = lif_scan(x, p, torch.Generator().manual_seed(7))
    c, _ = lif_scan(x, p, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_escape_noise_gradient_is_probability_derivative():
    p = LIFParams(threshold=1.0, delta=0.5)
    v = torch.tensor([0.3, 1.0, 1.7], requires_grad=True)
    s, _ = lif_step(v, LIFState(torch.zeros(3)), p, torch.Generator().manual_seed(0))
    s.sum().backward()
    x = (v.detach() - 1.0) / 0.5
    expected = torch.sigmoid(x) * (1 - torch.sigmoid(x)) / 0.5
    assert torch.allclose(v.grad, expected)


def test_deterministic_surrogate_gradient_is_nonzero():
    p = LIFParams(threshold=1.0, delta=0.0, surrogate_slope=5.0)
    v = torch.tensor([0.5, 1.0], requires_grad=True)
    s, _ = lif_step(v, LIFState(torch.zeros(2)), p)
    s.sum().backward()
    assert torch.all(v.grad > 0) and v.grad[1] > v.grad[0]


def test_module_and_bad_input():
    m = StochasticLIF(LIFParams(delta=0.0))
    out, state = m(torch.ones(5, 2, 3) * 2.0)
    assert out.shape == (5, 2, 3) and state.v.shape == (2, 3)
    with pytest.raises(ValueError, match="time-first"):
        m(torch.ones(5))
    with pytest.raises(ValueError, match="beta"):
        LIFParams(beta=1.5)
    with pytest.raises(ValueError, match="reset"):
        LIFParams(reset="none")
