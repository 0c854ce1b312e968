"""Progressive quantization (PQ-VAE): a feature map -> a 1-D coarse-to-fine sequence of codes.

The feature map F (B, C, H, W) is quantized in L steps with one shared :class:`Codebook`::

    F_1 = F
    for l in 1..L:
        e_l          = T_l(F_l)            # step-specific linear transform, flattened to a D-vector
        e_hat_l, z_l = VQ(e_l)             # shared codebook (Gumbel sampling over -distance in training)
        F_hat_l      = T_l^+(e_hat_l)      # pseudo-inverse of T_l
        F_{l+1}      = F_l - F_hat_l
    F_hat = sum_l F_hat_l

``T_l`` is a spatial linear map (h*w positions -> s) and a channel linear map (C -> c), so D = s * c; ``T_l^+``
uses ``torch.linalg.pinv`` of both weight matrices (pinv of a Kronecker product is the Kronecker product of the
pinvs), recomputed whenever the weights change. Larger maps are partitioned: the (H, W) grid is split into
h x w patches and the feature vectors at the same relative position inside each patch form one small (C, h, w)
map (a strided sub-sampling of the whole map, so each code sees a nearly full-size receptive field); the
G = (H * W) / (h * w) small maps are quantized in parallel. The code sequence is step-major: position
``l * G + g`` holds step l of small map g, so any prefix is a coarse-to-fine truncation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .codebook import Codebook, CodebookConfig
from .common import batch_stats, code_bits
from .vector import Quantized

PQ_ESTIMATORS = ("gumbel", "ste")
#: the codebook settings of a progressive quantizer given none: the defaults, with a k-means initialisation
PQ_CODEBOOK = CodebookConfig(init="kmeans")


def entropy_terms(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo entropy terms of one quantization step, in nats.

    ``logits`` (..., N, K) are -distance / temperature (up to a per-row constant) for the N rows of a minibatch.
    q(z | x) = softmax(logits) per row; q(z) is its average over the minibatch. Returns (H(q(z | x)) averaged over
    rows, H(q(z))), each of shape (...); PQ-VAE minimises the first and maximises the second.
    """
    logp = logits.log_softmax(-1)
    p = logp.exp()
    h_cond = -(p * logp).sum(-1).mean(-1)
    p_bar = p.mean(-2)
    h_marg = -(p_bar * p_bar.clamp_min(1e-30).log()).sum(-1)
    return h_cond, h_marg


def _chain_values(
    tx: torch.Tensor, at: torch.Tensor | None, m: torch.Tensor | None, weight: torch.Tensor,
    noise: torch.Tensor | None, temperature: float, straight_through: bool, want_probs: bool,
    keep_cross: list | None = None,
) -> tuple[torch.Tensor, ...]:
    """The values of the progressive chain in the transformed domain (no autograd).

    ``tx`` (L, c, N, s): T_l(F) of every step (:meth:`ProgressiveQuantizer.transform_all`); ``at``, ``m``: the
    cross operators (:meth:`ProgressiveQuantizer.cross_operators`, ``None`` for one step); ``weight`` (K, D);
    ``noise`` (L, N, K) Gumbel noise or ``None``. The code vectors are written into one (L, c, N, s) buffer as they
    are drawn, so step l reads the first l of them as a contiguous slice (no per-step stacking). Returns (the
    buffer, quantizer outputs (L, N, D), e (L, N, D), logits (L, N, K), nearest codes (L, N), softmax(logits +
    noise) (L, N, K) when ``want_probs`` and sampling, else ``None``). ``keep_cross``: a list that receives each
    step's E_k (W_s,l W_s,k^+)^T products (l, c*N, s), for the backward.
    """
    steps, c, n, s = tx.shape
    d = c * s
    k = weight.shape[0]
    buf = tx.new_empty(steps, c, n, s)
    out_all = tx.new_empty(steps, n, d)
    e_all = tx.new_empty(steps, n, d)
    logits_all = tx.new_empty(steps, n, k)
    idx_all = torch.empty(steps, n, dtype=torch.long, device=tx.device)
    probs = tx.new_empty(steps, n, k) if (want_probs and noise is not None) else None
    w_sq = weight.pow(2).sum(1)
    wt = weight.t()
    for step in range(steps):
        ec = tx[step]
        if step:
            y = torch.bmm(buf[:step].view(step, c * n, s), at[step][:step])  # E_k (W_s,l W_s,k^+)^T
            if keep_cross is not None:
                keep_cross.append(y)
            corr = m[step][:, :step].reshape(c, step * c) @ y.view(step * c, n * s)  # sum_k W_c,l W_c,k^+ (...)
            ec = ec - corr.view(c, n, s)
        e = e_all[step]
        e.view(n, c, s).copy_(ec.transpose(0, 1))
        logits = logits_all[step]
        torch.addmm(w_sq, e, wt, beta=-1.0, alpha=2.0, out=logits)
        if temperature != 1.0:
            logits.div_(temperature)
        idx = logits.argmax(-1)
        idx_all[step] = idx
        if noise is None:
            q = F.embedding(idx, weight)
            out = e + (q - e) if straight_through else q
        else:
            noisy = logits + noise[step]
            out = F.embedding(noisy.argmax(-1), weight)
            if probs is not None:
                torch.softmax(noisy, -1, out=probs[step])
        out_all[step] = out
        if step + 1 < steps:
            buf[step].copy_(out.view(n, c, s).transpose(0, 1))
    return buf, out_all, e_all, logits_all, idx_all, probs


class _ProgressiveChain(torch.autograd.Function):
    """The progressive chain (:func:`_chain_values`) with a hand-written backward: one reverse sweep over the steps,
    a few matrix products per step, instead of autograd's graph of ~20 small nodes per step and the per-step
    stacking of the earlier code vectors. Gradients are those of the autograd formulation
    (:meth:`ProgressiveQuantizer._chain_reference`): the Gumbel-softmax relaxation softmax(logits + noise) @ weight
    for the sampled steps (no straight-through identity), the straight-through identity for the nearest code
    otherwise, the logits' own gradient (entropy terms), and the cross operators' gradients."""

    @staticmethod
    def forward(ctx, tx, at, m, weight, noise, temperature, straight_through):
        cross: list[torch.Tensor] = []
        with torch.no_grad():
            buf, out_all, e_all, logits, idx, probs = _chain_values(
                tx, at, m, weight, noise, temperature, straight_through, want_probs=True,
                keep_cross=cross if m is not None and m.requires_grad else None)
        ctx.cross = cross
        ctx.temperature = temperature
        ctx.sampled = noise is not None
        ctx.straight_through = straight_through
        ctx.save_for_backward(at, m, weight, buf, e_all, probs)
        ctx.mark_non_differentiable(idx)
        return out_all, e_all, logits, idx

    @staticmethod
    def backward(ctx, g_out, g_e, g_logits, _g_idx):
        at, m, weight, buf, e_all, probs = ctx.saved_tensors
        steps, c, n, s = buf.shape
        d = c * s
        k = weight.shape[0]
        scale = 2.0 / ctx.temperature
        need_tx, need_at, need_m, need_weight = ctx.needs_input_grad[:4]
        # g_buf: the gradient of every step's output, laid out as the buffer (block l final once step l is reached)
        if g_out is None:
            g_buf = e_all.new_zeros(steps, c, n, s)
        else:
            g_buf = g_out.view(steps, n, c, s).transpose(1, 2).contiguous()
        g_flat = e_all.new_zeros(steps, n, d) if g_e is None else g_e.clone()  # d loss / d e_l, rows
        g_tx = e_all.new_empty(steps, c, n, s)
        logit_grads = ctx.sampled or g_logits is not None
        # every step's total logit gradient, kept only for the learned codes' gradient
        g_log = e_all.new_empty(steps, n, k) if (logit_grads and need_weight) else None
        g_at = torch.zeros_like(at) if need_at else None
        g_m = torch.zeros_like(m) if need_m else None
        wt = weight.t()
        go_all = e_all.new_empty(steps, n, d) if (need_weight and ctx.sampled) else None
        for step in range(steps - 1, -1, -1):
            go = g_buf[step].transpose(0, 1).reshape(n, d)
            ge = g_flat[step]
            if go_all is not None:
                go_all[step] = go
            gl = None if g_logits is None else g_logits[step]
            if ctx.sampled:  # out = drawn + relaxed - sg(relaxed), relaxed = softmax(logits + noise) @ weight
                p = probs[step]
                gp = go @ wt
                gp.sub_((p * gp).sum(-1, keepdim=True)).mul_(p)
                gl = gp if gl is None else gp.add_(gl)
            elif ctx.straight_through:
                ge += go
            if gl is not None:  # logits = (2 e W^T - |w|^2) / temperature
                ge.addmm_(gl, weight, alpha=scale)
                if g_log is not None:
                    g_log[step] = gl
            gec = g_tx[step]
            gec.copy_(ge.view(n, c, s).transpose(0, 1))
            if step:  # e_l = T_l(F) - M_l @ bmm(buf[:l], at[l, :l]): push -d/d buf[:l], d/d at[l, :l], d/d m[l, :, :l]
                gec2 = gec.view(c, n * s)
                g_y = (m[step][:, :step].reshape(c, step * c).t() @ gec2).view(step, c * n, s)
                prev = buf[:step].view(step, c * n, s)
                g_buf[:step].view(step, c * n, s).baddbmm_(g_y, at[step][:step].transpose(1, 2), alpha=-1.0)
                if need_at:
                    g_at[step, :step] = torch.bmm(prev.transpose(1, 2), g_y).neg_()
                if need_m:
                    y = ctx.cross[step - 1].view(step * c, n * s)
                    g_m[step][:, :step] = (gec2 @ y.t()).neg_().view(c, step, c)
        g_weight = None
        if need_weight:
            g_weight = torch.zeros_like(weight)
            if ctx.sampled:
                g_weight.addmm_(probs.view(-1, k).t(), go_all.view(-1, d))
            if logit_grads:
                gl = g_log.view(-1, k)
                g_weight.addmm_(gl.t(), e_all.view(-1, d), alpha=scale)
                g_weight.sub_(weight * (scale * gl.sum(0))[:, None])
        ctx.cross = None
        return (g_tx if need_tx else None), g_at, g_m, g_weight, None, None, None


def _orthonormal_rows(steps: int, rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(steps, rows, cols) random matrices with orthonormal rows (or columns when rows > cols)."""
    a = torch.randn(steps, max(rows, cols), min(rows, cols), generator=generator)
    q, _ = torch.linalg.qr(a)  # (steps, max, min) with orthonormal columns
    return q.transpose(1, 2) if rows <= cols else q


class ProgressiveQuantizer(nn.Module):
    """Progressive quantization of (B, C, H, W) maps into (B, L * G) code sequences with one shared codebook.

    Args:
        channels: C, channels of the input map.
        map_size: (h, w) of the small maps (the patch grid); H and W must be multiples of them. G = HW / (hw).
        steps: L, quantization steps per small map.
        codebook_size: K of the shared codebook.
        spatial_dim: s, outputs of the spatial map (h*w -> s); ``None`` keeps h*w.
        channel_dim: c, outputs of the channel map (C -> c); ``None`` keeps C. Code vectors have D = s * c.
        estimator: ``"gumbel"`` (training samples the code from softmax(-distance / temperature) with the
            Gumbel-max trick; gradients: those of the Gumbel-softmax relaxation only, see :meth:`quantize_step`) or ``"ste"``
            (nearest code, straight-through). Evaluation always takes the nearest code. The drawn code only feeds
            the decoder path (and the later steps' residuals); the commitment/codebook terms, the codebook update
            and the returned indices always use the nearest code.
        temperature: softmax temperature over negative squared distances (sampling and entropy terms).
        beta: weight of the commitment term |e_l - sg(e_hat_l)|^2 (mean over steps).
        entropy_weight: lambda_h, weight of sum_l [H(q(z_l | x)) - H(q(z_l))].
        codebook, ``**options``: the settings of the shared codebook, as for
            :class:`~hiervq.quantize.VectorQuantizer` (a :class:`~hiervq.quantize.CodebookConfig` and/or keywords),
            except that ``init`` defaults to ``"kmeans"`` (:data:`PQ_CODEBOOK`) and ``init_after`` and ``cosine``
            are not supported; ``ema_decay=None`` learns the codes through the codebook term |sg(e) - e_hat|^2 and
            the relaxation.

    The codebook is initialised (``init`` data/kmeans) from the transformed vectors e_l of all steps of the first
    training batch, computed on the unquantized chain. Codebook updates (EMA, usage, dead-code reset) use the
    vectors and codes of all steps together, once per forward.
    """

    def __init__(
        self,
        channels: int,
        map_size: int | tuple[int, int] = 8,
        steps: int = 64,
        codebook_size: int = 256,
        spatial_dim: int | None = 16,
        channel_dim: int | None = 4,
        estimator: str = "gumbel",
        temperature: float = 1.0,
        beta: float = 0.25,
        entropy_weight: float = 0.0,
        codebook: CodebookConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        config = CodebookConfig.resolve(codebook, options, type(self).__name__, unsupported=("init_after", "cosine"),
                                        base=PQ_CODEBOOK)
        h, w = (map_size, map_size) if isinstance(map_size, int) else tuple(map_size)
        positions = h * w
        s = spatial_dim or positions
        c = channel_dim or channels
        if estimator not in PQ_ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(PQ_ESTIMATORS)}")
        if steps < 1 or channels < 1 or h < 1 or w < 1:
            raise ValueError("steps, channels and map_size must be >= 1")
        if s > positions or c > channels:
            raise ValueError(f"spatial_dim {s} must be <= h*w = {positions} and channel_dim {c} <= channels {channels}")
        if temperature <= 0 or beta < 0 or entropy_weight < 0:
            raise ValueError("temperature must be > 0, beta and entropy_weight >= 0")
        self.channels = channels
        self.map_size = (h, w)
        self.steps = steps
        self.codebook_size = codebook_size
        self.spatial_dim = s
        self.channel_dim = c
        self.code_dim = s * c
        self.estimator = estimator
        self.temperature = temperature
        self.beta = beta
        self.entropy_weight = entropy_weight
        #: (L, s, h*w) spatial and (L, c, C) channel weights of T_l
        self.spatial = nn.Parameter(_orthonormal_rows(steps, s, positions))
        self.channel = nn.Parameter(_orthonormal_rows(steps, c, channels))
        self.codebook = Codebook(codebook_size, self.code_dim, config)
        self._pinv_cache: tuple | None = None

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, map_size={self.map_size}, steps={self.steps}, K={self.codebook_size}, "
            f"D={self.spatial_dim}x{self.channel_dim}, estimator={self.estimator!r}, temperature={self.temperature}"
        )

    @property
    def bits(self) -> float:
        """Bits per code index, log2 K."""
        return code_bits(self.codebook_size)

    # ------------------------------------------------------------------ layout
    def groups(self, height: int, width: int) -> int:
        """G, the number of small maps quantized in parallel for an (H, W) map."""
        h, w = self.map_size
        if height % h or width % w:
            raise ValueError(f"feature map {height}x{width} is not a multiple of the small-map size {h}x{w}")
        return (height // h) * (width // w)

    def sequence_length(self, height: int, width: int) -> int:
        """L * G, the length of the code sequence for an (H, W) map."""
        return self.steps * self.groups(height, width)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, G, h*w, C): small map g = (i, j) holds x[:, :, i::H/h, j::W/w]."""
        b, c, hh, ww = x.shape
        h, w = self.map_size
        self.groups(hh, ww)
        sh, sw = hh // h, ww // w
        return x.view(b, c, h, sh, w, sw).permute(0, 3, 5, 2, 4, 1).reshape(b, sh * sw, h * w, c)

    def merge(self, parts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Inverse of :meth:`partition`: (B, G, h*w, C) -> (B, C, H, W)."""
        b, _, _, c = parts.shape
        h, w = self.map_size
        sh, sw = height // h, width // w
        return parts.reshape(b, sh, sw, h, w, c).permute(0, 5, 3, 1, 4, 2).reshape(b, c, height, width)

    # ------------------------------------------------------------------ transforms
    def pseudo_inverses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, h*w, s) and (L, C, c): ``torch.linalg.pinv`` of the spatial and channel weights.

        Recomputed (differentiably) on every call while autograd records; otherwise cached until the weights
        change (tracked by their in-place version counters, which optimiser steps and ``load_state_dict`` bump).
        """
        if torch.is_grad_enabled() and (self.spatial.requires_grad or self.channel.requires_grad):
            self._pinv_cache = None
            return torch.linalg.pinv(self.spatial), torch.linalg.pinv(self.channel)
        key = (
            self.spatial._version, self.channel._version, self.spatial.data_ptr(), self.channel.data_ptr(),
            self.spatial.device, self.spatial.dtype,
        )
        if self._pinv_cache is None or self._pinv_cache[0] != key:
            with torch.no_grad():
                self._pinv_cache = (key, torch.linalg.pinv(self.spatial), torch.linalg.pinv(self.channel))
        return self._pinv_cache[1], self._pinv_cache[2]

    def transform(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """T_l: (B, G, h*w, C) -> (B, G, D): E = W_s X W_c^T (s x c), stored channel-major (c x s) and flattened."""
        y = (x @ self.channel[step].t()).transpose(-1, -2)  # (B, G, c, h*w): channel map first, fewer operations
        return (y @ self.spatial[step].t()).reshape(*x.shape[:2], self.code_dim)

    def inverse(self, e: torch.Tensor, step: int, pinvs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """T_l^+: (B, G, D) -> (B, G, h*w, C) with X = W_s^+ E (W_c^+)^T."""
        sp, ch = pinvs
        e = e.reshape(*e.shape[:2], self.channel_dim, self.spatial_dim)
        return (e @ sp[step].t()).transpose(-1, -2) @ ch[step].t()

    def synthesize(self, vectors: torch.Tensor, pinvs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """sum_l T_l^+(vectors[l]): (L', B, G, D) code vectors of the first L' steps -> (B, G, h*w, C)."""
        n, b, g, _ = vectors.shape
        sp, ch = pinvs
        v = vectors.reshape(n, b * g * self.channel_dim, self.spatial_dim)
        y = torch.bmm(v, sp[:n].transpose(1, 2))  # (L', N c, h*w)
        y = y.view(n, b * g, self.channel_dim, -1).permute(1, 3, 0, 2).reshape(b * g, -1, n * self.channel_dim)
        w = ch[:n].permute(0, 2, 1).reshape(n * self.channel_dim, self.channels)  # (L' c, C)
        return (y @ w).view(b, g, -1, self.channels)

    def transform_all(self, x: torch.Tensor) -> torch.Tensor:
        """T_l(x) for every step l at once: (B, G, h*w, C) -> (L, c, B*G, s) (two large matrix products)."""
        b, g, p, c = x.shape
        n, steps, cd, sd = b * g, self.steps, self.channel_dim, self.spatial_dim
        y = x.reshape(n * p, c) @ self.channel.reshape(steps * cd, c).t()  # (N p, L c)
        y = y.view(n, p, steps, cd).permute(2, 3, 0, 1).reshape(steps, cd * n, p)
        return torch.bmm(y, self.spatial.transpose(1, 2)).view(steps, cd, n, sd)

    def cross_operators(self, pinvs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """T_l T_k^+ in factored form: (L, L, s, s) with [l, k] = (W_s,l W_s,k^+)^T and (L, c, L, c) with
        [l, :, k, :] = W_c,l W_c,k^+, so that T_l(T_k^+(E)) = (W_c,l W_c,k^+) E (W_s,l W_s,k^+)^T for E (c, s)."""
        sp, ch = pinvs
        steps, s, c = self.steps, self.spatial_dim, self.channel_dim
        a = (self.spatial.reshape(steps * s, -1) @ sp.transpose(0, 1).reshape(-1, steps * s)).view(steps, s, steps, s)
        m = (self.channel.reshape(steps * c, -1) @ ch.transpose(0, 1).reshape(-1, steps * c)).view(steps, c, steps, c)
        return a.permute(0, 2, 3, 1).contiguous(), m

    # ------------------------------------------------------------------ codebook init
    @torch.no_grad()
    def _initialize(self, x: torch.Tensor, pinvs: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Initialise the codebook from e_l of every step along the unquantized chain F_{l+1} = F_l - T^+ T F_l."""
        rows = []
        residual = x.detach()
        for step in range(self.steps):
            e = self.transform(residual, step)
            rows.append(e.reshape(-1, self.code_dim))
            residual = residual - self.inverse(e, step, pinvs)
        self.codebook.initialize(torch.cat(rows))

    # ------------------------------------------------------------------ the progressive loop
    def quantize_step(
        self, e: torch.Tensor, weight: torch.Tensor, w_sq: torch.Tensor, noise: torch.Tensor | None, track_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One quantization step of the N rows ``e`` (N, D) against the codes ``weight`` (K, D) (``w_sq`` (K,) their
        squared norms); ``noise`` (N, K) Gumbel noise when sampling, else ``None``.

        Returns (out, q, idx, logits): the quantizer output (N, D), the nearest code vectors (N, D), the nearest
        codes (N,) and the logits (N, K) = -(distance - |e|^2) / temperature. Without sampling ``out`` is the nearest
        code with a straight-through gradient to ``e``. With sampling ``out`` is the drawn code
        ``argmax(logits + noise)`` in the forward pass and its gradient is that of the Gumbel-softmax relaxation
        ``softmax(logits + noise) @ weight`` alone (to ``e`` through the logits, and to learned codes): there is
        no straight-through identity to ``e``.
        """
        logits = torch.addmm(w_sq, e, weight.t(), beta=-1.0, alpha=2.0)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        idx = logits.detach().argmax(-1)  # the nearest code
        q = F.embedding(idx, weight)
        if noise is None:
            return (e + (q - e).detach() if track_grad else q), q, idx, logits
        # the decoder path gets a code drawn from softmax(logits); the nearest code q (idx) still serves the
        # commitment/codebook terms and the codebook update: with a flat softmax a sampled code is nearly random,
        # and averaging e over random assignments would pull every code to the mean of e
        noisy = logits + noise
        drawn = F.embedding(noisy.detach().argmax(-1), weight)
        if not track_grad:
            return drawn, q, idx, logits
        relaxed = noisy.softmax(-1) @ weight
        return drawn.detach() + (relaxed - relaxed.detach()), q, idx, logits

    #: run the chain with :class:`_ProgressiveChain` (one (N, L*D) buffer of code vectors, the cross operators as
    #: one matrix, a hand-written backward); ``False`` runs :meth:`_chain_reference` (per-step autograd), the
    #: implementation before issue 29, kept as the reference of the tests and of ``benchmarks/pqvae_step.py``
    fast_chain: bool = True

    def _chain(
        self, x: torch.Tensor, pinvs: tuple[torch.Tensor, torch.Tensor], weight: torch.Tensor, sample: bool,
        track_grad: bool, want_logits: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the L steps on small maps ``x`` (B, G, h*w, C). Returns, stacked over steps: the quantizer outputs
        e_hat_l (L, N, D) (the drawn code when ``sample``, else the nearest; straight-through/relaxed when
        ``track_grad``), e_l (L, N, D), the nearest codes (L, N) and the logits (L, N, K) = -(distance - |e|^2) /
        temperature (``None`` only from the reference path without ``want_logits``)."""
        steps = self.steps
        graph = torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, weight, self.spatial, self.channel))
        if not self.fast_chain or (graph and not track_grad):  # the latter: gradients without the input's (rare)
            outs, es, _, idxs, logits = self._chain_reference(x, pinvs, weight, sample, track_grad, want_logits)
            return torch.stack(outs), torch.stack(es), torch.stack(idxs), (torch.stack(logits) if logits else None)
        n = x.shape[0] * x.shape[1]
        tx = self.transform_all(x)  # (L, c, N, s)
        at = m = None
        if steps > 1:
            at, m = self.cross_operators(pinvs)
        noise = None
        if sample:  # the reference's draws and arithmetic, in place
            noise = torch.rand(steps, n, weight.shape[0], device=x.device, dtype=x.dtype).clamp_(1e-10, 1.0 - 1e-7)
            noise = noise.log_().neg_().log_().neg_()
        if track_grad:
            outs, es, logits, idxs = _ProgressiveChain.apply(tx, at, m, weight, noise, self.temperature, True)
            return outs, es, idxs, logits
        _, outs, es, logits, idxs, _ = _chain_values(tx, at, m, weight, noise, self.temperature, False, False)
        return outs, es, idxs, logits

    def _chain_reference(
        self, x: torch.Tensor, pinvs: tuple[torch.Tensor, torch.Tensor], weight: torch.Tensor, sample: bool,
        track_grad: bool, want_logits: bool = True,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Run the L steps on small maps ``x`` (B, G, h*w, C), step by step under autograd (the reference).

        Works in the transformed domain: e_l = T_l(F_l) = T_l(F) - sum_{k<l} T_l T_k^+ (e_hat_k), with T_l(F) for all
        steps from one product and the cross operators in factored form, so that no step touches the full map.
        Returns per step: the quantizer outputs e_hat_l (N, D) (the drawn code when ``sample``, else the nearest;
        straight-through/relaxed when ``track_grad``), e_l (N, D), the nearest code vectors (N, D), the nearest codes
        (N,) and the logits (N, K) = -(distance - |e|^2) / temperature.
        """
        n = x.shape[0] * x.shape[1]
        steps, s, c, d = self.steps, self.spatial_dim, self.channel_dim, self.code_dim
        tx = self.transform_all(x).unbind(0)  # per step (c, N, s)
        if steps > 1:
            at, m = self.cross_operators(pinvs)
            at, m = at.unbind(0), m.unbind(0)
        w_sq = weight.pow(2).sum(1)
        noise = None
        if sample:
            u = torch.rand(steps, n, weight.shape[0], device=x.device, dtype=x.dtype).clamp_(1e-10, 1.0 - 1e-7)
            noise = -(-u.log()).log()
        outs: list[torch.Tensor] = []  # e_hat_k as (c, N, s), for the cross terms
        flat, es, qs, idxs, logits_all = [], [], [], [], []
        for step in range(steps):
            e = tx[step]
            if step:
                prev = torch.stack(outs)  # (l, c, N, s)
                y = torch.bmm(prev.view(step, c * n, s), at[step][:step])  # E_k (W_s,l W_s,k^+)^T
                corr = m[step][:, :step].reshape(c, step * c) @ y.view(step * c, n * s)  # sum_k W_c,l W_c,k^+ (...)
                e = e - corr.view(c, n, s)
            e = e.transpose(0, 1).reshape(n, d)
            out, q, idx, logits = self.quantize_step(e, weight, w_sq, noise[step] if sample else None, track_grad)
            if step + 1 < steps:
                outs.append(out.view(n, c, s).transpose(0, 1))
            flat.append(out)
            es.append(e)
            qs.append(q)
            idxs.append(idx)
            if want_logits:
                logits_all.append(logits)
        return flat, es, qs, idxs, logits_all

    # ------------------------------------------------------------------ forward / encode / decode
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W).

        Returns :class:`Quantized` with ``quantized`` (B, C, H, W) = F_hat (from the drawn codes when sampling),
        ``indices`` (B, L * G) the nearest codes (step-major),
        ``loss`` = beta * commitment (+ codebook term without EMA) + entropy_weight * entropy,
        ``losses`` (``commitment``, ``codebook``, ``entropy`` = sum_l [H(q(z_l|x)) - H(q(z_l))], ``cond_entropy``
        and ``marg_entropy`` summed over steps, nats) and ``stats`` (``perplexity``, ``used_fraction``, ``counts``,
        ``resets``, ``step_entropy`` (L,) = H(q(z_l | x)) per step in nats, averaged over rows).
        """
        if z.ndim != 4 or z.shape[1] != self.channels:
            raise ValueError(f"progressive quantizer expects (B, {self.channels}, H, W) maps, got {tuple(z.shape)}")
        b, _, height, width = z.shape
        x = self.partition(z)
        g = x.shape[1]
        pinvs = self.pseudo_inverses()
        book = self.codebook
        if self.training and not bool(book.initialized):
            self._initialize(x, pinvs)
        track_grad = torch.is_grad_enabled() and z.requires_grad
        # EMA codes are updated in place after the loop: autograd must see a copy
        weight = book.weight.clone() if (book.uses_ema and track_grad) else book.weight
        sample = self.training and self.estimator == "gumbel"
        outs, e_all, codes, logits = self._chain(x, pinvs, weight, sample, track_grad)

        steps = self.steps
        quantized = self.merge(self.synthesize(outs.reshape(steps, b, g, -1), pinvs), height, width)
        indices = codes.view(steps, b, g).transpose(0, 1).reshape(b, steps * g)  # codes (L, N): the nearest
        q_all = F.embedding(codes, weight)
        commitment = F.mse_loss(e_all, q_all.detach())
        codebook_loss = z.new_zeros(()) if book.uses_ema else F.mse_loss(q_all, e_all.detach())
        h_cond, h_marg = entropy_terms(logits)
        entropy = (h_cond - h_marg).sum()
        loss = self.beta * commitment + codebook_loss
        if self.entropy_weight > 0:
            loss = loss + self.entropy_weight * entropy

        with torch.no_grad():
            counts = torch.bincount(codes.reshape(-1), minlength=book.codebook_size)
            stats = batch_stats(counts)
            stats["step_entropy"] = h_cond.detach()
        resets = 0
        if self.training:
            resets = book.update(e_all.detach().reshape(-1, self.code_dim), codes.reshape(-1))
        stats["resets"] = torch.tensor(resets)
        return Quantized(
            quantized=quantized,
            indices=indices,
            loss=loss,
            losses={
                "commitment": commitment.detach(),
                "codebook": codebook_loss.detach(),
                "entropy": entropy.detach(),
                "cond_entropy": h_cond.sum().detach(),
                "marg_entropy": h_marg.sum().detach(),
            },
            stats=stats,
        )

    @torch.no_grad()
    def encode(self, z: torch.Tensor, with_entropy: bool = False):
        """Code sequence (B, L * G) of ``z`` (B, C, H, W): nearest codes, no gradients, no codebook update.

        ``with_entropy``: also return H(q(z_l | x, z_<l)) per image and position (B, L * G) in nats (entropy of
        softmax(-distance / temperature) of each row).
        """
        b = z.shape[0]
        x = self.partition(z)
        g = x.shape[1]
        _, _, idxs, logits = self._chain(
            x, self.pseudo_inverses(), self.codebook.weight, sample=False, track_grad=False, want_logits=with_entropy
        )
        codes = idxs.view(self.steps, b, g).transpose(0, 1).reshape(b, self.steps * g)
        if not with_entropy:
            return codes
        logp = logits.log_softmax(-1)
        ent = -(logp.exp() * logp).sum(-1)  # (L, N)
        return codes, ent.view(self.steps, b, g).transpose(0, 1).reshape(b, self.steps * g)

    def decode(
        self, indices: torch.Tensor, height: int, width: int, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """F_hat (B, C, H, W) from a code sequence or any prefix of it, (B, n) with n <= L * G.

        Missing positions (beyond the prefix, or where ``keep`` (n,) bool is False) contribute nothing. With the
        full sequence this equals the eval-mode forward output exactly.
        """
        g = self.groups(height, width)
        total = self.steps * g
        if indices.ndim != 2 or indices.shape[1] > total:
            raise ValueError(f"expected a (B, n) code sequence with n <= {total}, got {tuple(indices.shape)}")
        b, n = indices.shape
        steps = -(-n // g)  # steps touched by the prefix
        full = indices.new_zeros(b, steps * g)
        full[:, :n] = indices
        mask = torch.zeros(steps * g, dtype=torch.bool, device=indices.device)
        mask[:n] = True if keep is None else keep.to(torch.bool).to(indices.device)
        vectors = self.codebook.lookup(full).view(b, steps, g, self.code_dim).transpose(0, 1)
        vectors = torch.where(mask.view(steps, 1, g, 1), vectors, torch.zeros((), dtype=vectors.dtype))
        pinvs = self.pseudo_inverses()
        if steps == 0:
            parts = vectors.new_zeros(b, g, self.map_size[0] * self.map_size[1], self.channels)
        else:
            parts = self.synthesize(vectors.contiguous(), pinvs)
        return self.merge(parts, height, width)
