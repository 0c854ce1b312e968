"""Gradient estimators: how the gradient crosses the non-differentiable nearest-code lookup.

Each takes the encoder vectors ``e`` (N, D) and their code vectors ``q`` (N, D) and returns a tensor whose
forward value is ``q`` and whose gradient with respect to ``e`` is the estimator's. (The Gumbel-softmax estimator
needs the distances, so it lives in :class:`~hiervq.quantize.VectorQuantizer`.)
"""

from __future__ import annotations

import torch

ESTIMATORS = ("ste", "rotation", "gumbel")


class _StraightThrough(torch.autograd.Function):
    """Forward value q (the same storage, no copy), gradient with respect to e the identity."""

    @staticmethod
    def forward(ctx, e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def straight_through(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator ``e + sg(q - e)``: forward value q, gradient w.r.t. e the identity.

    The forward value is exactly ``q`` (no ``e + (q - e)`` rounding, no extra pass over the rows) and ``q`` gets
    no gradient through this path. ``e`` and ``q`` are (N, D) (any equal shapes).
    """
    return _StraightThrough.apply(e, q.detach())


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1, keepdim=True)


class _RotationTrick(torch.autograd.Function):
    """Forward value q; backward lambda R^T g computed from per-row scalars (see :func:`rotation_trick`)."""

    @staticmethod
    def forward(ctx, e: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(e, q)
        ctx.eps = eps
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        e, q = ctx.saved_tensors
        eps = ctx.eps
        dtype = torch.promote_types(torch.promote_types(e.dtype, q.dtype), grad.dtype)
        e32, q32, g = e.to(dtype), q.to(dtype), grad.to(dtype)
        e_norm = _rowdot(e32, e32).sqrt_()
        q_norm = _rowdot(q32, q32).sqrt_()
        ok = (e_norm > eps) & (q_norm > eps)
        e_inv = e_norm.clamp_min(eps).reciprocal_()
        q_inv = q_norm.clamp_min(eps).reciprocal_()
        s = torch.addcmul(q32 * q_inv, e32, e_inv)  # e_hat + q_hat
        s_sq = _rowdot(s, s)
        lam = q_norm * e_inv
        # lambda R^T g = lambda g - 2 lambda (s.g / |s|^2) s + 2 lambda (q_hat.g) e_hat;
        # rows with |e| or |q| <= eps get g (straight-through): lambda 1, both other terms 0;
        # e_hat = -q_hat (|s| <= eps): w = 0, the middle term vanishes (a reflection that still maps e to q).
        c_s = torch.where(ok & (s_sq > eps * eps), 2.0 * lam * _rowdot(s, g) / s_sq.clamp_min(eps * eps), 0.0)
        c_e = torch.where(ok, 2.0 * lam * _rowdot(q32, g) * q_inv * e_inv, 0.0)
        lam = torch.where(ok, lam, 1.0)
        out = g * lam
        out.addcmul_(s, c_s, value=-1.0).addcmul_(e32, c_e)
        return out.to(e.dtype), None, None


def rotation_trick(e: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rotation trick (Fifty et al., 2024): forward value q, gradient w.r.t. e equal to lambda * R^T g.

    With e_hat = e/|e|, q_hat = q/|q|, w = sg((e_hat + q_hat)/|e_hat + q_hat|) and lambda = sg(|q|/|e|),
    the layer acts as ``lambda * (e - 2 (e.w) w + 2 (e.sg(e_hat)) sg(q_hat))`` = lambda R e with
    R = I - 2 w w^T + 2 q_hat e_hat^T, the rotation taking e_hat to q_hat, whose value is q. ``q`` gets no
    gradient through this path (the codebook is trained by its own loss or EMA).

    The forward value is exactly ``q`` (the same storage, no extra pass); the backward pass computes
    lambda R^T g = lambda (g - 2 w (w.g) + 2 e_hat (q_hat.g)) from a handful of per-row dot products, without
    building R or the rotated vectors.

    Degenerate rows are handled without NaN: if e_hat = -q_hat, w = 0 and R = I - 2 q_hat q_hat^T (a reflection
    that still maps e to q); rows with |e| or |q| below ``eps`` fall back to the straight-through gradient.

    Args:
        e: encoder vectors (N, D).
        q: code vectors (N, D).
    """
    return _RotationTrick.apply(e, q.detach(), eps)
