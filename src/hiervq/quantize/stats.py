"""Codebook statistics every quantizer (and everything above it) shares: perplexity, per-batch statistics, bits.

Torch only, like the rest of :mod:`hiervq.quantize`; :mod:`hiervq.metrics` re-exports :func:`perplexity`.
"""

from __future__ import annotations

import math

import torch


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp of the entropy (nats) of the code-assignment distribution ``counts`` (K,); 1..K."""
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


def code_bits(codebook_size: int, count: int | float = 1) -> float:
    """Bits to store ``count`` codes of a K = ``codebook_size`` codebook without a prior: count * log2 K."""
    return count * math.log2(codebook_size)
