"""The SimVQ codebook (Zhu et al., 2024): code vectors C = B W^T, a frozen random basis B times one learned map W.

Plain VQ updates only the codes that are selected, so unselected codes drift out of reach and die. With the
codebook reparameterised as one shared linear map of a fixed random basis, every gradient step on W moves the
whole codebook (the selected codes' gradient reaches all of them through W), which keeps codes in use without
EMA or dead-code resets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist
from .codebook import DEFAULT_CHUNK_ELEMENTS, CodeSearch
from .common import code_bits


class SimCodebook(CodeSearch):
    """K codes of dimension D as ``map(basis)``: ``basis`` (K, D) a frozen buffer drawn from N(0, 1/D), ``map``
    an ``nn.Linear(D, D, bias=False)`` (identity at the start), the only trainable part.

    It offers what :class:`~hiervq.quantize.VectorQuantizer` uses of :class:`~hiervq.quantize.Codebook`:
    ``weight`` (the effective codes, recomputed from the map: K x D x D, cheap), the search of
    :class:`~hiervq.quantize.codebook.CodeSearch` (``nearest``, ``lookup``, ``distances``) and ``update`` (which only sums the counts over ranks for the statistics:
    there is no EMA, initialisation or dead-code reset; the codes are learned through the codebook loss).
    ``cosine``: the effective codes are l2-normalised.
    """

    uses_ema = False

    def __init__(self, codebook_size: int, dim: int, cosine: bool = False,
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"SimCodebook needs codebook_size >= 1 and dim >= 1, got K={codebook_size}, D={dim}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.cosine = cosine
        self.chunk_elements = chunk_elements
        self.register_buffer("basis", torch.randn(codebook_size, dim) * dim**-0.5)
        self.map = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.map.weight.copy_(torch.eye(dim))
        self.register_buffer("initialized", torch.tensor(True))
        self.last_counts: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"K={self.codebook_size}, D={self.dim}, cosine={self.cosine} (frozen basis, learned map)"

    @property
    def weight(self) -> torch.Tensor:
        """The effective codes (K, D), differentiable with respect to the map."""
        w = F.linear(self.basis.to(self.map.weight.dtype), self.map.weight)
        return F.normalize(w, dim=-1) if self.cosine else w

    def warming_up(self) -> bool:
        return False

    def initialize(self, z: torch.Tensor) -> None:  # the basis is random by construction
        return None

    @torch.no_grad()
    def update(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor | None = None) -> int:
        """Statistics only: the counts summed over ranks (one collective) become :attr:`last_counts`."""
        if counts is None:
            counts = torch.bincount(indices, minlength=self.codebook_size)
        counts = counts.to(torch.float32, copy=True)
        qdist.all_reduce_sum(counts)
        self.last_counts = counts
        return 0

    @property
    def bits(self) -> float:
        return code_bits(self.codebook_size)
