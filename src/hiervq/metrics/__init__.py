"""Tensor-level metrics shared by every model: reconstruction error, structural similarity and codebook health.

Everything here takes tensors (images in [0, 1], code indices, code counts), never a model, and imports
nothing heavier than torch (pytorch-msssim, pure torch, is imported on first use). Plots live in
:mod:`hiervq.metrics.plots`, perceptual metrics with user-supplied networks (LPIPS-, FID-like) in
:mod:`hiervq.metrics.perceptual`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


# ---------------------------------------------------------------------- structural similarity
#: SSIM: the standard Gaussian window (11 taps, sigma 1.5) and constants K1 = 0.01, K2 = 0.03
SSIM_WIN, SSIM_SIGMA = 11, 1.5
#: MS-SSIM's standard weights, finest scale first (Wang, Simoncelli & Bovik 2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: the window of MS-SSIM on images too small for the standard 5 scales with an 11-tap window
MS_SSIM_SMALL_WIN = 7


@dataclass(frozen=True)
class SSIMSetting:
    """How SSIM and MS-SSIM are computed for one image size (:func:`ssim_setting`)."""

    win_size: int
    ms_win_size: int
    ms_weights: tuple[float, ...]

    @property
    def standard_ms_ssim(self) -> bool:
        return self.ms_win_size == SSIM_WIN and self.ms_weights == MS_SSIM_WEIGHTS

    def describe(self) -> str:
        ms = ("standard (5 scales, 11-tap window)" if self.standard_ms_ssim else
              f"{len(self.ms_weights)} scale{'s' if len(self.ms_weights) > 1 else ''}, {self.ms_win_size}-tap window, "
              f"weights {', '.join(f'{w:.3f}' for w in self.ms_weights)}")
        return f"SSIM {self.win_size}-tap Gaussian window (sigma {SSIM_SIGMA}); MS-SSIM {ms}"


def _odd_at_most(n: int, cap: int) -> int:
    n = max(1, min(n, cap))
    return n if n % 2 else n - 1


def ssim_setting(height: int, width: int) -> SSIMSetting:
    """The SSIM / MS-SSIM setting for ``height`` x ``width`` images, one rule for every caller.

    SSIM: the standard 11-tap Gaussian window (sigma 1.5; the largest odd window that fits on images smaller than
    11 pixels). MS-SSIM: the standard 5 scales with the 11-tap window where pytorch-msssim allows it (smaller side
    > 160 pixels); on smaller images (28x28 MNIST, 32x32 CIFAR-10) a 7-tap window (sigma 1.5) and as many scales
    as keep the coarsest scale at least 7 pixels wide (32 and 28: 3 scales, 16: 2, 64: 4), weighted by the first
    of the standard weights renormalised to sum to 1 (3 scales: 0.071, 0.453, 0.476).
    """
    side = min(height, width)
    win = _odd_at_most(side, SSIM_WIN)
    if side > (SSIM_WIN - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        return SSIMSetting(win, SSIM_WIN, MS_SSIM_WEIGHTS)
    ms_win = _odd_at_most(side, MS_SSIM_SMALL_WIN)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and math.ceil(side / 2**scales) >= ms_win:
        scales += 1
    head = MS_SSIM_WEIGHTS[:scales]
    return SSIMSetting(win, ms_win, tuple(w / sum(head) for w in head))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and MS-SSIM per image (B,) (float64, 1 = identical) of images ``x`` and ``y`` (B, C, H, W) on [0, 1]
    (data range 1, averaged over channels), with the setting of :func:`ssim_setting`, by pytorch-msssim.

    The standard MS-SSIM is pytorch-msssim's ``ms_ssim``; on smaller images, whose 5-scale check that function
    makes whatever the number of weights, the same computation runs with the setting's scales: pytorch-msssim's
    per-scale SSIM and contrast-structure terms (``_ssim``), 2x2 average pooling between scales, and the weighted
    product of the contrast-structure terms of the finer scales and the SSIM of the coarsest one.
    """
    # imported here, not at the top: `import hiervq.metrics` stays without pytorch_msssim (the light core that
    # tests/test_usability.py checks)
    from pytorch_msssim import ms_ssim, ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    x, y = x.float(), y.float()
    setting = ssim_setting(x.shape[-2], x.shape[-1])
    s = ssim(x, y, data_range=1.0, size_average=False, win_size=setting.win_size, win_sigma=SSIM_SIGMA)
    if setting.standard_ms_ssim:
        ms = ms_ssim(x, y, data_range=1.0, size_average=False, win_size=SSIM_WIN, win_sigma=SSIM_SIGMA,
                     weights=list(MS_SSIM_WEIGHTS))
        return s.double(), ms.double()
    win = _fspecial_gauss_1d(setting.ms_win_size, SSIM_SIGMA).repeat([x.shape[1], 1, 1, 1])
    terms = []
    for scale in range(len(setting.ms_weights)):
        ssim_per_channel, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False)
        if scale < len(setting.ms_weights) - 1:
            terms.append(torch.relu(cs))
            padding = [n % 2 for n in x.shape[2:]]
            x, y = F.avg_pool2d(x, kernel_size=2, padding=padding), F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim_per_channel))
    weights = torch.tensor(setting.ms_weights, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    ms = torch.prod(torch.stack(terms) ** weights, dim=0).mean(1)  # (scales, B, C) -> (B,)
    return s.double(), ms.double()


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

    def __init__(self, codebook_sizes: list[int], metrics: tuple | list = ()) -> None:
        self.codebook_sizes = list(codebook_sizes)
        self.counts = [torch.zeros(k, dtype=torch.float64) for k in codebook_sizes]
        self.mse: list[torch.Tensor] = []
        self.ssim: list[torch.Tensor] = []
        self.ms_ssim: list[torch.Tensor] = []
        self.loss_sums: dict[str, float] = {}
        self.batches = 0
        self.metrics = list(metrics)
        self._perceptual = [m.accumulator() for m in self.metrics]

    def add(
        self,
        images: torch.Tensor,
        recon: torch.Tensor,
        codes: list[torch.Tensor] | None = None,
        losses: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Add one batch: images and reconstructions (B, C, H, W) on [0, 1] (clamped here), codes per level."""
        recon = recon.clamp(0, 1)
        self.mse.append(mse_per_image(images, recon).double().cpu())
        s, ms = ssim_per_image(images, recon)
        self.ssim.append(s.cpu())
        self.ms_ssim.append(ms.cpu())
        for acc in self._perceptual:
            acc.add(images, recon)
        for level, idx in enumerate(codes or []):
            self.counts[level] += torch.bincount(idx.reshape(-1).cpu(), minlength=self.codebook_sizes[level]).double()
        for name, value in (losses or {}).items():
            self.loss_sums[name] = self.loss_sums.get(name, 0.0) + float(value)
        self.batches += 1

    def per_image_mse(self) -> torch.Tensor:
        return torch.cat(self.mse) if self.mse else torch.zeros(0, dtype=torch.float64)

    def result(self, with_counts: bool = False) -> dict:
        """``mse``, ``mse_std``, ``psnr`` (mean of per-image PSNR), ``psnr_std``, ``ssim``, ``ssim_std``,
        ``ms_ssim``, ``ms_ssim_std`` (means and stds over images, :func:`ssim_per_image`), one entry per perceptual
        metric (:mod:`hiervq.metrics.perceptual`), mean losses, ``levels`` (codebook health per level) and, if
        asked, the raw ``counts`` (K,) tensors per level."""
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
        for name, values in (("ssim", self.ssim), ("ms_ssim", self.ms_ssim)):
            v = torch.cat(values)
            out[name] = float(v.mean())
            out[f"{name}_std"] = float(v.std()) if v.numel() > 1 else 0.0
        for acc in self._perceptual:
            out.update(acc.result())
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
