"""Capacity matching: the single-level VQ-VAE with the same budgets as a hierarchical one.

For a hierarchy with levels l (bottom grid Hb x Wb, grids H_l x W_l, C_l channels at the quantizer inputs,
codebooks of K_l codes of dimension D_l) the matched single-level model keeps the bottom grid and

* the continuous budget: Hb*Wb*Cs = sum_l H_l*W_l*C_l, which derives Cs, and
* the discrete budget: Ks*Ds = sum_l K_l*D_l, which derives Ks for a chosen Ds (or Ds for a chosen Ks).

Everything else (encoder/decoder widths, blocks, quantizer settings) is copied, so the two models differ only
in their latent layout. The published case: 64x64 + 32x32 grids with Ch = 128 give Cs = 128 + 128/4 = 160.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from ..errors import ConfigError
from ..models.base import Budget, LevelInfo
from ..pretrained import build


@dataclass
class CapacityMatch:
    """A hierarchy and its capacity-matched single-level twin.

    Attributes:
        hier, single: model sections (``name`` plus the model's keys) of the two models.
        hier_levels, single_levels: their :class:`~hiervq.models.base.LevelInfo` (grid, K, D, C), bottom first.
        hier_budget, single_budget: their :class:`~hiervq.models.base.Budget` (equal continuous and discrete).
        hier_params, single_params: parameter counts.
    """

    hier: dict[str, Any]
    single: dict[str, Any]
    hier_levels: list[LevelInfo]
    single_levels: list[LevelInfo]
    hier_budget: Budget
    single_budget: Budget
    hier_params: int
    single_params: int

    def describe(self) -> str:
        """Both models' latents and budgets, one line each."""

        def line(label: str, levels: list[LevelInfo], budget: Budget, params: int) -> str:
            grids = " + ".join(f"{lv.grid[0]}x{lv.grid[1]}x{lv.channels}" for lv in levels)
            books = " + ".join(f"{lv.codebook_size}x{lv.code_dim}" for lv in levels)
            return (
                f"  {label:<13} latents {grids:<22} continuous {budget.continuous:>9,}   "
                f"codebooks (K x D) {books:<22} discrete {budget.discrete:>9,}   "
                f"{budget.bits_per_image:,.0f} bits/image, {params:,} params"
            )

        return "\n".join(
            [
                "capacity match (continuous = sum H*W*C at the quantizer inputs, discrete = sum K*D):",
                line("hierarchical", self.hier_levels, self.hier_budget, self.hier_params),
                line("single-level", self.single_levels, self.single_budget, self.single_params),
            ]
        )


def describe_model(model: dict[str, Any], image_size: int | None = None, in_channels: int | None = None,
                   where: str = "model"):
    """Build a model section on the ``meta`` device (no memory, no init cost) to read its levels/budget/params.

    ``image_size`` / ``in_channels`` fill in keys the section leaves out (as the data would).
    """
    params = {k: v for k, v in model.items() if k != "name"}
    if image_size is not None:
        params.setdefault("image_size", image_size)
    if in_channels is not None:
        params.setdefault("in_channels", in_channels)
    with torch.device("meta"):
        return build(model["name"], params, where=where)


def _near_divisors(n: int, target: int, count: int = 4) -> list[int]:
    divisors = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    divisors = sorted(set(divisors + [n // d for d in divisors]))
    return sorted(sorted(divisors, key=lambda d: (abs(math.log(d / target)), d))[:count])


def match_capacity(
    model: dict[str, Any],
    image_size: int | None = None,
    in_channels: int | None = None,
    code_dim: int | None = None,
    codebook_size: int | None = None,
    where: str = "model",
) -> CapacityMatch:
    """Derive the single-level model matched to the hierarchical model section ``model``.

    Args:
        model: a hierarchical model section (``name: hvqvae`` plus its keys) with at least two levels.
        image_size, in_channels: used when the section leaves them out (as the data would fill them in).
        code_dim: Ds of the single-level codebook. Default: the hierarchy's common code dimension, or Cs when
            the hierarchy has no low-dimensional codes (code_dim = dim on every level).
        codebook_size: Ks instead of Ds (then Ds = discrete budget / Ks).
        where: names the config in error messages.

    Raises:
        ConfigError: when no integer Cs, Ks or Ds exists, saying what would match.
    """
    if code_dim is not None and codebook_size is not None:
        raise ConfigError(f"{where}: give the single-level code dimension or codebook size, not both")
    hier = describe_model(model, image_size, in_channels, where)
    levels = hier.levels
    if len(levels) < 2:
        raise ConfigError(f"{where}: capacity matching needs a hierarchy of at least 2 levels, got {len(levels)}")
    budget = hier.budget()
    hb, wb = levels[0].grid
    area = hb * wb

    cs = Fraction(budget.continuous, area)
    if cs.denominator != 1:
        hints = [
            f"level {i} dim a multiple of {Fraction(lv.positions, area).denominator}"
            for i, lv in enumerate(levels[1:], 1)
            if (Fraction(lv.positions, area) * lv.channels).denominator != 1
        ]
        raise ConfigError(
            f"{where}: no integer single-level channel count: the continuous budget {budget.continuous:,} "
            f"(sum H*W*C) over the bottom grid {hb}x{wb} gives Cs = {float(cs):g}; "
            f"it matches with {', '.join(hints)}"
        )
    cs_int = int(cs)
    discrete = budget.discrete

    if codebook_size is not None:
        if discrete % codebook_size:
            near = _near_divisors(discrete, codebook_size)
            raise ConfigError(
                f"{where}: no integer single-level code dimension: Ks = {codebook_size} does not divide the "
                f"discrete budget {discrete:,} (sum K*D); Ks in {near} would match"
            )
        ks, ds = codebook_size, discrete // codebook_size
    else:
        if code_dim is not None:
            ds = code_dim
        elif all(lv.code_dim == lv.channels for lv in levels):
            ds = cs_int
        elif len({lv.code_dim for lv in levels}) == 1:
            ds = levels[0].code_dim
        else:
            raise ConfigError(
                f"{where}: the levels have different code dimensions {[lv.code_dim for lv in levels]}; "
                "set compare.single_code_dim (Ds) or compare.single_codebook_size (Ks)"
            )
        if discrete % ds:
            near = _near_divisors(discrete, ds)
            sum_d = sum(lv.code_dim for lv in levels)
            step = ds // math.gcd(ds, sum_d)
            k0 = levels[0].codebook_size
            k_hint = max(step, round(k0 / step) * step)
            raise ConfigError(
                f"{where}: no integer single-level codebook size: the discrete budget {discrete:,} (sum K*D) is "
                f"not a multiple of Ds = {ds} (Ks would be {discrete / ds:g}); Ds in {near} would match, or "
                f"hierarchy codebook sizes that are multiples of {step} (e.g. K = {k_hint} on every level)"
            )
        ks = discrete // ds
    if ks < 2:
        raise ConfigError(f"{where}: the matched single-level codebook would have Ks = {ks} < 2 codes (Ds = {ds})")

    bottom = hier.config.levels[0]
    single = {k: v for k, v in model.items() if k not in ("name", "levels")}
    single["name"] = "vqvae"
    single["levels"] = [
        {"downsample": bottom.downsample, "codebook_size": ks, "dim": cs_int, "code_dim": None if ds == cs_int else ds}
    ]
    twin = describe_model(single, image_size, in_channels, f"{where} (matched single-level twin)")
    sb = twin.budget()
    if (sb.continuous, sb.discrete) != (budget.continuous, budget.discrete):  # pragma: no cover - a bug, not input
        raise AssertionError(f"capacity match failed: {budget} vs {sb}")
    return CapacityMatch(
        hier=dict(model),
        single=single,
        hier_levels=levels,
        single_levels=twin.levels,
        hier_budget=budget,
        single_budget=sb,
        hier_params=hier.num_parameters(),
        single_params=twin.num_parameters(),
    )
