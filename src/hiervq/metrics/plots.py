"""Figures for reports. Each function takes tensors/records and writes one PNG.

Image grids (:func:`save_image_grid`, :func:`plot_reconstructions`) need only Pillow. The charts need matplotlib
(the ``plots`` extra), imported on first use with the headless Agg backend; without it each chart function logs one
warning naming the extra and writes nothing (:func:`hiervq.extras.warn_missing`), so that a run or an experiment
still ends with its JSON and markdown results.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..extras import available, require, warn_missing
from ..io import write_image
from . import gini, lorenz_curve

CHARTS = "drawing charts"


def have_matplotlib() -> bool:
    """Whether the charts can be drawn (matplotlib, the ``plots`` extra, is installed)."""
    return available("matplotlib")


def _pyplot():
    """matplotlib.pyplot with the Agg backend (unless the caller already chose one by importing pyplot)."""
    matplotlib = require("matplotlib", CHARTS)
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency (the plots extra)

    return plt


def _chart(fn):
    """A chart function: without matplotlib it warns once (naming the ``plots`` extra) and returns None."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not have_matplotlib():
            warn_missing("matplotlib", CHARTS)
            return None
        return fn(*args, **kwargs)

    return wrapper


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


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 2,
                    row_labels: list[str] | None = None, write=None) -> None:
    """Write a grid of images (B, C, H, W) in [0, 1] as a PNG, nearest-upscaled by ``scale``; ``row_labels``
    (one per row of the grid) are written in a white margin on the left (Pillow's default font). The file is
    encoded in memory and written atomically (``write(path, data)``, default :func:`hiervq.io.atomic_write_bytes`;
    a failure is a :class:`~hiervq.errors.WriteError` naming ``path``)."""
    h = images.shape[-2]
    arr = image_grid(images, nrow)
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels:
        img = _label_rows(img, list(row_labels), top=scale, row_height=(h + 1) * scale, image_height=h * scale)
    write_image(img, path, write)


def _label_rows(img, labels: list[str], top: int, row_height: int, image_height: int):
    """``img`` with a left margin holding ``labels[r]`` centred on grid row r."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(img)
    boxes = [measure.textbbox((0, 0), text, font=font) for text in labels]
    pad = 4
    margin = max(box[2] for box in boxes) + 2 * pad
    white, black = (255, 0) if img.mode == "L" else ((255, 255, 255), (0, 0, 0))
    canvas = Image.new(img.mode, (img.width + margin, img.height), white)
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, (text, box) in enumerate(zip(labels, boxes)):
        centre = top + r * row_height + image_height / 2
        draw.text((pad, centre - (box[1] + box[3]) / 2), text, fill=black, font=font)
    return canvas


#: the row labels of :func:`plot_reconstructions`
RECONSTRUCTION_ROWS = ("original", "reconstruction")


def plot_reconstructions(originals: torch.Tensor, recons: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Originals above reconstructions: rows alternate originals and their reconstructions, labelled on the left."""
    nrow = max(1, min(nrow, len(originals)))
    n = min(len(originals), nrow * 2)
    rows = []
    for start in range(0, n, nrow):
        rows += [originals[start : start + nrow], recons[start : start + nrow].clamp(0, 1)]
    if n % nrow:  # a short last pair of rows: pad the originals' row so each row starts on a new grid row
        pad = nrow - n % nrow
        rows[-2] = torch.cat([rows[-2], torch.ones_like(rows[-2][:1]).expand(pad, -1, -1, -1)])
    labels = list(RECONSTRUCTION_ROWS) * (len(rows) // 2)
    save_image_grid(torch.cat(rows), path, nrow=nrow, scale=3 if originals.shape[-1] <= 32 else 1, row_labels=labels)


@_chart
def plot_curves(history: list[dict], path: str | Path, codebook_sizes: list[int] | None = None) -> None:
    """Loss and PSNR per epoch (train, and val or else test), and perplexity per level per epoch with each level's codebook
    size K as a dashed reference line (the perplexity of uniform use; from ``codebook_sizes`` or the test
    records)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, [r["train"]["loss"] for r in history], label="train loss")
    axes[0].plot(epochs, [r["train"].get("recon", np.nan) for r in history], label="train recon MSE")
    split = "val" if any("val" in r for r in history) else "test"  # per-epoch numbers are on val when there is one
    tested = [r for r in history if split in r]
    if tested:
        axes[0].plot([r["epoch"] for r in tested], [r[split]["mse"] for r in tested], "o-", label=f"{split} MSE")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss / MSE (log scale)")
    axes[0].set_title("loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r["train"]["psnr"] for r in history], label="train")
    if tested:
        axes[1].plot([r["epoch"] for r in tested], [r[split]["psnr"] for r in tested], "o-", label=split)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("PSNR (dB)")
    axes[1].set_title("PSNR")
    axes[1].legend(fontsize=8)
    levels = len(history[0]["train"].get("perplexity", [])) if history else 0
    if codebook_sizes is None and tested:
        codebook_sizes = [lv.get("codebook_size") for lv in tested[-1][split].get("levels", [])]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for lv in range(levels):
        color = colors[lv % len(colors)]
        axes[2].plot(epochs, [r["train"]["perplexity"][lv] for r in history], color=color,
                     label=f"level {lv} (train batches)")
        if tested:
            axes[2].plot(
                [r["epoch"] for r in tested],
                [r[split]["levels"][lv]["perplexity"] for r in tested],
                "o--",
                color=color,
                label=f"level {lv} ({split} set)",
            )
    drawn = set()
    for lv, k in enumerate(codebook_sizes or []):
        if k is None or k in drawn:
            continue
        drawn.add(k)
        same = [i for i, other in enumerate(codebook_sizes) if other == k]
        which = "every level" if len(same) == len(codebook_sizes) > 1 else "level " + "/".join(map(str, same))
        color = "gray" if len(same) == len(codebook_sizes) else colors[lv % len(colors)]
        axes[2].axhline(k, color=color, ls=":", lw=1.2, label=f"K = {k} ({which})")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("perplexity (codes in use)")
    axes[2].set_title("codebook perplexity")
    if levels:
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_lorenz(counts: list[torch.Tensor], labels: list[str], path: str | Path, title: str = "code usage") -> None:
    """Lorenz curves of code usage, one per codebook, Gini coefficient in the legend."""
    plt = _pyplot()
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


@_chart
def plot_paired_scatter(
    x: torch.Tensor, y: torch.Tensor, path: str | Path, xlabel: str, ylabel: str, title: str = ""
) -> None:
    """Scatter of paired per-item values (N,) (e.g. per-image PSNR of two models), with the diagonal y = x."""
    plt = _pyplot()
    x = torch.as_tensor(x).double().cpu().numpy()
    y = torch.as_tensor(y).double().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.scatter(x, y, s=3, alpha=0.35, lw=0)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls=":")
    above = float((y > x).mean())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{above:.0%} of items above the diagonal", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_heatmap(
    values: np.ndarray, rows: list, cols: list, path: str | Path, xlabel: str, ylabel: str, title: str, fmt: str = ".2f"
) -> None:
    """Heat map of ``values`` (len(rows), len(cols)) with each cell annotated (NaN cells left blank)."""
    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(cols), 1.0 + 0.6 * len(rows)))
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    finite = values[np.isfinite(values)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                color = "black" if values[i, j] > mid else "white"
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_embeddings(
    points: list[np.ndarray], counts: list[np.ndarray], titles: list[str], path: str | Path, suptitle: str = ""
) -> None:
    """Panels of 2-D embeddings (K, 2) of code vectors, coloured by log10(1 + usage count) per code (K,);
    unused codes are grey crosses."""
    plt = _pyplot()
    n = len(points)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    vmax = max(float(np.log10(1 + np.asarray(c)).max()) for c in counts) if counts else 1.0
    sc = None
    for ax, p, c, t in zip(axes[0], points, counts, titles):
        c = np.asarray(c, dtype=float)
        used = c > 0
        ax.scatter(p[~used, 0], p[~used, 1], s=6, marker="x", color="lightgray", lw=0.6)
        sc = ax.scatter(p[used, 0], p[used, 1], s=6, c=np.log10(1 + c[used]), cmap="plasma", vmin=0, vmax=vmax)
        ax.set_title(f"{t}\n{int(used.sum())}/{len(c)} codes used", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if sc is not None:
        fig.colorbar(sc, ax=list(axes[0]), shrink=0.8, label="log10(1 + uses)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9, y=1.06)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


@_chart
def plot_confusions(matrices: list[np.ndarray], titles: list[str], class_names: list[str], path: str | Path,
                    suptitle: str = "") -> None:
    """Side-by-side confusion matrices (C, C) (rows = true class), normalised per row, with the counts annotated."""
    plt = _pyplot()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(0.5 + 3.4 * n, 3.6), squeeze=False)
    for ax, m, t in zip(axes[0], matrices, titles):
        m = np.asarray(m, dtype=float)
        rate = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if rate[i, j] > 0.5 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_title(t, fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- code sequences (PQ-VAE analyses)
@_chart
def plot_bayes(result: dict, path: str | Path, title: str = "Bayes classifier from code counts",
               methods: tuple[str, ...] = ("independent", "conditional")) -> None:
    """Test accuracy vs number of leading codes, one line per method (a result of
    ``hiervq.experiments.pqvae.bayes_curves``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for method in methods:
        ax.plot(result["prefix_lengths"], [100 * a for a in result[method]], label=method)
    ax.set_xlabel("number of leading codes used")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_information(removal: dict, entropy: dict, path: str | Path) -> None:
    """Two panels: test MSE with position l removed, and H(z_l | x, z_<l) per position."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(removal["positions"], removal["removed_mse"], ".-", label="code l removed")
    axes[0].axhline(removal["full_mse"], color="gray", ls=":", label="all codes")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("position l")
    axes[0].set_ylabel("test MSE")
    axes[0].set_title("reconstruction error without code l")
    axes[0].legend(fontsize=8)
    axes[1].plot(entropy["positions"], entropy["conditional_entropy_bits"], ".-", label="H(z_l | x, z_<l) (softmax)")
    axes[1].plot(entropy["positions"], entropy["marginal_entropy_bits"], ".-", label="H(z_l) (code histogram)")
    axes[1].set_xlabel("position l")
    axes[1].set_ylabel("bits")
    axes[1].set_title("entropy per position")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_progressive(images: torch.Tensor, lengths: list[int], path: str | Path) -> None:
    """A grid from ``hiervq.experiments.pqvae.progressive_reconstructions`` with the prefix lengths as column titles."""
    plt = _pyplot()
    cols = 1 + len(lengths)
    rows = images.shape[0] // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.3), squeeze=False)
    for r in range(rows):
        for col in range(cols):
            img = images[r * cols + col].permute(1, 2, 0).numpy()
            ax = axes[r][col]
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                      vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if col == 0 else f"l={lengths[col - 1]}", fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_nll(history: list[dict], path: str | Path, uniform_bits_per_code: float | None = None) -> None:
    """A prior run's curve: train and val (else test) negative log-likelihood in bits per code against the epoch (records of
    its ``metrics.jsonl``), with the uniform code length log2(K) as a reference line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    held_out = "val" if any("val" in r for r in history) else "test"  # per-epoch numbers: val when there is one
    for split, style in (("train", "o-"), (held_out, "s-")):
        pts = [(r["epoch"], r[split]["bits_per_code"]) for r in history if "bits_per_code" in (r.get(split) or {})]
        if pts:
            ax.plot(*zip(*pts), style, label=split)
    if uniform_bits_per_code is not None:
        ax.axhline(uniform_bits_per_code, color="gray", linestyle="--", linewidth=1,
                   label=f"uniform log2 K = {uniform_bits_per_code:.2f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (bits per code)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@_chart
def plot_series(labels: list[str], series: dict[str, list[float]], path: str | Path, xlabel: str, ylabel: str) -> None:
    """One line per entry of ``series`` (name -> a value per label, NaN where missing) over categorical ``labels``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, ys in series.items():
        ax.plot(range(len(labels)), ys, "o-", label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=20)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rate_distortion(curves: dict[str, list[dict]], points: dict[str, dict], path: str | Path,
                         metrics: tuple[tuple[str, str], ...] = (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"))) -> None:
    """Rate-distortion panels, one per ``(key, label)`` of ``metrics`` against bits per pixel: ``curves`` (name ->
    rows with ``bpp`` and the metric keys, e.g. a classical codec over its qualities) as lines, ``points`` (name ->
    one such row, e.g. a trained model) as labelled markers."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        for name, rows in curves.items():
            rows = sorted(rows, key=lambda r: r["bpp"])
            ax.plot([r["bpp"] for r in rows], [r[key] for r in rows], ".-", label=name)
        for name, row in points.items():
            ax.plot(row["bpp"], row[key], "*", markersize=12, label=name)
        ax.set_xlabel("bits per pixel (file size, headers included)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
