"""``FSQ``: finite scalar quantization (Mentzer et al., 2023) -- an implicit codebook, no lookup, no codebook loss.

Each of the d = ``len(levels)`` channels is bounded to an interval and rounded to one of ``levels[i]`` integers;
the code vector is the tuple of rounded values, so the implicit codebook is the grid of all prod(levels) tuples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist
from .common import RowLayout, batch_stats, check_indices, code_bits, projections
from .estimators import straight_through
from .vector import Quantized

#: The level lists the FSQ paper recommends for a target codebook size (Table 1 of Mentzer et al.).
RECOMMENDED_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}


def linear_in(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a Linear or Identity ``layer``, computed in ``x``'s dtype whatever the layer's."""
    if isinstance(layer, nn.Linear):
        w = layer.weight.to(x.dtype)
        b = None if layer.bias is None else layer.bias.to(x.dtype)
        return F.linear(x, w, b)
    return layer(x)


def check_levels(levels) -> list[int]:
    """``levels`` as a list of ints >= 2, or ``ValueError``."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
        raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {levels!r}")
    out = []
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {list(levels)!r}")
        out.append(int(v))
    return out


class FSQ(RowLayout):
    """Finite scalar quantization of (B, C, H, W) maps or (..., C) vectors.

    Args:
        dim: channels of the input (C).
        levels: number of values per code channel, e.g. ``[8, 5, 5, 5]`` (K = 1000 codes, d = 4 channels).
            If ``dim != len(levels)`` the input is projected to d channels by a learned linear map and back after
            quantization.
        eps: widens the bound slightly so that the outermost values are reached by a finite input.

    Rules:
        * bound: ``z -> tanh(z + shift) * h - offset`` with h = (L - 1)(1 + eps) / 2, offset = 1/2 for even L (0
          for odd) and shift = atanh(offset / h), so rounding gives exactly L integers: {-L/2, ..., L/2 - 1} for
          even L, {-(L-1)/2, ..., (L-1)/2} for odd L;
        * code value: the rounded integer divided by L // 2 (so codes lie in [-1, 1]); gradient: straight-through
          from the rounded to the bounded value (the bound itself is differentiated);
        * index: digit_i = rounded_i + L_i // 2 in [0, L_i), index = sum_i digit_i * prod(L_j, j < i) (the first
          channel is the least significant digit); :meth:`codes_to_indices` and :meth:`indices_to_codes` are
          inverse bijections between the K grid points and [0, K);
        * loss: zero (FSQ needs no commitment or codebook term); ``losses`` has the usual keys, zero;
        * statistics: those of :class:`~hiervq.quantize.VectorQuantizer` over the implicit codebook of K codes.

    Precision: bounding, rounding and the index are computed in float32 (float64 for float64 inputs) with autocast
    disabled, even under bf16 autocast. bf16 has an 8-bit significand: the bounded values near a rounding
    boundary (x.5) are moved across it, neighbouring levels of the saturating tanh collapse onto the same bf16
    value (so usage of the outer levels collapses), and integers above 256 are not all representable, so an index
    computed in bf16 would merge codes. The input projection runs in float32 too, so bf16 autocast gives the same
    codes as float32. The output is float32 (the next layer's autocast casts it as it likes).

    Cost: a forward makes three passes over the (N, d) projected values besides rounding (the shift is folded into
    the input projection's bias, the scale and offset are one ``addcmul``, the division by L // 2 is folded into
    the output projection's weight) and computes the index as one float matrix-vector product of the rounded
    values (exact integers below 2^24 codes; int64 digits beyond); see benchmarks/quantizer_family.py.

    ``decode(indices)`` equals the eval-mode forward output (under ``no_grad``) exactly. ``bypass`` (attribute,
    off by default): the forward returns the bounded continuous values instead of the codes.
    """

    def __init__(self, dim: int, levels: list[int], eps: float = 1e-3) -> None:
        super().__init__()
        levels = check_levels(levels)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.levels = list(levels)
        self.code_dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.eps = eps
        self.bypass = False
        self.project_in, self.project_out = projections(dim, self.code_dim)
        lv = torch.tensor(levels, dtype=torch.float64)
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        # float buffers follow .double()/.float() of the module: they set the compute dtype (at least float32)
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l).float(), persistent=False)
        self.register_buffer("_half_width", (lv // 2).float(), persistent=False)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        self.register_buffer("_basis", basis, persistent=False)
        # the index as one matrix-vector product of the rounded values (used up to 2^24 codes: exact in float32)
        self.register_buffer("_neg_offset", -offset.float(), persistent=False)
        self.register_buffer("_basis_f", basis.float(), persistent=False)
        self.register_buffer("_index_offset", (basis * (lv // 2).long()).sum().float(), persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.levels}, K={self.codebook_size}"

    @property
    def bits(self) -> float:
        """Bits per code index, log2 K."""
        return code_bits(self.codebook_size)

    depth = 1  # codes per input vector
    num_books = 1  # codebooks (the implicit grid counts as one of K x d)

    # ------------------------------------------------------------------ the maps
    def _dtype(self, x: torch.Tensor | None = None) -> torch.dtype:
        dt = torch.promote_types(self._half_l.dtype, torch.float32)
        return dt if x is None else torch.promote_types(dt, x.dtype)

    def bound(self, e: torch.Tensor) -> torch.Tensor:
        """The bounded values (N, d) of projected features ``e`` (N, d), before rounding."""
        dt = e.dtype
        return torch.addcmul(self._neg_offset.to(dt), torch.tanh(e + self._shift.to(dt)), self._half_l.to(dt))

    def _bounded(self, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`bound` of the projected ``rows`` (N, C) in the compute dtype, in three passes over (N, d): the
        tanh's shift is folded into the projection's bias (one ``addmm``), then ``tanh`` and one ``addcmul`` for
        the scale and offset."""
        x = rows.to(self._dtype(rows))
        dt = x.dtype
        shift = self._shift.to(dt)
        if isinstance(self.project_in, nn.Linear):
            bias = self.project_in.bias
            bias = shift if bias is None else bias.to(dt) + shift
            pre = torch.addmm(bias, x, self.project_in.weight.to(dt).t())
        else:
            pre = x + shift
        return torch.addcmul(self._neg_offset.to(dt), torch.tanh(pre), self._half_l.to(dt))

    def _indices(self, rounded: torch.Tensor) -> torch.Tensor:
        """Indices (N,) of rounded values (N, d): sum_i (rounded_i + L_i // 2) * basis_i, as one ``addmv``
        (exact: the integers stay at most K <= 2^24, representable in float32), or in int64 for larger codebooks."""
        if rounded.dtype in (torch.float32, torch.float64) and self.codebook_size <= 2**24:
            dt = rounded.dtype
            return torch.addmv(self._index_offset.to(dt), rounded, self._basis_f.to(dt)).long()
        digits = (rounded + self._half_width.to(rounded.dtype)).long()
        return (digits * self._basis).sum(-1)

    def _out(self, v: torch.Tensor) -> torch.Tensor:
        """project_out(v / (L // 2)) for (rounded or bounded) values ``v`` (N, d): with a projection the division
        is folded into its weight (d columns), so no pass over (N, d) is spent on it."""
        dt = v.dtype
        if isinstance(self.project_out, nn.Linear):
            w = self.project_out.weight.to(dt) / self._half_width.to(dt)
            b = self.project_out.bias
            return F.linear(v, w, None if b is None else b.to(dt))
        return v / self._half_width.to(dt)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer indices (...) of code vectors (..., d) on the grid (values rounded / (L // 2))."""
        hw = self._half_width.to(codes.dtype)
        digits = torch.round(codes * hw + hw).long()
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Code vectors (..., d) of integer ``indices`` (...): the inverse of :meth:`codes_to_indices`."""
        digits = torch.div(indices.long()[..., None], self._basis, rounding_mode="floor") % self._levels
        dt = dtype or self._dtype()
        hw = self._half_width.to(dt)
        return (digits - self._half_width.long()).to(dt) / hw

    def implicit_codebook(self) -> torch.Tensor:
        """All K code vectors (K, d), row k being the code of index k."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self._basis.device))

    # ------------------------------------------------------------------ forward / encode / decode
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W) or (..., C); see the class docstring."""
        maps = z.ndim == 4
        rows, index_shape = self._to_rows(z)
        with torch.autocast(device_type=rows.device.type, enabled=False):
            bounded = self._bounded(rows)
            rounded = torch.round(bounded.detach())
            indices = self._indices(rounded)
            track_grad = torch.is_grad_enabled() and bounded.requires_grad
            q = straight_through(bounded, rounded) if track_grad else rounded
            out = self._out(bounded if self.bypass else q)
        zero = bounded.new_zeros(())
        with torch.no_grad():  # indices are in [0, K) by construction: no check for dropped (negative) codes
            counts = torch.bincount(indices, minlength=self.codebook_size)
            if self.training:
                qdist.all_reduce_sum(counts)
        return Quantized(
            quantized=self._from_rows(out, index_shape, maps),
            indices=indices.view(index_shape),
            loss=zero,
            losses={"commitment": zero, "codebook": zero},
            stats=batch_stats(counts),
        )

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes of ``z`` (no gradients): (B, H, W) for maps, (...) for vectors."""
        rows, index_shape = self._to_rows(z)
        with torch.autocast(device_type=rows.device.type, enabled=False):
            return self._indices(torch.round(self._bounded(rows))).view(index_shape)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized features for ``indices``: (B, C, H, W) for (B, H, W) codes, (..., C) otherwise.

        Equals the eval-mode forward output (under ``no_grad``) for the same codes, exactly.
        """
        check_indices(indices, self.codebook_size)
        with torch.autocast(device_type=indices.device.type, enabled=False):
            digits = torch.div(indices.reshape(-1, 1).long(), self._basis, rounding_mode="floor") % self._levels
            out = self._out((digits - self._half_width.long()).to(self._dtype()))  # the rounded values
        if indices.ndim == 3:
            return self._from_rows(out, tuple(indices.shape), maps=True)
        return out.view(*indices.shape, -1)
