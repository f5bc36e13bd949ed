"""IPOT and the token-to-patch rationale transfer: exactness, padding, transfer, selection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_optimize = pytest.importorskip("scipy.optimize")

from crisislens.distill.ipot import (  # noqa: E402
    DEFAULT_TOP_K,
    TransferConfig,
    cosine_cost,
    ipot,
    ipot_align,
    threshold_patches,
    top_patches,
    transfer_rationale,
)

F64 = torch.float64


def sinkhorn(cost: np.ndarray, mu: np.ndarray, nu: np.ndarray, eps: float, steps: int = 5000) -> np.ndarray:
    """Reference entropic OT plan (plain Sinkhorn), independent of the module under test."""
    kernel = np.exp(-cost / eps)
    b = np.ones_like(nu)
    for _ in range(steps):
        a = mu / (kernel @ b)
        b = nu / (kernel.T @ a)
    return a[:, None] * kernel * b[None, :]


def exact_ot_cost(cost: np.ndarray, mu: np.ndarray, nu: np.ndarray) -> float:
    """Optimal transport cost by linear programming (the ground truth)."""
    n, m = cost.shape
    rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j T_ij = mu_i
    cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i T_ij = nu_j
    result = scipy_optimize.linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([mu, nu]),
                                    bounds=(0, None), method="highs")
    assert result.success
    return float(result.fun)


def batch1(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=F64).unsqueeze(0)


# ----------------------------------------------------------------------------- IPOT


@pytest.mark.parametrize(("inner", "iterations"), [(1, 1000), (3, 200)])
def test_marginals_respected_with_unnormalised_mass(inner, iterations):
    gen = torch.Generator().manual_seed(1)
    cost = torch.rand(3, 5, 7, generator=gen, dtype=F64)
    mu = torch.rand(3, 5, generator=gen, dtype=F64) + 0.1
    nu = 3 * torch.rand(3, 7, generator=gen, dtype=F64) + 0.1  # sums are not 1: normalised inside
    plan = ipot(cost, mu, nu, iterations=iterations, inner=inner)
    mu_n, nu_n = mu / mu.sum(1, keepdim=True), nu / nu.sum(1, keepdim=True)
    # Rows converge with the iterations (one scaling per step is inexact, as the name says)...
    torch.testing.assert_close(plan.sum(2), mu_n, rtol=1e-4, atol=0)
    # ...columns hold at every step, since b is updated last.
    torch.testing.assert_close(plan.sum(1), nu_n, rtol=1e-12, atol=0)
    assert (plan >= 0).all()


def test_converges_to_the_exact_assignment_not_the_sinkhorn_blur():
    cost = np.random.default_rng(4).random((4, 4))
    rows, cols = scipy_optimize.linear_sum_assignment(cost)
    exact = np.zeros((4, 4))
    exact[rows, cols] = 0.25
    optimum = float((cost * exact).sum())
    uniform = np.full(4, 0.25)
    beta = 0.1

    plan = ipot(batch1(cost), batch1(uniform), batch1(uniform), beta=beta, iterations=300)[0].numpy()
    np.testing.assert_allclose(plan, exact, atol=1e-6)
    ipot_gap = float((cost * plan).sum()) - optimum

    blurred = sinkhorn(cost, uniform, uniform, eps=beta)
    sinkhorn_gap = float((cost * blurred).sum()) - optimum
    assert sinkhorn_gap > 1e-3  # entropic OT at eps = beta is visibly suboptimal here...
    assert abs(ipot_gap) < sinkhorn_gap / 100  # ...IPOT with the same beta is not


def test_one_outer_step_with_many_scalings_is_sinkhorn():
    # Documents the start T = 1 1^T: the first proximal step is entropic OT with eps = beta.
    rng = np.random.default_rng(2)
    cost, mu, nu = rng.random((3, 5)), rng.random(3) + 0.1, rng.random(5) + 0.1
    mu, nu = mu / mu.sum(), nu / nu.sum()
    plan = ipot(batch1(cost), batch1(mu), batch1(nu), beta=0.3, iterations=1, inner=3000)[0].numpy()
    np.testing.assert_allclose(plan, sinkhorn(cost, mu, nu, eps=0.3), atol=1e-10)


def test_non_uniform_marginals_reach_the_lp_optimum():
    rng = np.random.default_rng(3)
    cost = rng.random((3, 4))
    mu = np.array([0.5, 0.3, 0.2])
    nu = np.array([0.1, 0.4, 0.25, 0.25])
    plan = ipot(batch1(cost), batch1(mu), batch1(nu), beta=0.1, iterations=300)[0].numpy()
    assert abs(float((cost * plan).sum()) - exact_ot_cost(cost, mu, nu)) < 1e-3
    np.testing.assert_allclose(plan.sum(1), mu, atol=1e-6)
    np.testing.assert_allclose(plan.sum(0), nu, atol=1e-6)


def test_padding_equals_solving_each_problem_alone():
    gen = torch.Generator().manual_seed(5)
    sizes = [(3, 5), (4, 2)]
    costs = [torch.rand(n, m, generator=gen, dtype=F64) for n, m in sizes]
    mus = [torch.rand(n, generator=gen, dtype=F64) + 0.1 for n, _ in sizes]
    nus = [torch.rand(m, generator=gen, dtype=F64) + 0.1 for _, m in sizes]

    cost = torch.full((2, 4, 5), float("nan"), dtype=F64)  # padding may hold garbage
    mu, nu = torch.zeros(2, 4, dtype=F64), torch.zeros(2, 5, dtype=F64)
    for i, (n, m) in enumerate(sizes):
        cost[i, :n, :m], mu[i, :n], nu[i, :m] = costs[i], mus[i], nus[i]
    padded = ipot(cost, mu, nu, beta=0.2, iterations=80)

    assert not torch.isnan(padded).any()
    for i, (n, m) in enumerate(sizes):
        alone = ipot(costs[i][None], mus[i][None], nus[i][None], beta=0.2, iterations=80)[0]
        torch.testing.assert_close(padded[i, :n, :m], alone, rtol=1e-12, atol=1e-15)
        assert (padded[i, n:] == 0).all() and (padded[i, :, m:] == 0).all()


@pytest.mark.parametrize("empty_side", ["mu", "nu"])
def test_a_row_without_mass_gives_a_zero_plan(empty_side):
    gen = torch.Generator().manual_seed(6)
    cost = torch.rand(2, 3, 4, generator=gen)
    mu, nu = torch.ones(2, 3), torch.ones(2, 4)
    (mu if empty_side == "mu" else nu)[1] = 0
    plan = ipot(cost, mu, nu)
    assert (plan[1] == 0).all()
    torch.testing.assert_close(plan[0], ipot(cost[:1], mu[:1], nu[:1])[0])


def test_float32_small_beta_stays_finite():
    gen = torch.Generator().manual_seed(7)
    cost = 2 * torch.rand(4, 20, 49, generator=gen)  # the full range of 1 - cos
    mu, nu = torch.ones(4, 20), torch.ones(4, 49)
    mu[:, 15:], nu[2:, 40:] = 0, 0
    for iterations in (50, 300):
        plan = ipot(cost, mu, nu, beta=0.1, iterations=iterations)
        assert plan.dtype == torch.float32 and torch.isfinite(plan).all()
        torch.testing.assert_close(plan.sum((1, 2)), torch.ones(4))


def test_rejects_bad_settings_and_marginals():
    cost, mu, nu = torch.rand(1, 2, 3), torch.ones(1, 2), torch.ones(1, 3)
    with pytest.raises(ValueError, match="beta"):
        ipot(cost, mu, nu, beta=0.0)
    with pytest.raises(ValueError, match="iterations"):
        ipot(cost, mu, nu, iterations=0)
    with pytest.raises(ValueError, match="negative"):
        ipot(cost, -mu, nu)
    with pytest.raises(ValueError, match="marginals"):
        ipot(cost, nu, mu)


# ----------------------------------------------------------------------------- cost and alignment


def test_cosine_cost_range_and_zero_vectors():
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    y = torch.tensor([[[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]]])
    expected = torch.tensor([[[0.0, 2.0, 1.0], [1.0, 1.0, 1.0]]])
    torch.testing.assert_close(cosine_cost(x, y), expected)


def aligned_embeddings() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens 0, 1 sit on patches 3, 4; tokens 2, 3 on patches 0, 1; patch 6 is padding."""
    gen = torch.Generator().manual_seed(8)
    basis, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))  # orthonormal: cos 0 off-match
    patches = basis[:7].clone()
    tokens = patches[[3, 4, 0, 1]] + 0.01 * torch.randn(4, 16, generator=gen)
    token_mask = torch.ones(1, 4, dtype=torch.bool)
    patch_mask = torch.tensor([[True] * 6 + [False]])
    return tokens[None], token_mask, patches[None], patch_mask


def test_transfer_picks_the_patches_aligned_with_rationale_tokens():
    tokens, token_mask, patches, patch_mask = aligned_embeddings()
    config = TransferConfig()
    plan = ipot_align(tokens, token_mask, patches, patch_mask,
                      beta=config.beta, iterations=config.iterations, inner=config.inner)
    scores = transfer_rationale(plan, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), patch_mask)
    assert set(scores[0].topk(2).indices.tolist()) == {3, 4}
    assert scores[0, 3] > 0.9 and scores[0, 4] > 0.9 and scores[0, 6] == 0
    assert top_patches(scores, patch_mask, k=2)[0].nonzero().flatten().tolist() == [3, 4]

    none = transfer_rationale(plan, torch.zeros(1, 4), patch_mask)
    assert (none == 0).all()
    every = transfer_rationale(plan, torch.ones(1, 4), patch_mask)
    torch.testing.assert_close(every, patch_mask.float())


def test_gradient_reaches_token_scores_through_a_detached_plan():
    tokens, token_mask, patches, patch_mask = aligned_embeddings()
    with torch.no_grad():  # as in the teacher: the plan is a target
        plan = ipot_align(tokens, token_mask, patches, patch_mask)
    r = torch.tensor([[0.9, 0.2, 0.1, 0.5]], requires_grad=True)
    transfer_rationale(plan, r, patch_mask).sum().backward()
    share = plan / plan.sum(1, keepdim=True)
    torch.testing.assert_close(r.grad, share[..., :6].sum(-1))


def test_plan_is_differentiable_in_the_embeddings():
    tokens, token_mask, patches, patch_mask = aligned_embeddings()
    tokens = tokens.clone().requires_grad_(True)
    plan = ipot_align(tokens, token_mask, patches, patch_mask, iterations=10)
    (plan * cosine_cost(tokens, patches)).sum().backward()
    assert torch.isfinite(tokens.grad).all() and tokens.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- selection


def test_top_patches_breaks_ties_by_index_and_skips_masked():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1], [1.0, 0.2, 0.8, float("nan"), 0.3]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    chosen = top_patches(scores, mask, k=3)
    assert chosen[0].nonzero().flatten().tolist() == [0, 1, 2]
    assert chosen[1].nonzero().flatten().tolist() == [1, 2, 4]  # masked 1.0 and NaN lose


def test_top_patches_with_fewer_valid_patches_than_k():
    scores = torch.rand(2, 49)
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, [4, 7, 9]] = True
    chosen = top_patches(scores, mask)
    assert chosen[0].tolist() == mask[0].tolist()
    assert not chosen[1].any()
    assert DEFAULT_TOP_K == 5
    assert top_patches(scores, torch.ones(2, 49)).sum(1).tolist() == [5, 5]
    assert not top_patches(scores, torch.ones(2, 49), k=0).any()


def test_threshold_patches():
    scores = torch.tensor([[0.2, 0.5, 0.9, 0.7]])
    mask = torch.tensor([[True, True, True, False]])
    assert threshold_patches(scores, mask, 0.5).tolist() == [[False, True, True, False]]


def test_transfer_config_defaults_are_vilts():
    config = TransferConfig()
    assert (config.beta, config.iterations, config.inner, config.top_k) == (0.5, 50, 1, DEFAULT_TOP_K)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.beta = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError):
        TransferConfig(top_k=-1)
    assert list(dataclasses.asdict(config)) == ["beta", "iterations", "inner", "top_k"]
