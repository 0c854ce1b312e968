"""Priors for hierarchical VQ-VAEs (and single-level VQ-VAEs): one prior per level, conditioned on the level above.

The top level's prior is unconditional in codes; the prior of every level below is conditioned on the full codes
of the level directly above (VQ-VAE-2). Any prior may also be class-conditional. Sampling goes top-down: sample
the top level, then each lower level given the one above, then ``model.decode``.

The prior of a level follows from its code layout (:func:`prior_class`, the one place that decides it):

* a map (B, H, W) -- vq, fsq, lfq -- gets a :class:`~hiervq.priors.CheckerboardPrior` (two network passes per
  level when decoding, whatever the grid: the anchors, then the rest), or with ``arch: pixelcnn`` (the prior's
  ``model:`` keys; implied by PixelCNN-only keys such as ``layers``) a gated :class:`~hiervq.priors.PixelCNN`
  (raster order: about 6 % fewer bits and better samples, but one network pass per code when decoding);
* a residual level's (B, H, W, L) gets a PixelCNN with a depth head: its codes are modelled, sampled and coded in
  the order (position in raster order, then depth, coarse to fine), and its bits per image count all H * W * L;
* a multi-scale level's (B, T) tokens get a :class:`~hiervq.priors.NextScalePrior` (VAR): scale by scale, all
  tokens of a scale predicted at once from the earlier scales, one forward per scale; its codes are coded in the
  tokens' order (scale, then row-major) and its bits per image count all T tokens.

Whatever the level above is, its codes condition the level below through the layout-aware embedding of
:mod:`hiervq.priors.embed` (a multi-scale level above: the sum of its scales' embedded maps at its last grid).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import HierVQError
from .checkerboard import CheckerboardPrior
from .kinds import PriorKind, config_with_derived, register_prior_kind, takes_labels
from .nextscale import NextScalePrior
from .pixelcnn import PixelCNN

#: the architectures a code map's prior may have (``model.arch``)
MAP_ARCHS = {"pixelcnn": PixelCNN, "checkerboard": CheckerboardPrior}
#: the default for a map of one code per position: decoded in 2 network passes per level at any size, for about
#: 6 % more bits than the PixelCNN (benchmarks/results/codec_parallel_prior.json); a residual level's default is
#: the PixelCNN (the only prior with a depth head)
DEFAULT_ARCH = "checkerboard"
#: PixelCNN keys the checkerboard prior has no use for: without ``arch`` they select the PixelCNN; ignored with
#: ``arch: checkerboard``, so that ``--set model.arch=checkerboard`` works on a run whose ``priors.model`` is
#: written for the PixelCNN
PIXELCNN_ONLY_KEYS = ("layers", "kernel_size", "dropout")


def _pairs(scales) -> list[list[int]] | None:
    return None if scales is None else [list(p) for p in scales]


def prior_class(info, arch: str | None = None, where: str = "model") -> type[nn.Module]:
    """The prior of a level with :class:`~hiervq.models.LevelInfo` ``info``: :class:`NextScalePrior` for a
    multi-scale level's tokens, for a code map the ``arch`` of :data:`MAP_ARCHS` (default :data:`DEFAULT_ARCH`,
    :class:`CheckerboardPrior`, for maps of one code per position; :class:`PixelCNN` with a depth head for a
    residual level). An unknown or unfitting ``arch`` is a :class:`HierVQError` naming ``where``."""
    if arch is not None and arch not in MAP_ARCHS:
        raise HierVQError(f"{where}: arch must be one of {', '.join(MAP_ARCHS)}, got {arch!r}")
    if info.scales is not None:
        if arch not in (None, "pixelcnn"):
            raise HierVQError(f"{where}: arch {arch} models a code map; a multi-scale level has its next-scale prior")
        return NextScalePrior
    cls = MAP_ARCHS[arch or (DEFAULT_ARCH if info.depth == 1 else "pixelcnn")]
    if cls is CheckerboardPrior and info.depth > 1:
        raise HierVQError(f"{where}: arch checkerboard models one code per position; this level has {info.depth} "
                          "(residual): use arch pixelcnn")
    return cls


def _derived(levels, level: int, num_classes: int | None) -> dict:
    """The prior config keys of ``level`` that follow from the model: K, the level's layout, the level above's."""
    info = levels[level]
    above = levels[level + 1] if level + 1 < len(levels) else None
    derived = {
        "codebook_size": info.codebook_size,
        "num_classes": num_classes,
        "cond_codebook_size": above.codebook_size if above else None,
        "cond_depth": above.depth if above else 1,
        "cond_scales": _pairs(above.scales) if above else None,
    }
    if info.scales is not None:
        return {**derived, "scales": _pairs(info.scales)}
    return {**derived, "depth": info.depth}


@register_prior_kind("hvqvae", "vqvae")
class HierarchicalPriorKind(PriorKind):
    """One prior per level of a ``HierarchicalVQVAE`` (:func:`prior_class`); level 0 = bottom, sampled last."""

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
        """As :meth:`PriorKind.level_info`; a multi-scale level's ``grid`` is (T,), its tokens per image (what the
        codec's header records), and ``scales`` its schedule."""
        info = model.levels[level]
        out = {"grid": list(info.grid) if info.scales is None else [info.tokens], "codebook_size": info.codebook_size,
               "depth": info.depth, "codes_per_image": info.codes_per_image}
        if info.scales is not None:
            out["scales"] = _pairs(info.scales)
        return out

    def build_prior(self, model, level: int, params: dict, num_classes: int | None, where: str) -> nn.Module:
        params = dict(params)
        arch = params.pop("arch", None)
        if arch is not None and not isinstance(arch, str):
            raise HierVQError(f"{where}: arch must be one of {', '.join(MAP_ARCHS)}, got {arch!r}")
        if arch is None and any(k in params for k in (*PIXELCNN_ONLY_KEYS, *PixelCNN.Config.RENAMED_KEYS)):
            arch = "pixelcnn"  # a config written for the PixelCNN (before checkerboard became the default) keeps it
        cls = prior_class(model.levels[level], arch, where)
        if cls is CheckerboardPrior:
            params = {k: v for k, v in params.items() if k not in PIXELCNN_ONLY_KEYS}
        return cls(config_with_derived(cls.Config, params, _derived(model.levels, level, num_classes), where))

    @staticmethod
    def _cond(codes: list[torch.Tensor], level: int) -> torch.Tensor | None:
        return codes[level + 1] if level + 1 < len(codes) else None

    def nll(self, prior, codes, labels, level):
        return prior.nll(codes[level], self._cond(codes, level), labels if takes_labels(prior) else None)

    def logits(self, prior, codes, labels, level):
        logits = prior(codes[level], self._cond(codes, level), labels if takes_labels(prior) else None)
        if isinstance(prior, NextScalePrior):
            return logits  # (B, T, K): scale by scale, row-major
        logits = logits.flatten(2).transpose(1, 2)  # (B, K, H, W[, L]) -> (B, H*W[*L], K): raster order, then depth
        if isinstance(prior, CheckerboardPrior):  # the anchors first, then the rest
            return logits[:, prior.order(tuple(codes[level].shape[1:3]), logits.device)]
        return logits

    def symbols(self, prior, codes, level):
        b = codes[level].shape[0]
        flat = codes[level].reshape(b, -1)
        if isinstance(prior, CheckerboardPrior):
            return flat[:, prior.order(tuple(codes[level].shape[1:3]), flat.device)]
        return flat

    def _check_prior(self, model, level: int, prior: nn.Module) -> None:
        """Refuse a prior that was not built for ``level`` of this model (kind, layout, K, level above)."""
        levels = model.levels
        info = levels[level]
        allowed = [NextScalePrior] if info.scales is not None else [PixelCNN] + ([CheckerboardPrior] if info.depth == 1 else [])
        if not isinstance(prior, tuple(allowed)):
            raise HierVQError(f"the level-{level} prior is a {type(prior).__name__}; this model's level {level} needs "
                              f"a {' or a '.join(c.__name__ for c in allowed)} (retrain it with `hiervq prior`)")
        want = _derived(levels, level, prior.config.num_classes)
        have = {k: getattr(prior.config, k) for k in want}
        bad = sorted(k for k in want if have[k] != want[k])
        if bad:
            raise HierVQError(f"the level-{level} prior does not match this model's hierarchy ("
                              + ", ".join(f"{k} {have[k]} != {want[k]}" for k in bad) + ")")

    @torch.no_grad()
    def walk(self, model, priors, n, labels, choose, grids=None):
        levels = model.levels
        missing = [lv for lv in range(len(levels)) if lv not in priors]
        if missing:
            raise HierVQError(f"no prior for level(s) {', '.join(map(str, missing))}; train them with `hiervq prior`")
        codes: list[torch.Tensor | None] = [None] * len(levels)
        for level in reversed(range(len(levels))):
            prior = priors[level]
            self._check_prior(model, level, prior)
            cond = codes[level + 1] if level + 1 < len(levels) else None
            lab = labels if takes_labels(prior) else None
            pick = lambda logits, lv=level: choose(lv, logits)  # noqa: E731
            if isinstance(prior, NextScalePrior):
                if grids and tuple(grids[level]) != (levels[level].tokens,):
                    raise HierVQError(f"level {level} holds {levels[level].tokens} multi-scale tokens per image, not "
                                      f"{tuple(grids[level])}")
                codes[level] = prior.walk(n, cond, lab, pick)
            else:
                grid = tuple(grids[level] if grids else levels[level].grid)[:2]  # a codec's grids end in L (residual)
                codes[level] = prior.walk(n, grid, cond, lab, pick)
        return codes
