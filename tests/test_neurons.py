import pytest
import torch

from spikeff.neurons import (
    CompiledLIFScan,
    LIFNoise,
    LIFParams,
    LIFState,
    StochasticLIF,
    draw_noise,
    lif_scan,
    lif_scan_fused,
    lif_step,
    make_scan,
)
from spikeff.scan import adjoint_scan


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


def test_expected_gradient_is_probability_derivative():
    p = LIFParams(threshold=1.0, delta=0.5, gradient="expected")
    v = torch.tensor([0.3, 1.0, 1.7], requires_grad=True)
    s, _ = lif_step(v, LIFState(torch.zeros(3)), p, torch.Generator().manual_seed(0))
    s.sum().backward()
    x = (v.detach() - 1.0) / 0.5
    expected = torch.sigmoid(x) * (1 - torch.sigmoid(x)) / 0.5
    assert torch.allclose(v.grad, expected)


def test_pathwise_gradient_is_soft_step_at_the_trials_own_threshold():
    p = LIFParams(threshold=1.0, delta=0.5, sharpness=3.0)
    v = torch.tensor([0.3, 1.0, 1.7], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    s, _ = lif_step(v, LIFState(torch.zeros(3)), p, g)
    s.sum().backward()
    u = torch.rand(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.detach(), (u < torch.sigmoid((v.detach() - 1.0) / 0.5)).float())  # same spikes
    q = torch.sigmoid(3.0 * ((v.detach() - 1.0) / 0.5 - torch.logit(u)))
    assert torch.allclose(v.grad, 3.0 * q * (1 - q) / 0.5)


@pytest.mark.parametrize("x0", [-0.3, 0.3])
def test_pathwise_gradient_of_a_variance_has_the_right_sign(x0):
    # One Bernoulli unit, p = sigmoid(x / delta): d var / dx = p' (1 - 2p), +-0.47 here.
    # The expected-spike gradient is the same for every trial, so its estimate is exactly 0.
    delta = 0.2
    prob = torch.sigmoid(torch.tensor(x0 / delta))
    true = (prob * (1 - prob) / delta * (1 - 2 * prob)).item()
    est = {}
    for grad in ("pathwise", "expected"):
        x = torch.tensor(1.0 + x0, requires_grad=True)
        p = LIFParams(threshold=1.0, delta=delta, gradient=grad)
        s, _ = lif_step(x.expand(400, 64), LIFState(torch.zeros(400, 64)), p, torch.Generator().manual_seed(0))
        s.var(1).mean().backward()
        est[grad] = x.grad.item()
    assert est["pathwise"] * true > 0 and abs(est["pathwise"]) > 0.5 * abs(true)
    assert est["expected"] == pytest.approx(0.0, abs=1e-6)


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
    with pytest.raises(ValueError, match="gradient"):
        LIFParams(gradient="score")


# ----------------------------------------------------------------------------- fused and compiled scans

VARIANTS = [
    LIFParams(delta=0.2),
    LIFParams(delta=0.0),
    LIFParams(delta=0.0, sigma=0.3),
    LIFParams(delta=0.3, sigma=0.2, reset="subtract"),
    LIFParams(delta=0.0, reset="subtract"),
    LIFParams(delta=0.2, gradient="expected"),
]
VARIANT_IDS = ["escape", "heaviside", "membrane-noise", "both-noises-subtract", "heaviside-subtract", "escape-expected"]


def run_scan(scan, p, x, v0=None, seed=11):
    """Spikes, final state, gradients for the currents and ``v0``, and the generator's final state."""
    x = x.detach().requires_grad_()
    v0 = None if v0 is None else v0.detach().requires_grad_()
    g = torch.Generator(device=x.device).manual_seed(seed)
    s, st = scan(x, p, g, None if v0 is None else LIFState(v0))
    w = torch.linspace(-1, 1, s.numel(), device=x.device).reshape(s.shape)
    loss = (s * w).sum() + st.v.pow(2).sum()
    grads = torch.autograd.grad(loss, [x] if v0 is None else [x, v0])
    return s.detach(), st.v.detach(), grads, g.get_state()


def assert_same_scan(a, b, exact_membrane=True):
    assert torch.equal(a[0], b[0]), "spikes differ"
    if exact_membrane:
        assert torch.equal(a[1], b[1]), "final membrane differs"
    else:
        torch.testing.assert_close(a[1], b[1], rtol=1e-6, atol=1e-6)
    assert torch.equal(a[3], b[3]), "the generators were left in different states"
    for ga, gb in zip(a[2], b[2]):
        assert ga.dtype == gb.dtype
        tol = {} if ga.dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-5}  # bf16: one-ulp roundings
        torch.testing.assert_close(ga, gb, **tol)


@pytest.mark.parametrize("p", VARIANTS, ids=VARIANT_IDS)
def test_fused_scan_matches_reference(p):
    x = torch.rand(12, 4, 3, 5, generator=torch.Generator().manual_seed(3)) * 1.5
    v0 = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(4))
    ref = run_scan(lif_scan, p, x, v0)
    assert 0 < ref[0].mean() < 1
    assert_same_scan(ref, run_scan(lif_scan_fused, p, x, v0))


def test_fused_scan_on_expanded_trials_and_without_state():
    # The first layer's currents are one input expanded over trials (stride 0).
    x = (torch.rand(6, 1, 8, generator=torch.Generator().manual_seed(0)) * 1.5).expand(6, 4, 8)
    assert_same_scan(run_scan(lif_scan, LIFParams(), x), run_scan(lif_scan_fused, LIFParams(), x))


def assert_identical_scan(a, b):
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[3], b[3])
    assert all(ga.dtype == gb.dtype and torch.equal(ga, gb) for ga, gb in zip(a[2], b[2]))


@pytest.mark.parametrize("p", VARIANTS, ids=VARIANT_IDS)
def test_adjoint_scan_is_the_eager_scan_bit_for_bit(p):
    x = torch.rand(12, 4, 3, 5, generator=torch.Generator().manual_seed(3)) * 1.5
    v0 = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(4))
    assert_identical_scan(run_scan(lif_scan, p, x, v0), run_scan(adjoint_scan, p, x, v0))
    # expanded trials (stride 0), bfloat16 currents, and no state given
    e = (torch.rand(6, 1, 8, generator=torch.Generator().manual_seed(0)) * 1.5).expand(6, 4, 8)
    assert_identical_scan(run_scan(lif_scan, p, e), run_scan(adjoint_scan, p, e))
    assert_identical_scan(run_scan(lif_scan, p, e.to(torch.bfloat16)), run_scan(adjoint_scan, p, e.to(torch.bfloat16)))


def test_eager_scan_without_graph_writes_the_same_steps():
    x = torch.rand(9, 4, 6, generator=torch.Generator().manual_seed(5)) * 1.5
    with_graph = lif_scan(x.requires_grad_(), LIFParams(), torch.Generator().manual_seed(6))
    with torch.no_grad():
        without = lif_scan(x, LIFParams(), torch.Generator().manual_seed(6))
    assert torch.equal(with_graph[0].detach(), without[0]) and torch.equal(with_graph[1].v.detach(), without[1].v)
    assert not without[0].requires_grad and 0 < without[0].mean() < 1


def test_adjoint_scan_backward_frees_its_steps_and_refuses_a_second_run():
    x = (torch.rand(5, 3, 4, generator=torch.Generator().manual_seed(1)) * 1.5).requires_grad_()
    spikes, _ = adjoint_scan(x, LIFParams(), torch.Generator().manual_seed(2))
    loss = (spikes * torch.arange(4.0)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once per forward"):
        loss.backward()


def test_adjoint_scan_gradient_of_the_final_state_alone():
    x = (torch.rand(7, 3, 5, generator=torch.Generator().manual_seed(1)) * 1.5).requires_grad_()
    grads = []
    for scan in (lif_scan, adjoint_scan):
        _, state = scan(x, LIFParams(), torch.Generator().manual_seed(2))
        grads.append(torch.autograd.grad(state.v.sum(), x)[0])
    assert torch.equal(*grads) and grads[0].abs().sum() > 0


def test_lif_step_backward_is_autograds():
    p = LIFParams(delta=0.2)
    g = torch.Generator().manual_seed(0)
    current, v = (torch.rand(50, generator=g) * 1.5).requires_grad_(), torch.rand(50, generator=g).requires_grad_()
    noise = LIFNoise(torch.rand(50, generator=g), None)
    gs, gv = torch.randn(50, generator=g), torch.randn(50, generator=g)
    spikes, new = lif_step(current, LIFState(v), p, noise=noise)
    ref = torch.autograd.grad((spikes * gs).sum() + (new.v * gv).sum(), [current, v])
    with torch.no_grad():
        hard, new2, saved = p.step_saving(current, LIFState(v), noise)
    g_current, g_state = p.step_backward(saved, hard, gs, LIFState(gv))
    assert torch.equal(hard, spikes) and torch.equal(new2.v, new.v)
    assert torch.equal(g_current, ref[0]) and torch.equal(g_state.v, ref[1])


def test_draw_noise_is_lif_steps_stream():
    p = LIFParams(delta=0.2, sigma=0.1)
    g = torch.Generator().manual_seed(5)
    noise = draw_noise((3, 2, 17), p, g)
    g2 = torch.Generator().manual_seed(5)
    for t in range(3):  # per step: membrane noise, then escape noise
        assert torch.equal(noise.normal[t], torch.randn(2, 17, generator=g2))
        assert torch.equal(noise.uniform[t], torch.rand(2, 17, generator=g2))
    assert draw_noise((3, 2), LIFParams(delta=0.0)) == (None, None)


@pytest.mark.parametrize("scan", [lif_scan, lif_scan_fused], ids=["eager", "fused"])
def test_bf16_currents_integrate_in_float32(scan):
    x = (torch.rand(8, 3, 16, generator=torch.Generator().manual_seed(1)) * 1.5).to(torch.bfloat16)
    a = run_scan(scan, LIFParams(), x)
    b = run_scan(scan, LIFParams(), x.float())
    assert a[0].dtype == a[1].dtype == torch.float32 and a[2][0].dtype == torch.bfloat16
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2][0].float(), b[2][0], rtol=1e-2, atol=1e-2)


def test_compiled_scan_falls_back_to_reference_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no compiler here\nsecond line")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    scan = CompiledLIFScan()
    x = torch.rand(5, 2, 7, generator=torch.Generator().manual_seed(0)) * 1.5
    ref = run_scan(lif_scan, LIFParams(), x)
    with pytest.warns(RuntimeWarning, match="no compiler here") as record:
        first = run_scan(scan, LIFParams(), x)  # fails inside, finishes uncompiled
        second = run_scan(scan, LIFParams(), x)  # the reference from now on
    assert len(record) == 1 and scan.fallback_reason == "RuntimeError: no compiler here"
    assert_same_scan(ref, first)
    assert_same_scan(ref, second)


def test_compile_unavailable_falls_back(monkeypatch):
    def no_compile(fn, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", no_compile)
    with pytest.warns(RuntimeWarning, match="Dynamo is not supported"):
        scan = make_scan("compiled")
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) * 2
    assert_same_scan(run_scan(lif_scan, LIFParams(), x), run_scan(scan, LIFParams(), x))
    assert make_scan("eager") is adjoint_scan
    with pytest.raises(ValueError, match="scan backend"):
        make_scan("triton")


def compiled_or_skip(scan, p, x, v0=None):
    out = run_scan(scan, p, x, v0)
    if scan.fallback_reason is not None:
        pytest.skip(f"torch.compile is unavailable here: {scan.fallback_reason}")
    return out


def test_compiled_scan_matches_reference():
    """Same seed, same spikes and state; gradients to rounding (default neuron, a few seconds to compile)."""
    scan = CompiledLIFScan()
    x = torch.rand(6, 4, 9, generator=torch.Generator().manual_seed(2)) * 1.5
    assert_same_scan(run_scan(lif_scan, LIFParams(), x), compiled_or_skip(scan, LIFParams(), x))
    y = torch.rand(6, 5, 9, generator=torch.Generator().manual_seed(3)) * 1.5  # another batch size
    assert_same_scan(run_scan(lif_scan, LIFParams(), y), run_scan(scan, LIFParams(), y))


@pytest.mark.slow
@pytest.mark.parametrize("p", VARIANTS[1:], ids=VARIANT_IDS[1:])
def test_compiled_scan_matches_reference_all_variants(p):
    x = torch.rand(6, 4, 9, generator=torch.Generator().manual_seed(2)) * 1.5
    assert_same_scan(run_scan(lif_scan, p, x), compiled_or_skip(CompiledLIFScan(), p, x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("p", VARIANTS, ids=VARIANT_IDS)
def test_compiled_scan_matches_reference_on_cuda(p, dtype):
    """On CUDA (Triton kernels): the same spikes and generator state as eager for the same seed.

    The membrane agrees to rounding only: Triton contracts ``beta * v + I`` into one FMA
    (seen on an H100, where the spikes were still identical).
    """
    x = (torch.rand(10, 64, 8, 9, 9, generator=torch.Generator().manual_seed(2)) * 1.5).to("cuda", dtype)
    v0 = torch.rand(64, 8, 9, 9, generator=torch.Generator().manual_seed(3)).cuda()
    ref = run_scan(lif_scan, p, x, v0)
    assert 0 < ref[0].float().mean() < 1
    assert_same_scan(ref, compiled_or_skip(CompiledLIFScan(), p, x, v0), exact_membrane=False)


@pytest.mark.slow
def test_compiled_scan_bf16_currents_and_initial_state():
    x = (torch.rand(6, 4, 9, generator=torch.Generator().manual_seed(2)) * 1.5).to(torch.bfloat16)
    v0 = torch.rand(4, 9, generator=torch.Generator().manual_seed(3))
    scan = CompiledLIFScan()
    out = run_scan(scan, LIFParams(), x, v0)
    if scan.fallback_reason is not None:
        pytest.skip(f"torch.compile is unavailable here: {scan.fallback_reason}")
    assert_same_scan(run_scan(lif_scan, LIFParams(), x, v0), out)
