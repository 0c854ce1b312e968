"""Tensor-level metrics shared by every model: reconstruction error and codebook health.

Everything here takes tensors (images in [0, 1], code indices, code counts), never a model, and imports
nothing heavier than torch. Plots live in :mod:`hiervq.metrics.plots`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..quantize.common import code_bits, perplexity  # perplexity: the quantizers report it too


# ---------------------------------------------------------------------- reconstruction
def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image (B,) between images ``x`` and ``y`` (B, C, H, W) on [0, 1]."""
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(mse: torch.Tensor | float, peak: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for a mean squared error (any shape) on a [0, peak] scale."""
    mse = torch.as_tensor(mse, dtype=torch.float64)
    return 10.0 * torch.log10(peak**2 / mse.clamp_min(1e-12))


# ---------------------------------------------------------------------- codebook health
def lorenz_curve(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lorenz curve of code usage: (fraction of codes, fraction of assignments), both (K + 1,).

    Codes are sorted from least to most used; the curve runs from (0, 0) to (1, 1) and lies on the diagonal
    when usage is perfectly uniform.
    """
    c = torch.sort(counts.double().flatten()).values
    k = c.numel()
    x = torch.linspace(0.0, 1.0, k + 1, dtype=torch.float64)
    total = c.sum()
    y = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(c, 0) / total.clamp_min(1e-300)])
    if total == 0:
        y = x.clone()
    return x, y


def gini(counts: torch.Tensor) -> float:
    """Gini coefficient of code usage (0: uniform, -> 1: one code takes everything)."""
    x, y = lorenz_curve(counts)
    area = torch.trapezoid(y, x)
    return float(1.0 - 2.0 * area)


@dataclass
class CodebookHealth:
    """Codebook statistics over an evaluation pass."""

    codebook_size: int
    perplexity: float
    normalized_perplexity: float
    used_fraction: float
    dead_codes: int
    gini: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def codebook_health(counts: torch.Tensor) -> CodebookHealth:
    """Health of one codebook from its accumulated assignment ``counts`` (K,).

    ``dead_codes`` counts codes never assigned during the pass; ``normalized_perplexity`` is perplexity / K.
    """
    k = counts.numel()
    ppl = float(perplexity(counts))
    used = int((counts > 0).sum())
    return CodebookHealth(
        codebook_size=k,
        perplexity=ppl,
        normalized_perplexity=ppl / k,
        used_fraction=used / k,
        dead_codes=k - used,
        gini=gini(counts),
    )


class EvalAccumulator:
    """Accumulates per-image MSE and per-level code counts over an evaluation pass.

    >>> acc = EvalAccumulator([512, 512])
    >>> acc.add(images, recon, [codes_bottom, codes_top])   # doctest: +SKIP
    >>> acc.result()["psnr"]                                 # doctest: +SKIP
    """

    def __init__(self, codebook_sizes: list[int]) -> None:
        self.codebook_sizes = list(codebook_sizes)
        self.counts = [torch.zeros(k, dtype=torch.float64) for k in codebook_sizes]
        self.mse: list[torch.Tensor] = []
        self.loss_sums: dict[str, float] = {}
        self.batches = 0

    def add(
        self,
        images: torch.Tensor,
        recon: torch.Tensor,
        codes: list[torch.Tensor] | None = None,
        losses: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Add one batch: images and reconstructions (B, C, H, W) on [0, 1] (clamped here), codes per level."""
        self.mse.append(mse_per_image(images, recon.clamp(0, 1)).double().cpu())
        for level, idx in enumerate(codes or []):
            self.counts[level] += torch.bincount(idx.reshape(-1).cpu(), minlength=self.codebook_sizes[level]).double()
        for name, value in (losses or {}).items():
            self.loss_sums[name] = self.loss_sums.get(name, 0.0) + float(value)
        self.batches += 1

    def per_image_mse(self) -> torch.Tensor:
        return torch.cat(self.mse) if self.mse else torch.zeros(0, dtype=torch.float64)

    def result(self, with_counts: bool = False) -> dict:
        """``mse``, ``mse_std``, ``psnr`` (mean of per-image PSNR), ``psnr_std``, mean losses, ``levels``
        (codebook health per level) and, if asked, the raw ``counts`` (K,) tensors per level."""
        mse = self.per_image_mse()
        if mse.numel() == 0:
            raise ValueError("no images were evaluated")
        p = psnr(mse)
        out = {
            "mse": float(mse.mean()),
            "mse_std": float(mse.std()) if mse.numel() > 1 else 0.0,
            "psnr": float(p.mean()),
            "psnr_std": float(p.std()) if p.numel() > 1 else 0.0,
            "psnr_of_mean_mse": float(psnr(mse.mean())),
            "images": int(mse.numel()),
        }
        for name, total in self.loss_sums.items():
            out[f"loss_{name}"] = total / max(self.batches, 1)
        out["levels"] = [codebook_health(c).as_dict() for c in self.counts]
        if with_counts:
            out["counts"] = [c.clone() for c in self.counts]
        return out


def bits_per_image(grids: list[tuple[int, ...]], codebook_sizes: list[int]) -> float:
    """Sum over levels of (number of codes) x log2 K: the size of one image's codes in bits."""
    return float(sum(code_bits(k, math.prod(g)) for g, k in zip(grids, codebook_sizes)))


# ---------------------------------------------------------------------- classification
def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
    if pred.shape != target.shape:
        raise ValueError(f"{pred.numel()} predictions but {target.numel()} targets")
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class (C,) from a confusion matrix (rows = true classes); NaN for a class with no items."""
    confusion = confusion.double()
    return confusion.diagonal() / confusion.sum(1)
