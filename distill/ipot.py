"""Cross-modal rationale transfer: align tokens to image patches with IPOT, then carry the text
rationale over the alignment to pick the image rationale.

After Nguyen, Rudra & Nejdl (2026): the teacher has human rationales for text only, so an
image rationale is *transferred*: an optimal-transport plan between the token and patch
embeddings (cost = 1 - cosine similarity) says which patches each token's mass goes to, and the
patches that receive their mass from rationale tokens become the image rationale. No image
annotation is used anywhere.

The plan is solved with IPOT, the Inexact Proximal point method for exact Optimal Transport
(Xie, Wang, Wang & Zha, UAI 2020), as ViLT does for its word-patch alignment. Plain Sinkhorn
solves the *entropic* problem, whose plan ``∝ exp(-C/ε)`` spreads every token over many
patches; IPOT replaces the entropy by a KL proximal term around the previous plan, so the
regularisation fades with the iterations and the plan tends to the exact (sparse) OT plan,
while each step is still one cheap Sinkhorn-style scaling. A sharper plan gives a sharper
transfer.

Everything is batched ``[B, N, M]`` (N tokens, M patches), works under ``torch.no_grad`` and
is differentiable by plain autograd otherwise. Padding is expressed as zero marginal mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "DEFAULT_TOP_K",
    "TransferConfig",
    "cosine_cost",
    "ipot",
    "ipot_align",
    "plan_shares",
    "threshold_patches",
    "top_patches",
    "transfer_rationale",
]

DEFAULT_TOP_K = 5
"""Patches kept as the image rationale: 5 of the 49 cells of EfficientNet-Lite0's 7x7 grid,
about a tenth of the photo (this project's default; `threshold_patches` is the alternative)."""


@dataclass(frozen=True)
class TransferConfig:
    """Settings of the token-to-patch rationale transfer.

    ``beta``, ``iterations`` and ``inner`` are ViLT's IPOT settings (``beta=0.5, iteration=50,
    k=1`` in ``vilt/modules/objectives.py``, used for its word-patch alignment); ``inner=1`` is
    also Xie et al.'s finding that one scaling per proximal step suffices for convergence.
    ``top_k`` is `DEFAULT_TOP_K`: 5 of the 49 patches form the image rationale.
    """

    beta: float = 0.5  # proximal step: larger = smoother steps, more iterations to sharpen
    iterations: int = 50  # outer proximal steps
    inner: int = 1  # Sinkhorn scalings per outer step (Xie et al. show 1 is enough)
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        _check_solver_settings(self.beta, self.iterations, self.inner)
        if self.top_k < 0:
            raise ValueError(f"TransferConfig.top_k must be >= 0, got {self.top_k}")


# ----------------------------------------------------------------------------- cost


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise cosine distance ``1 - cos(x_i, y_j)``: ``[B, N, D] x [B, M, D] -> [B, N, M]``.

    Values lie in [0, 2] up to round-off (not clamped, so gradients are never cut). A zero
    vector (padding) has cosine 0 with everything, hence cost 1, never NaN.
    """
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"cosine_cost expects [B, N, D] and [B, M, D], got {tuple(x.shape)} and {tuple(y.shape)}")
    # normalize() divides by max(norm, eps): a zero vector stays zero instead of 0/0.
    x_unit = F.normalize(x, dim=-1)
    y_unit = F.normalize(y, dim=-1)
    return 1.0 - x_unit @ y_unit.transpose(1, 2)


# ----------------------------------------------------------------------------- IPOT


def _check_solver_settings(beta: float, iterations: int, inner: int) -> None:
    """Reject settings for which IPOT is undefined (beta <= 0) or does nothing."""
    if not beta > 0:
        raise ValueError(f"IPOT beta must be > 0, got {beta}")
    if iterations < 1 or inner < 1:
        raise ValueError(f"IPOT needs iterations >= 1 and inner >= 1, got {iterations} and {inner}")


def _normalised_mass(mass: Tensor, dtype: torch.dtype, name: str) -> Tensor:
    """``mass`` as a distribution per batch row (sums to 1); an all-zero row stays all zero."""
    mass = mass.to(dtype)
    if bool((mass < 0).any()):
        raise ValueError(f"IPOT marginal {name} has negative mass")
    total = mass.sum(-1, keepdim=True)
    return mass / total.clamp_min(torch.finfo(dtype).tiny)


def _safe_ratio(mass: Tensor, denominator: Tensor) -> Tensor:
    """``mass / denominator`` where ``mass > 0``, else exactly 0 (padding never divides by 0)."""
    tiny = torch.finfo(denominator.dtype).tiny
    return torch.where(mass > 0, mass / denominator.clamp_min(tiny), torch.zeros_like(mass))


def _gibbs_kernel(cost: Tensor, rows: Tensor, cols: Tensor, beta: float) -> Tensor:
    """``G = exp(-C / beta)`` on the valid block, exactly 0 elsewhere.

    Each row is shifted by its smallest valid cost first, so every valid row of ``G`` holds a 1
    and cannot underflow to all zeros for small beta; the row factor ``exp(min_i / beta)`` is
    absorbed by the scaling vector ``a``, so the plan is unchanged.
    """
    joint = rows[:, :, None] & cols[:, None, :]
    row_min = cost.detach().masked_fill(~cols[:, None, :], float("inf")).amin(-1, keepdim=True)
    row_min = torch.where(torch.isfinite(row_min), row_min, torch.zeros_like(row_min))
    # where() before exp(): padded entries (maybe inf/NaN) never reach exp or its gradient.
    shifted = torch.where(joint, cost - row_min, torch.zeros_like(cost))
    return torch.where(joint, torch.exp(-shifted / beta), torch.zeros_like(cost))


def ipot(
    cost: Tensor,
    mu: Tensor,
    nu: Tensor,
    *,
    beta: float = 0.5,
    iterations: int = 50,
    inner: int = 1,
) -> Tensor:
    """Optimal-transport plan between ``mu`` and ``nu`` under ``cost``, by IPOT.

    Xie et al. (2020), Algorithm 1: ``G = exp(-C / beta)``, ``T = 1 1^T``, ``b = 1/m``; then
    ``iterations`` times: ``Q = G * T``; ``inner`` times ``a = mu / (Q b)``, ``b = nu / (Q^T a)``;
    ``T = diag(a) Q diag(b)``. Each step solves ``min <C, T> + beta * KL(T || T_prev)`` over the
    couplings, so the plan tends to the exact OT plan instead of the entropic (Sinkhorn) one.
    ``T = 1 1^T`` is the paper's and ViLT's start; ``mu nu^T`` would differ from it only by a
    diagonal scaling that ``a`` and ``b`` absorb (exactly, once the scalings converge). With
    ``iterations=1`` and many ``inner`` steps this is exactly Sinkhorn with epsilon = beta.

    Args:
        cost: ``[B, N, M]`` floating costs. Entries of padded rows/columns are ignored.
        mu: ``[B, N]`` non-negative source mass; need not be normalised: each batch row is
            scaled to sum 1 here, and ``mu_i = 0`` marks a padded token.
        nu: ``[B, M]`` non-negative target mass, likewise (``nu_j = 0`` marks a padded patch).
        beta: proximal step size (> 0).
        iterations: outer proximal steps.
        inner: scaling (Sinkhorn) steps per outer step.

    Returns:
        ``[B, N, M]`` plan in ``cost``'s dtype: rows sum to the normalised ``mu`` (approximately,
        after finitely many steps), columns to the normalised ``nu`` (exactly, up to round-off,
        since ``b`` is updated last). Padded rows/columns are exactly 0; a batch row with no
        mass on either side gives an all-zero plan. Never NaN for finite valid costs.

    Computed in ``cost``'s dtype (no upcast, so it is cheap on GPU); divisions are clamped to
    the dtype's smallest normal and the kernel is row-shifted (`_gibbs_kernel`). float32 is
    fine for costs in [0, 2] with beta >= 0.1; pass float64 costs for much smaller beta.
    Differentiable by unrolling; call under ``torch.no_grad()`` when the plan is only a target,
    as the teacher does and ViLT does (memory grows with ``iterations`` otherwise).
    """
    _check_solver_settings(beta, iterations, inner)
    if not cost.is_floating_point():
        raise TypeError(f"IPOT cost must be floating point, got {cost.dtype}")
    if cost.dim() != 3:
        raise ValueError(f"IPOT cost must be [B, N, M], got {tuple(cost.shape)}")
    batch, n, m = cost.shape
    if mu.shape != (batch, n) or nu.shape != (batch, m):
        raise ValueError(f"IPOT marginals must be [{batch}, {n}] and [{batch}, {m}], "
                         f"got {tuple(mu.shape)} and {tuple(nu.shape)}")
    mu = _normalised_mass(mu, cost.dtype, "mu")
    nu = _normalised_mass(nu, cost.dtype, "nu")
    # A side with no mass has no coupling: empty the other side too, so the plan is all zero.
    live = ((mu.sum(-1) > 0) & (nu.sum(-1) > 0)).unsqueeze(-1)
    mu, nu = mu * live, nu * live
    rows, cols = mu > 0, nu > 0

    kernel = _gibbs_kernel(cost, rows, cols, beta)
    plan = torch.ones_like(kernel)
    b = cols.to(cost.dtype) / cols.sum(-1, keepdim=True).clamp_min(1)  # 1/m over valid patches
    for _ in range(iterations):
        q = kernel * plan
        for _ in range(inner):
            # Broadcast-and-sum, not bmm: these products are tiny, and a batched mat-vec pays
            # thread start-up on every call (milliseconds on a busy CPU), 100+ calls per plan.
            a = _safe_ratio(mu, (q * b.unsqueeze(1)).sum(-1))
            b = _safe_ratio(nu, (q * a.unsqueeze(-1)).sum(1))
        plan = a.unsqueeze(-1) * q * b.unsqueeze(1)
    return plan


def ipot_align(
    token_emb: Tensor,
    token_mask: Tensor,
    patch_emb: Tensor,
    patch_mask: Tensor,
    *,
    beta: float = 0.5,
    iterations: int = 50,
    inner: int = 1,
) -> Tensor:
    """IPOT plan ``[B, N, M]`` from tokens to patches, cost ``1 - cos``, uniform marginals.

    ``token_mask`` ``[B, N]`` and ``patch_mask`` ``[B, M]`` (bool or 0/1) mark the valid
    tokens and patches: each valid token sends ``1/n_valid``, each valid patch receives
    ``1/m_valid``; padded ones get zero rows/columns. A post without text or without image
    gives an all-zero plan.
    """
    cost = cosine_cost(token_emb, patch_emb)
    mu = (token_mask != 0).to(cost.dtype)
    nu = (patch_mask != 0).to(cost.dtype)
    return ipot(cost, mu, nu, beta=beta, iterations=iterations, inner=inner)


# ----------------------------------------------------------------------------- transfer


def transfer_rationale(plan: Tensor, token_scores: Tensor, patch_mask: Tensor) -> Tensor:
    """Rationale score of each patch ``[B, M]``: the share of its mass sent by rationale tokens.

    ``s_j = sum_i r_i T_ij / sum_i T_ij``, with ``r = token_scores`` ``[B, N]`` soft in [0, 1]
    or hard 0/1, so ``s_j`` is in [0, 1] too. Why the weighting: with exact marginals every
    patch receives exactly ``nu_j`` in total (uniform, ``1/m``), so the total mass a patch
    receives says nothing; only *whose* mass it is -- how much comes from rationale tokens --
    tells the patches aligned with the rationale apart. Normalising by the plan's own column
    sum (rather than ``nu``) keeps the score a true share when IPOT is stopped early.

    Masked patches and patches that receive no mass score 0. Differentiable in both inputs;
    the teacher computes the plan under ``no_grad`` (a target, as in ViLT), and the gradient
    w.r.t. ``token_scores`` is ``T_ij / sum_i T_ij``.
    """
    batch, n, m = plan.shape if plan.dim() == 3 else (-1, -1, -1)
    if batch < 0 or token_scores.shape != (batch, n) or patch_mask.shape != (batch, m):
        raise ValueError(f"transfer_rationale expects plan [B, N, M], scores [B, N], mask [B, M]; got "
                         f"{tuple(plan.shape)}, {tuple(token_scores.shape)}, {tuple(patch_mask.shape)}")
    shares = plan_shares(plan, patch_mask)
    return (shares * token_scores.to(plan.dtype).unsqueeze(-1)).sum(1)


def plan_shares(plan: Tensor, patch_mask: Tensor) -> Tensor:
    """``[B, N, M]``: the share of patch j's received mass that comes from token i,
    ``T_ij / sum_i T_ij`` (each valid patch's column sums to 1; masked patches and patches that
    receive no mass are all 0). `transfer_rationale` weighs the token scores by it; the student's
    one-step transfer is taught to reproduce it."""
    received = plan.sum(1, keepdim=True)
    valid = (patch_mask != 0).unsqueeze(1) & (received > 0)
    shares = plan / received.clamp_min(torch.finfo(plan.dtype).tiny)
    return torch.where(valid, shares, torch.zeros_like(shares))


def _ranks(scores: Tensor, valid: Tensor) -> Tensor:
    """Rank ``[B, M]`` of each patch among the valid ones: 0 = best; ties go to the lower index."""
    # NaN compares false with everything; make it the lowest score instead of an unbeatable one.
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)
    other, this = scores.unsqueeze(1), scores.unsqueeze(2)  # [B, 1, M] vs [B, M, 1]
    index = torch.arange(scores.shape[-1], device=scores.device)
    earlier = index.unsqueeze(0) < index.unsqueeze(1)  # [M(this), M(other)]: other precedes this
    beats = (other > this) | ((other == this) & earlier)
    return (beats & valid.unsqueeze(1)).sum(-1)


def top_patches(scores: Tensor, patch_mask: Tensor, k: int = DEFAULT_TOP_K) -> Tensor:
    """Image rationale ``[B, M]`` bool: the ``k`` highest-scoring valid patches of each row.

    Ties go to the lower patch index (deterministic, unlike ``topk``); masked patches are
    never chosen; a row with fewer than ``k`` valid patches keeps all of them.
    """
    if k < 0:
        raise ValueError(f"top_patches needs k >= 0, got {k}")
    if scores.shape != patch_mask.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and patch_mask {tuple(patch_mask.shape)} differ")
    valid = patch_mask != 0
    return valid & (_ranks(scores.detach(), valid) < k)


def threshold_patches(scores: Tensor, patch_mask: Tensor, threshold: float) -> Tensor:
    """Image rationale ``[B, M]`` bool: every valid patch scoring at least ``threshold``.

    The alternative to `top_patches` when the rationale size should follow the text: a post
    whose rationale words align with no patch keeps none.
    """
    if scores.shape != patch_mask.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and patch_mask {tuple(patch_mask.shape)} differ")
    return (patch_mask != 0) & (scores >= threshold)
