import pytest
import torch

from spikeff.ed import (
    EDLossConfig,
    consistency_ed,
    diversity_ed,
    diversity_matrix,
    ed_loss,
    effective_dimensionality,
    effective_dimensionality_eig,
    random_projection,
    sample_ed,
)


def test_isotropic_gives_dimension():
    for d in (1, 3, 17):
        c = torch.eye(d, dtype=torch.float64)
        assert effective_dimensionality(c).item() == pytest.approx(d)
        assert effective_dimensionality_eig(c).item() == pytest.approx(d)


def test_rank_one_gives_one():
    u = torch.randn(9, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = u @ u.T
    assert effective_dimensionality(c).item() == pytest.approx(1.0)
    assert effective_dimensionality_eig(c).item() == pytest.approx(1.0)


def test_known_spectrum_scale_invariance_and_forms_agree():
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    lam = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    c = q @ torch.diag(lam) @ q.T
    expected = lam.sum() ** 2 / (lam**2).sum()  # 64 / 22
    assert effective_dimensionality(c).item() == pytest.approx(expected.item())
    assert effective_dimensionality_eig(c).item() == pytest.approx(expected.item())
    assert effective_dimensionality(1e3 * c).item() == pytest.approx(expected.item())


def test_sample_ed_uses_either_gram_consistently():
    g = torch.Generator().manual_seed(2)
    tall = torch.randn(50, 6, generator=g, dtype=torch.float64)   # m > d: d x d form
    wide = torch.randn(4, 30, generator=g, dtype=torch.float64)   # m < d: m x m form
    for x in (tall, wide):
        assert sample_ed(x).item() == pytest.approx(effective_dimensionality_eig(x.T @ x).item())


def test_consistency_trial_vs_second_moment():
    # Two inputs; every trial is the input's mean pattern plus independent noise on 4 channels.
    g = torch.Generator().manual_seed(3)
    n, b, c = 400, 2, 4
    mean = torch.tensor([[5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 5.0]], dtype=torch.float64)
    counts = mean + 0.1 * torch.randn(n, b, c, generator=g, dtype=torch.float64)
    # Centred: isotropic trial noise -> ED close to 4.
    assert consistency_ed(counts, "trial").item() == pytest.approx(4.0, rel=0.1)
    # Uncentred: dominated by the mean pattern -> ED close to 1.
    assert consistency_ed(counts, "second_moment").item() == pytest.approx(1.0, rel=0.02)


def test_consistency_needs_two_trials():
    with pytest.raises(ValueError, match="at least 2 trials"):
        consistency_ed(torch.rand(1, 3, 4), "trial")
    consistency_ed(torch.rand(1, 3, 4), "second_moment")  # fine without trials


def test_conv_positions_count_as_samples():
    # Per input, samples are trials x positions; features are channels.
    g = torch.Generator().manual_seed(4)
    counts = torch.randn(3, 2, 5, 4, 4, generator=g, dtype=torch.float64)
    centred = counts - counts.mean(0, keepdim=True)
    x0 = centred[:, 0].permute(0, 2, 3, 1).reshape(-1, 5)
    x1 = centred[:, 1].permute(0, 2, 3, 1).reshape(-1, 5)
    expected = (effective_dimensionality_eig(x0.T @ x0) + effective_dimensionality_eig(x1.T @ x1)) / 2
    assert consistency_ed(counts, "trial").item() == pytest.approx(expected.item())


def test_diversity_is_across_inputs_of_trial_means():
    g = torch.Generator().manual_seed(5)
    counts = torch.randn(6, 10, 3, generator=g, dtype=torch.float64)
    m = counts.mean(0)
    m = m - m.mean(0)
    assert diversity_ed(counts, "covariance").item() == pytest.approx(effective_dimensionality_eig(m.T @ m).item())
    raw = counts.mean(0)
    assert diversity_ed(counts, "second_moment").item() == pytest.approx(
        effective_dimensionality_eig(raw.T @ raw).item())


def test_signal_covariance_removes_trial_noise():
    # Inputs differ along 2 of 6 channels; trial noise is isotropic over all 6 and large.
    g = torch.Generator().manual_seed(8)
    n, b = 4, 4000
    signal = torch.zeros(b, 6, dtype=torch.float64)
    signal[:, :2] = torch.randn(b, 2, generator=g, dtype=torch.float64)
    counts = signal + 2.0 * torch.randn(n, b, 6, generator=g, dtype=torch.float64)
    assert diversity_ed(counts, "covariance").item() > 4.0  # inflated by noise
    assert diversity_ed(counts, "signal").item() == pytest.approx(2.0, abs=0.15)
    with pytest.raises(ValueError, match="2 trials"):
        diversity_ed(counts[:1], "signal")


def test_supervised_consistency_pools_each_class():
    g = torch.Generator().manual_seed(6)
    counts = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    total = 0.0
    for k in range(3):
        x = counts[:, labels == k].reshape(-1, 3)
        x = x - x.mean(0)
        total += effective_dimensionality_eig(x.T @ x).item() * (labels == k).sum().item() / 6
    assert consistency_ed(counts, "trial", labels).item() == pytest.approx(total)


def test_loss_combines_terms_and_projection():
    g = torch.Generator().manual_seed(7)
    counts = torch.rand(4, 8, 6, 3, 3, generator=g)
    loss, cons, div = ed_loss(counts, EDLossConfig(alpha=0.3, form="difference"))
    assert loss.item() == pytest.approx(0.3 * cons.item() - 0.7 * div.item(), rel=1e-5)
    p = random_projection(6, 2, torch.Generator().manual_seed(0))
    assert torch.allclose(p.T @ p, torch.eye(2), atol=1e-5)
    _, cons_p, div_p = ed_loss(counts, EDLossConfig(), projection=p)
    assert cons_p.item() <= 2.0 + 1e-4 and div_p.item() <= 2.0 + 1e-4
    with pytest.raises(ValueError, match="shape"):
        ed_loss(torch.rand(4, 8))
    with pytest.raises(ValueError, match="labels"):
        ed_loss(counts, EDLossConfig(supervised=True))


def test_signal_scatter_is_unbiased():
    # Monte Carlo: small batch and few trials, where the batch-mean share (1 - 1/B) matters.
    g = torch.Generator().manual_seed(3)
    n, b, c, draws = 3, 4, 5, 20_000
    mu = torch.rand(b, c, generator=g, dtype=torch.float64) * 3
    scale = torch.rand(b, c, generator=g, dtype=torch.float64) + 0.5  # per-input noise levels
    counts = mu + scale * torch.randn(draws, n, b, c, generator=g, dtype=torch.float64)
    est = torch.stack([diversity_matrix(counts[i], "signal") for i in range(draws)]).mean(0)
    centred = mu - mu.mean(0)
    target = centred.T @ centred
    noise = torch.diag((scale**2).sum(0)) / n  # sum_b C_noise,b / n
    se = torch.stack([diversity_matrix(counts[i], "signal") for i in range(2000)]).std(0) / draws**0.5
    assert torch.all((est - target).abs() < 5 * se + 1e-9)
    # The correction without the (1 - 1/B) share would be off by noise / B on the diagonal.
    assert torch.all((torch.diagonal(est - noise / b) - torch.diagonal(target)).abs() > 5 * torch.diagonal(se))


def test_log_ratio_form():
    g = torch.Generator().manual_seed(0)
    counts = torch.poisson(torch.rand(4, 6, 5, generator=g) * 3, generator=g)
    loss, cons, div = ed_loss(counts, EDLossConfig(alpha=0.3, form="log_ratio"))
    assert loss.item() == pytest.approx((0.3 * torch.log(cons) - 0.7 * torch.log(div)).item(), rel=1e-5)
    silent, _, _ = ed_loss(torch.zeros(4, 6, 5), EDLossConfig(form="log_ratio"))
    assert torch.isfinite(silent)
    with pytest.raises(ValueError, match="form"):
        EDLossConfig(form="ratio")
