"""Figures for reports (matplotlib, headless). Each function takes tensors/records and writes one PNG."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import gini, lorenz_curve  # noqa: E402


def image_grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """Tile images (B, C, H, W) in [0, 1] into one (rows*H, nrow*W, C) uint8 array with 1-px gaps."""
    images = images.detach().float().clamp(0, 1).cpu()
    b, c, h, w = images.shape
    rows = math.ceil(b / nrow)
    grid = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(b):
        r, col = divmod(i, nrow)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = images[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return arr


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 2) -> None:
    """Write a grid of images (B, C, H, W) in [0, 1] as a PNG, nearest-upscaled by ``scale``."""
    from PIL import Image

    arr = image_grid(images, nrow)
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)


def plot_reconstructions(originals: torch.Tensor, recons: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Originals above reconstructions: rows alternate originals and their reconstructions."""
    n = min(len(originals), nrow * 2)
    rows = []
    for start in range(0, n, nrow):
        rows += [originals[start : start + nrow], recons[start : start + nrow].clamp(0, 1)]
    save_image_grid(torch.cat(rows), path, nrow=nrow, scale=3 if originals.shape[-1] <= 32 else 1)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss and PSNR per epoch (train and test), and perplexity per level per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, [r["train"]["loss"] for r in history], label="train loss")
    axes[0].plot(epochs, [r["train"].get("recon", np.nan) for r in history], label="train recon MSE")
    tested = [r for r in history if "test" in r]
    if tested:
        axes[0].plot([r["epoch"] for r in tested], [r["test"]["mse"] for r in tested], "o-", label="test MSE")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r["train"]["psnr"] for r in history], label="train")
    if tested:
        axes[1].plot([r["epoch"] for r in tested], [r["test"]["psnr"] for r in tested], "o-", label="test")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("dB")
    axes[1].set_title("PSNR")
    axes[1].legend(fontsize=8)
    levels = len(history[0]["train"].get("perplexity", [])) if history else 0
    for lv in range(levels):
        axes[2].plot(epochs, [r["train"]["perplexity"][lv] for r in history], label=f"level {lv} (train batches)")
        if tested:
            axes[2].plot(
                [r["epoch"] for r in tested],
                [r["test"]["levels"][lv]["perplexity"] for r in tested],
                "o--",
                label=f"level {lv} (test set)",
            )
    axes[2].set_xlabel("epoch")
    axes[2].set_title("codebook perplexity")
    if levels:
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lorenz(counts: list[torch.Tensor], labels: list[str], path: str | Path, title: str = "code usage") -> None:
    """Lorenz curves of code usage, one per codebook, Gini coefficient in the legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls=":", label="uniform")
    for c, label in zip(counts, labels):
        x, y = lorenz_curve(torch.as_tensor(c))
        ax.plot(x.numpy(), y.numpy(), label=f"{label} (Gini {gini(torch.as_tensor(c)):.2f})")
    ax.set_xlabel("fraction of codes (least used first)")
    ax.set_ylabel("fraction of assignments")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
