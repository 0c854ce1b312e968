"""Gradient estimators: how the gradient crosses the non-differentiable nearest-code lookup.

Each takes the encoder vectors ``e`` (N, D) and their code vectors ``q`` (N, D) and returns a tensor whose
forward value is ``q`` and whose gradient with respect to ``e`` is the estimator's. (The Gumbel-softmax estimator
needs the distances, so it lives in :class:`~hiervq.quantize.VectorQuantizer`.)
"""

from __future__ import annotations

import torch

ESTIMATORS = ("ste", "rotation", "gumbel")


def straight_through(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator ``e + sg(q - e)``: forward value q, gradient w.r.t. e the identity."""
    return e + (q - e).detach()


def rotation_trick(e: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rotation trick (Fifty et al., 2024): forward value q, gradient w.r.t. e equal to lambda * R^T g.

    With e_hat = e/|e|, q_hat = q/|q|, w = sg((e_hat + q_hat)/|e_hat + q_hat|) and lambda = sg(|q|/|e|),
    the output is ``lambda * (e - 2 (e.w) w + 2 (e.sg(e_hat)) sg(q_hat))`` = lambda R e with
    R = I - 2 w w^T + 2 q_hat e_hat^T, the rotation taking e_hat to q_hat. ``q`` gets no gradient through
    this path (the codebook is trained by its own loss or EMA).

    Degenerate rows are handled without NaN: if e_hat = -q_hat, w = 0 and R = I - 2 q_hat q_hat^T (a reflection
    that still maps e to q); rows with |e| or |q| below ``eps`` fall back to the straight-through gradient.
    The forward value is snapped to q exactly (``out + sg(q - out)``), removing rounding error.

    Args:
        e: encoder vectors (N, D).
        q: code vectors (N, D).
    """
    q = q.detach()
    e_norm = e.detach().norm(dim=-1, keepdim=True)
    q_norm = q.norm(dim=-1, keepdim=True)
    ok = (e_norm > eps) & (q_norm > eps)
    e_hat = e.detach() / e_norm.clamp_min(eps)
    q_hat = q / q_norm.clamp_min(eps)
    s = e_hat + q_hat
    s_norm = s.norm(dim=-1, keepdim=True)
    w = torch.where(s_norm > eps, s / s_norm.clamp_min(eps), torch.zeros_like(s))
    lam = q_norm / e_norm.clamp_min(eps)
    rotated = e - 2.0 * (e * w).sum(-1, keepdim=True) * w + 2.0 * (e * e_hat).sum(-1, keepdim=True) * q_hat
    out = torch.where(ok, lam * rotated, e)
    return out + (q - out).detach()
