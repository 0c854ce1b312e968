"""Priors for hierarchical VQ-VAEs (and single-level VQ-VAEs): one gated PixelCNN per level.

The top level's prior is unconditional in codes; the prior of every level below is conditioned on the full code
map of the level directly above (VQ-VAE-2). Any prior may also be class-conditional. Sampling goes top-down:
sample the top map, then each lower map given the one above, then ``model.decode``.

A residual level (``depth`` L > 1 codes per position, (B, H, W, L)) gets a PixelCNN with a depth head: its codes
are modelled, sampled and coded in the order (position in raster order, then depth, coarse to fine), and its bits
per image count all H * W * L codes. A multi-scale level's (B, T) tokens have no prior yet: the level, and a level
whose prior would be conditioned on it, are refused with one line (:func:`check_level`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import HierVQError
from .kinds import PriorKind, config_with_derived, register_prior_kind, takes_labels
from .pixelcnn import PixelCNN, PixelCNNConfig


def check_level(model, level: int) -> None:
    """Refuse a level whose codes (or whose level above, which its prior is conditioned on) the PixelCNN priors
    cannot model: a multi-scale level's tokens."""
    levels = model.levels
    for lv in (level, level + 1):  # the level, and the level above that its prior is conditioned on
        if lv < len(levels) and levels[lv].tokens is not None:
            subject = f"level {level}" if lv == level else f"level {level}: level {lv} (its prior's condition)"
            raise HierVQError(f"{subject} is quantized by kind multiscale; the priors (and compression) model one "
                              "map of codes per level and do not take its per-scale tokens yet")


@register_prior_kind("hvqvae", "vqvae")
class HierarchicalPriorKind(PriorKind):
    """One :class:`PixelCNN` per level of a ``HierarchicalVQVAE``; level 0 = bottom, sampled last."""

    name = "pixelcnn"
    any_grid = True

    def prior_levels(self, model) -> list[int]:
        return list(reversed(range(len(model.levels))))

    def parse_level(self, model, text: str | int | None) -> int:
        n = len(model.levels)
        if text in ("top", "bottom"):
            return n - 1 if text == "top" else 0
        if text is None and n > 1:
            raise HierVQError(f"this model has {n} levels; choose one with --level top|bottom|0..{n - 1}")
        return super().parse_level(model, text)

    def level_names(self, model) -> str:
        return f"top, bottom or 0..{len(model.levels) - 1}"

    def level_info(self, model, level: int) -> dict:
        check_level(model, level)
        info = model.levels[level]
        return {"grid": list(info.grid), "codebook_size": info.codebook_size, "depth": info.depth,
                "codes_per_image": info.codes_per_image}

    def build_prior(self, model, level: int, params: dict, num_classes: int | None, where: str) -> nn.Module:
        check_level(model, level)
        levels = model.levels
        above = levels[level + 1] if level + 1 < len(levels) else None
        derived = {
            "codebook_size": levels[level].codebook_size,
            "cond_codebook_size": above.codebook_size if above else None,
            "num_classes": num_classes,
            "depth": levels[level].depth,
            "cond_depth": above.depth if above else 1,
        }
        return PixelCNN(config_with_derived(PixelCNNConfig, params, derived, where))

    @staticmethod
    def _cond(codes: list[torch.Tensor], level: int) -> torch.Tensor | None:
        return codes[level + 1] if level + 1 < len(codes) else None

    def nll(self, prior, codes, labels, level):
        return prior.nll(codes[level], self._cond(codes, level), labels if takes_labels(prior) else None)

    def logits(self, prior, codes, labels, level):
        logits = prior(codes[level], self._cond(codes, level), labels if takes_labels(prior) else None)
        return logits.flatten(2).transpose(1, 2)  # (B, K, H, W[, L]) -> (B, H*W[*L], K): raster order, then depth

    @torch.no_grad()
    def walk(self, model, priors, n, labels, choose, grids=None):
        levels = model.levels
        missing = [lv for lv in range(len(levels)) if lv not in priors]
        if missing:
            raise HierVQError(f"no prior for level(s) {', '.join(map(str, missing))}; train them with `hiervq prior`")
        codes: list[torch.Tensor | None] = [None] * len(levels)
        for level in reversed(range(len(levels))):
            check_level(model, level)
            prior = priors[level]
            cond = codes[level + 1] if level + 1 < len(levels) else None
            if (cond is None) != (getattr(prior, "cond_net", None) is None):
                raise HierVQError(f"the level-{level} prior does not match this model's hierarchy")
            grid = tuple(grids[level] if grids else levels[level].grid)[:2]  # a codec's grids end in L (residual)
            if getattr(prior.config, "depth", 1) != levels[level].depth:
                raise HierVQError(f"the level-{level} prior models {prior.config.depth} codes per position, this "
                                  f"model's level has {levels[level].depth}")
            codes[level] = prior.walk(
                n, grid, cond, labels if takes_labels(prior) else None, lambda logits, lv=level: choose(lv, logits)
            )
        return codes
