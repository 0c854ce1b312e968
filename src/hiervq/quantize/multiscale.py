"""``MultiScaleVQ``: residual quantization over a schedule of growing resolutions (VAR, Tian et al., 2024).

A (B, C, H, W) map is quantized coarse to fine: at scale k the remaining residual is area-downsampled to
h_k x w_k, each position takes its nearest code of one shared codebook, and the code map is upsampled back to
H x W, passed through a small convolution and subtracted from the residual. The codes of a scale are a
(B, h_k, w_k) map; the first l scales decode on their own to a coarse version of the map (prefix decoding),
which is what VAR's next-scale prediction samples scale by scale.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist
from .codebook import Codebook, CodebookConfig
from .common import batch_stats, code_bits, perplexity, projections
from .estimators import rotation_trick, straight_through
from .vector import Quantized

MULTISCALE_ESTIMATORS = ("ste", "rotation")
UPSAMPLE_MODES = ("bicubic", "bilinear", "nearest")


def check_scales(scales) -> list[tuple[int, int]]:
    """``scales`` (a list of sides ``s`` or ``[h, w]`` pairs) as (h, w) pairs, or ``ValueError``.

    The schedule must be non-empty and grow (never shrink) in both directions.
    """
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty list of sides or [h, w] pairs, got {scales!r}")
    out = []
    for s in scales:
        pair = (s, s) if not hasattr(s, "__len__") else tuple(s)
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
            raise ValueError(f"a scale is a side >= 1 or an [h, w] pair of them, got {s!r} in {list(scales)!r}")
        if out and (pair[0] < out[-1][0] or pair[1] < out[-1][1]):
            raise ValueError(f"scales must not shrink from one to the next, got {list(scales)!r}")
        out.append((int(pair[0]), int(pair[1])))
    return out


def scale_offsets(scales) -> list[int]:
    """Where each scale's tokens start in the (B, T) layout, and T: [0, h_0 w_0, h_0 w_0 + h_1 w_1, ..., T] for
    ``scales`` as (h, w) pairs (:func:`check_scales`), coarse first."""
    offsets = [0]
    for h, w in scales:
        offsets.append(offsets[-1] + h * w)
    return offsets


def check_multiscale_options(scales, convs: int = 4, conv_mix: float = 0.5, upsample: str = "bicubic",
                             estimator: str = "ste", beta: float = 0.25) -> list[tuple[int, int]]:
    """Raise ``ValueError`` naming the first setting of a :class:`MultiScaleVQ` (besides its codebook's, see
    :meth:`~hiervq.quantize.CodebookConfig.validate`) that is out of range; the scales as (h, w) pairs."""
    pairs = check_scales(scales)
    if isinstance(convs, bool) or not isinstance(convs, int) or convs < 0:
        raise ValueError(f"convs must be an integer >= 0, got {convs!r}")
    if not 0.0 <= conv_mix <= 1.0:
        raise ValueError(f"conv_mix must be in [0, 1], got {conv_mix}")
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
    if estimator not in MULTISCALE_ESTIMATORS:
        raise ValueError(f"multiscale estimator must be one of {', '.join(MULTISCALE_ESTIMATORS)}, got {estimator!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return pairs


class ScaleConv(nn.Module):
    """The convolution after upsampling one scale: ``(1 - mix) x + mix conv3x3(x)`` (VAR's Phi).

    The convolution starts as the identity (a Dirac kernel, zero bias), so an untrained layer adds the upsampled
    codes unchanged and the chain starts as plain multi-scale residual quantization.
    """

    def __init__(self, dim: int, mix: float) -> None:
        super().__init__()
        self.mix = mix
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        with torch.no_grad():
            nn.init.dirac_(self.conv.weight)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lerp(x, self.conv(x), self.mix)


class MultiScaleVQ(nn.Module):
    """Multi-scale residual VQ of (B, C, H, W) maps with one shared codebook, coarse scales first.

    Args:
        dim: channels of the input (C).
        codebook_size: K, the codes of the one shared codebook.
        scales: the resolution schedule, sides ``s`` (an s x s scale) or ``[h, w]`` pairs, growing, e.g.
            ``[1, 2, 3, 4, 6, 8]`` for 8 x 8 maps. The input must be the size of the last scale.
        code_dim: if set and different from ``dim``, features are projected to it (and back) by learned linear
            maps (a 1x1 convolution), around the whole chain.
        convs: the number of distinct :class:`ScaleConv` s after upsampling (VAR shares 4 among its scales): scale
            k of S uses conv ``round(k (convs - 1) / (S - 1))``; at most S are built; 0: no convolution.
        conv_mix: the weight of the convolution in ``(1 - mix) x + mix conv(x)`` (VAR's 0.5).
        upsample: how a scale's code map is brought to H x W: ``"bicubic"`` (VAR), ``"bilinear"`` or ``"nearest"``.
        estimator: ``"ste"`` or ``"rotation"``, applied once from the input to the sum of the scales.
        beta: as for :class:`~hiervq.quantize.VectorQuantizer`.
        codebook, ``**options``: the settings of the one codebook, as for :class:`~hiervq.quantize.VectorQuantizer`
            (a :class:`~hiervq.quantize.CodebookConfig` and/or keywords); ``init_after`` and ``cosine`` are not
            supported.

    Rules:
        * chain: e the (projected) input, r_0 = sg(e); at scale k: d_k = area-downsample(r_k) to h_k x w_k (none
          at H x W), c_k = nearest codes of d_k's positions, u_k = conv_k(upsample(lookup(c_k))) (none at H x W),
          r_{k+1} = r_k - u_k; the output is f = u_0 + ... + u_{S-1} (summed in that order) with the estimator's
          gradient from e;
        * loss = beta |e - sg(f)|^2 (commitment, full resolution) + |f - sg(e)|^2 (the codebook term, which trains
          the convolutions and learned codes; it is 0, and not computed, with EMA codes and ``convs=0``);
        * codebook: data/k-means initialisation from the full-resolution rows of e in the first training forward;
          one EMA / usage-window / dead-code update per forward with the rows d_k and codes c_k of all scales
          together (re-seeded codes come from those rows); under torch.distributed every statistic is all-reduced
          and every decision broadcast, as for :class:`~hiervq.quantize.Codebook`;
        * ``indices`` (in :class:`~hiervq.quantize.Quantized`) are the T = sum h_k w_k codes of an input in one
          (B, T) tensor, scale by scale, each scale row-major (VAR's token order); :meth:`split_codes` and
          :meth:`flatten_codes` convert between it and the list of (B, h_k, w_k) maps that :meth:`encode` returns;
        * ``decode(codes[:l])`` for any l in 1..S (a list of the first l maps, or the first sum_{k<l} h_k w_k
          columns of the (B, T) tensor) is project_out(u_0 + ... + u_{l-1}); for l = S it equals the eval forward
          output (under ``no_grad``) exactly;
        * statistics: ``perplexity``, ``used_fraction``, ``counts`` (K,) over the codes of all scales (pooled),
          ``resets``, and ``scale_perplexity`` / ``scale_used_fraction`` (S,) per scale; global under
          torch.distributed in training mode, as for VectorQuantizer.

    ``bits`` = T log2 K per map (the code space has K^T points), whatever the map's channels.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        scales,
        code_dim: int | None = None,
        convs: int = 4,
        conv_mix: float = 0.5,
        upsample: str = "bicubic",
        estimator: str = "ste",
        beta: float = 0.25,
        codebook: CodebookConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.scales = check_multiscale_options(scales, convs, conv_mix, upsample, estimator, beta)
        config = CodebookConfig.resolve(codebook, options, type(self).__name__, unsupported=("init_after", "cosine"))
        self.dim = dim
        self.code_dim = code_dim or dim
        self.codebook_size = codebook_size
        self.estimator = estimator
        self.upsample = upsample
        self.beta = beta
        self.bypass = False
        self.project_in, self.project_out = projections(dim, self.code_dim)
        self.codebook = Codebook(codebook_size, self.code_dim, config)
        n = len(self.scales)
        self.convs = nn.ModuleList(ScaleConv(self.code_dim, conv_mix) for _ in range(min(convs, n)))
        m = len(self.convs)
        # the conv of each scale (-1: none); scale k of n uses conv round(k (m - 1) / (n - 1))
        self._conv_of = [-1] * n if m == 0 else [round(k * (m - 1) / max(n - 1, 1)) for k in range(n)]
        self._offsets = scale_offsets(self.scales)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, code_dim={self.code_dim}, K={self.codebook_size}, scales={self.scales}, "
                f"upsample={self.upsample!r}, estimator={self.estimator!r}, beta={self.beta}")

    # ------------------------------------------------------------------ description
    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the maps this quantizer takes: the last scale."""
        return self.scales[-1]

    @property
    def num_tokens(self) -> int:
        """T = sum h_k w_k, the codes of one map."""
        return self._offsets[-1]

    depth = 1  # codes per token
    num_books = 1  # one shared codebook of K x code_dim

    @property
    def bits(self) -> float:
        """Bits per map, T log2 K."""
        return code_bits(self.codebook_size, self.num_tokens)

    # ------------------------------------------------------------------ code layouts
    def split_codes(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """(B, T_l) tokens of the first l scales (T_l = sum_{k<l} h_k w_k) -> the list of l (B, h_k, w_k) maps."""
        if tokens.ndim != 2 or tokens.shape[1] not in self._offsets[1:]:
            raise ValueError(f"multiscale tokens must be (B, T_l) with T_l one of {self._offsets[1:]} (the first l "
                             f"scales of {self.scales}), got {tuple(tokens.shape)}")
        n = self._offsets.index(tokens.shape[1])
        return [tokens[:, self._offsets[k] : self._offsets[k + 1]].reshape(-1, h, w)
                for k, (h, w) in enumerate(self.scales[:n])]

    def flatten_codes(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The list of the first l (B, h_k, w_k) maps -> (B, T_l) tokens, scale by scale, row-major."""
        self._check_maps(codes)
        return torch.cat([c.reshape(c.shape[0], -1) for c in codes], 1)

    def _check_maps(self, codes) -> None:
        if not isinstance(codes, (list, tuple)) or not 1 <= len(codes) <= len(self.scales):
            raise ValueError(f"multiscale codes are a list of 1..{len(self.scales)} maps (B, h_k, w_k), got "
                             f"{type(codes).__name__}")
        for k, (c, (h, w)) in enumerate(zip(codes, self.scales)):
            if c.ndim != 3 or tuple(c.shape[1:]) != (h, w) or c.shape[0] != codes[0].shape[0]:
                raise ValueError(f"scale {k} codes must be (B, {h}, {w}), got {tuple(c.shape)}")

    # ------------------------------------------------------------------ the chain
    def _down(self, r: torch.Tensor, k: int) -> torch.Tensor:
        """The residual ``r`` (B, D, H, W) at scale k (area average; itself at full size)."""
        size = self.scales[k]
        return r if size == tuple(r.shape[-2:]) else F.interpolate(r, size=size, mode="area")

    def _up(self, q: torch.Tensor, k: int, size: tuple[int, int]) -> torch.Tensor:
        """Scale k's code map ``q`` (B, D, h_k, w_k) at the full ``size``, through its convolution."""
        if tuple(q.shape[-2:]) != size:
            q = F.interpolate(q, size=size, mode=self.upsample, **({} if self.upsample == "nearest" else
                                                                   {"align_corners": False}))
        c = self._conv_of[k]
        return q if c < 0 else self.convs[c](q)

    def _project_in(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"MultiScaleVQ expects (B, {self.dim}, H, W) maps, got {tuple(z.shape)}")
        if tuple(z.shape[-2:]) != self.size:
            raise ValueError(f"MultiScaleVQ with scales {self.scales} takes {self.size[0]}x{self.size[1]} maps (its "
                             f"last scale), got {z.shape[-2]}x{z.shape[-1]}")
        if isinstance(self.project_in, nn.Identity):
            return z
        return self.project_in(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def _project_out(self, f: torch.Tensor) -> torch.Tensor:
        if isinstance(self.project_out, nn.Identity):
            return f
        return self.project_out(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B h w, D) rows."""
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    @staticmethod
    def _map(rows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """(B h w, D) rows -> (B, D, h, w)."""
        return rows.view(b, h, w, -1).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ forward / encode / decode
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W); see the class docstring."""
        e = self._project_in(z)
        b, d, hh, ww = e.shape
        book = self.codebook
        if self.training and not bool(book.initialized):
            book.initialize(self._rows(e.detach()))
        learned = not book.uses_ema
        residual = e.detach()
        f = None
        rows, codes = [], []
        for k, (h, w) in enumerate(self.scales):
            down = self._rows(self._down(residual, k))
            idx = book.nearest(down)
            q = book.lookup(idx, check=False)
            u = self._up(self._map(q, b, h, w), k, (hh, ww))
            f = u if f is None else f + u
            if k + 1 < len(self.scales):
                residual = residual - u.detach()
            rows.append(down)
            codes.append(idx)
        flat = torch.cat(codes)
        resets = 0
        if self.training:
            resets = book.update(torch.cat(rows), flat)

        commitment = F.mse_loss(e, f.detach())
        loss = self.beta * commitment
        if learned or len(self.convs):
            codebook_loss = F.mse_loss(f, e.detach())
            loss = loss + codebook_loss
        else:
            codebook_loss = e.new_zeros(())
        f = f.detach()
        track_grad = torch.is_grad_enabled() and e.requires_grad
        if track_grad and not self.bypass:
            e_last, f_last = e.permute(0, 2, 3, 1), f.permute(0, 2, 3, 1)
            est = rotation_trick if self.estimator == "rotation" else straight_through
            f = est(e_last, f_last).permute(0, 3, 1, 2)
        out = self._project_out(e if self.bypass else f)
        tokens = torch.cat([c.view(b, -1) for c in codes], 1)
        return Quantized(
            quantized=out,
            indices=tokens,
            loss=loss,
            losses={"commitment": commitment.detach(), "codebook": codebook_loss.detach()},
            stats=self._stats(codes, resets),
        )

    @torch.no_grad()
    def _stats(self, codes: list[torch.Tensor], resets: int) -> dict[str, torch.Tensor]:
        """Pooled and per-scale usage of the scales' codes; counts summed over ranks in training (one collective)."""
        k = self.codebook_size
        per_scale = torch.stack([torch.bincount(c, minlength=k) for c in codes])
        if self.training:
            qdist.all_reduce_sum(per_scale)
        counts = per_scale.sum(0)
        return {
            **batch_stats(counts, resets),
            "scale_perplexity": torch.stack([perplexity(c).float() for c in per_scale]),
            "scale_used_fraction": (per_scale > 0).float().mean(1),
        }

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Codes per scale of ``z`` (B, C, H, W), coarse first: a list of S maps (B, h_k, w_k) (no gradients, no
        codebook update). :meth:`flatten_codes` turns them into the (B, T) tokens of the forward's ``indices``."""
        e = self._project_in(z)
        b, _, hh, ww = e.shape
        book = self.codebook
        residual = e
        codes = []
        for k, (h, w) in enumerate(self.scales):
            idx = book.nearest(self._rows(self._down(residual, k)))
            codes.append(idx.view(b, h, w))
            if k + 1 < len(self.scales):
                residual = residual - self._up(self._map(book.lookup(idx, check=False), b, h, w), k, (hh, ww))
        return codes

    def decode(self, codes) -> torch.Tensor:
        """Features (B, C, H, W) from the codes of the first l scales (1 <= l <= S): a list of l (B, h_k, w_k)
        maps, or (B, T_l) tokens (see :meth:`split_codes`).

        project_out of the sum of the first l scales' upsampled, convolved code maps; for l = S it equals the
        eval-mode forward output (under ``no_grad``) exactly.
        """
        if isinstance(codes, torch.Tensor):
            codes = self.split_codes(codes)
        self._check_maps(codes)
        size = self.size
        f = None
        for k, c in enumerate(codes):
            b, h, w = c.shape
            q = self.codebook.lookup(c.reshape(-1))
            u = self._up(self._map(q, b, h, w), k, size)
            f = u if f is None else f + u
        return self._project_out(f)
