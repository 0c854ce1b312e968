"""Embedding a level's codes as a feature map, for every code layout a level can have.

A prior reads codes in three layouts (:attr:`hiervq.models.LevelInfo`): a map (B, h, w) of one code per position,
a residual level's (B, h, w, L) (L codes per position) and a multi-scale level's (B, T) tokens (its scales'
(h_s, w_s) maps, coarse first, each row-major). :func:`embed_codes` turns each into one (B, h, w, C) map at the
level's grid (for tokens: the last scale's), with one table of K rows per depth or per scale:

* (B, h, w): the code's embedding;
* (B, h, w, L): the sum of the L codes' embeddings (table d for depth d);
* (B, T): the sum over the scales of each scale's embedded map (table s for scale s), upsampled bilinearly to the
  last scale's grid (:func:`scale_maps`) -- the learned analogue of how the quantizer decodes its tokens (the sum
  of the scales' upsampled code vectors).

The PixelCNN embeds the codes it models and the code map of the level above with it; the next-scale prior
(:mod:`hiervq.priors.nextscale`) the level above and its own tokens' prefixes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quantize.multiscale import check_scales, scale_offsets


def scale_maps(table: nn.Embedding, tokens: torch.Tensor, k: int, scales, size: tuple[int, int]) -> list[torch.Tensor]:
    """The embedded maps of the scales whose tokens ``tokens`` (B, T_l) hold (the first l scales of ``scales``,
    (h, w) pairs), each (B, C, H, W) at ``size``: scale s's (B, h_s, w_s) map embedded with rows s K..s K + K - 1
    of ``table`` and upsampled bilinearly (no upsampling at ``size`` itself)."""
    out, start = [], 0
    b = tokens.shape[0]
    for s, (h, w) in enumerate(scales):
        if start == tokens.shape[1]:
            break
        e = table(tokens[:, start : start + h * w] + s * k).view(b, h, w, -1).permute(0, 3, 1, 2)
        if (h, w) != tuple(size):
            e = F.interpolate(e, size=tuple(size), mode="bilinear", align_corners=False)
        out.append(e)
        start += h * w
    return out


def embed_codes(table: nn.Embedding, codes: torch.Tensor, k: int, depth: int = 1, scales=None) -> torch.Tensor:
    """(B, h, w, C): codes (B, h, w) embedded; (B, h, w, ``depth``) embedded per depth and summed; or, with
    ``scales`` ((h, w) pairs), (B, T) tokens embedded per scale and summed at the last scale's grid (see the
    module docstring). ``table`` holds K rows per depth (per scale)."""
    if scales is not None:
        return sum(scale_maps(table, codes, k, scales, scales[-1])).permute(0, 2, 3, 1)
    if depth == 1:
        return table(codes)
    return table(codes + k * torch.arange(depth, device=codes.device)).sum(-2)


def check_layout(depth: int = 1, scales=None) -> None:
    """Raise ``ValueError`` unless ``depth`` and ``scales`` describe one layout: ``scales`` a valid schedule
    (:func:`~hiervq.quantize.multiscale.check_scales`) only with ``depth`` 1 (a level is residual or multi-scale)."""
    if scales is not None:
        check_scales(scales)
        if depth != 1:
            raise ValueError("cond_scales and cond_depth > 1 exclude each other (a level is one or the other)")


def table_rows(depth: int = 1, scales=None) -> int:
    """How many tables of K rows :func:`embed_codes` needs for a layout: one per scale, else one per depth."""
    return len(scales) if scales is not None else depth


def code_layout(depth: int = 1, scales=None) -> str:
    """The shape a level's codes must have, for messages: ``(B, h, w)``, ``(B, h, w, L)`` or ``(B, T)``."""
    if scales is not None:
        return f"(B, {scale_offsets(scales)[-1]})"
    return "(B, h, w)" if depth == 1 else f"(B, h, w, {depth})"


def has_layout(codes: torch.Tensor, depth: int = 1, scales=None) -> bool:
    """Whether ``codes`` have the layout :func:`code_layout` names."""
    if scales is not None:
        return codes.ndim == 2 and codes.shape[1] == scale_offsets(scales)[-1]
    return codes.ndim == 3 + (depth > 1) and (depth == 1 or codes.shape[-1] == depth)
