"""What every quantizer of :mod:`hiervq.quantize` shares: the input layouts and the codebook statistics
(perplexity, per-batch usage statistics, bits).

Depends on torch only (and on :mod:`.distributed`), so the quantizers stay usable without the rest of hiervq;
:mod:`hiervq.metrics` re-exports :func:`perplexity` and :func:`code_bits`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import distributed as qdist


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp of the entropy (nats) of the code-assignment distribution ``counts`` (K,); between 1 and K."""
    p = counts.double() / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum())


def batch_stats(counts: torch.Tensor, resets: int = 0) -> dict[str, torch.Tensor]:
    """The statistics a quantizer's forward reports for one batch (``Quantized.stats``): ``perplexity`` and
    ``used_fraction`` of the assignment ``counts`` (K,), the counts themselves, and the number of re-seeded codes."""
    return {
        "perplexity": perplexity(counts).float(),
        "used_fraction": (counts > 0).float().mean(),
        "counts": counts,
        "resets": torch.tensor(resets),
    }


@torch.no_grad()
def usage_stats(indices: torch.Tensor, codebook_size: int, training: bool, resets: int = 0) -> dict[str, torch.Tensor]:
    """:func:`batch_stats` of a batch of code ``indices`` (any shape, values in [0, K)).

    ``perplexity``, ``used_fraction`` and ``counts`` (K,) over the (possibly implicit) codebook of ``codebook_size``
    codes, and ``resets``. In training mode the counts are summed over all ranks under ``torch.distributed``
    (one collective, taken by every rank in every training forward), so they describe the global batch, as
    :class:`~hiervq.quantize.VectorQuantizer`'s do. Negative indices (dropped residual stages) are not counted.
    """
    flat = indices.reshape(-1)
    if flat.numel() and bool((flat < 0).any()):
        flat = flat[flat >= 0]
    counts = torch.bincount(flat, minlength=codebook_size)
    if training:
        qdist.all_reduce_sum(counts)
    return batch_stats(counts, resets)


INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def check_indices(indices: torch.Tensor, codebook_size: int, dtypes: tuple[torch.dtype, ...] = INDEX_DTYPES,
                  values: bool = True) -> None:
    """``TypeError`` unless ``indices`` are integers of ``dtypes``; ``IndexError`` unless they lie in
    [0, codebook_size) (``values=False`` skips that check: two passes and, on a GPU, a synchronisation)."""
    if indices.dtype not in dtypes:
        raise TypeError(f"code indices must be an integer tensor, got {indices.dtype}")
    if values and indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= codebook_size):
        raise IndexError(
            f"code index out of range: got values in [{int(indices.min())}, {int(indices.max())}], "
            f"the codebook has {codebook_size} codes"
        )


def code_bits(codebook_size: int, count: int | float = 1, depth: int = 1) -> float:
    """Bits to store ``count`` grid positions of codes without a prior, each position holding ``depth`` codes of
    a K = ``codebook_size`` code space (L for a residual quantizer of L stages): count * depth * log2 K, i.e.
    log2 of the code space per position (K^L residual, prod(levels) FSQ, 2^bits LFQ) times the positions."""
    return count * (depth * math.log2(codebook_size))


def projections(dim: int, inner: int) -> tuple[nn.Module, nn.Module]:
    """The (project_in, project_out) pair of a quantizer that works in ``inner`` channels on ``dim``-channel
    inputs: ``nn.Linear(dim, inner)`` and ``nn.Linear(inner, dim)``, or two identities when ``inner == dim``."""
    if inner == dim:
        return nn.Identity(), nn.Identity()
    return nn.Linear(dim, inner), nn.Linear(inner, dim)


class RowLayout(nn.Module):
    """Mixin: (B, C, H, W) maps or channel-last (..., C) tensors <-> (N, C) rows; needs ``self.dim``."""

    dim: int

    def _to_rows(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(N, C) rows and the index shape for an input of any supported layout."""
        if z.ndim == 4:
            if z.shape[1] != self.dim:
                raise ValueError(f"quantizer expects (B, {self.dim}, H, W) maps, got {tuple(z.shape)}")
            b, c, h, w = z.shape
            return z.permute(0, 2, 3, 1).reshape(-1, c), (b, h, w)
        if z.ndim < 2 or z.shape[-1] != self.dim:
            raise ValueError(
                f"quantizer expects (B, {self.dim}, H, W) maps or (..., {self.dim}) vectors, got {tuple(z.shape)}"
            )
        return z.reshape(-1, self.dim), tuple(z.shape[:-1])

    @staticmethod
    def _from_rows(rows: torch.Tensor, index_shape: tuple[int, ...], maps: bool, channels_last: bool = False) -> torch.Tensor:
        """Rows (N, C) back to the input's layout; ``channels_last`` maps stay channels-last (no copy)."""
        if maps:
            b, h, w = index_shape
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            return rows.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        return rows.view(*index_shape, -1)


def is_channels_last(z: torch.Tensor) -> bool:
    """Whether ``z`` is a (B, C, H, W) map stored channels-last (and not also in the default layout)."""
    return z.ndim == 4 and not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last)
