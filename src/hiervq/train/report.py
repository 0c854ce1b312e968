"""A run's report: summary.json, reconstructions.png, curves.png, usage.png and report.md tying them together;
a prior run's report: nll.png and report.md (:func:`write_prior_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data import ImageSet
from ..io import (
    atomic_write_bytes,
    write_json,  # noqa: F401 - re-exported: hiervq.train.report.write_json
)
from ..layout import RunDir
from ..metrics import ssim_setting
from ..metrics.plots import have_matplotlib, plot_curves, plot_lorenz, plot_nll, plot_reconstructions
from ..models.base import DiscreteAutoencoder


def make_summary(model: DiscreteAutoencoder, final: dict[str, Any], history: list[dict], train_s: float) -> dict:
    """The run's ``summary.json`` content from the final test evaluation and the history."""
    budget = model.budget()
    levels = []
    for info, health in zip(model.levels, final["levels"]):
        levels.append({"grid": list(info.grid), "code_dim": info.code_dim, "channels": info.channels, **health})
    return {
        "model": model.registry_name,
        "mse": final["mse"],
        "mse_std": final["mse_std"],
        "psnr": final["psnr"],
        "psnr_std": final["psnr_std"],
        "psnr_of_mean_mse": final["psnr_of_mean_mse"],
        "ssim": final["ssim"],
        "ssim_std": final["ssim_std"],
        "ms_ssim": final["ms_ssim"],
        "ms_ssim_std": final["ms_ssim_std"],
        "ssim_setting": ssim_setting(*model.image_shape[1:]).describe(),
        "test_images": final["images"],
        "bits_per_image": budget.bits_per_image,
        "budget": {"continuous": budget.continuous, "discrete": budget.discrete},
        "params": model.num_parameters(),
        "epochs": history[-1]["epoch"] if history else 0,
        "steps": history[-1]["step"] if history else 0,
        "train_s": round(train_s, 2),
        "levels": levels,
        "losses": {k[5:]: v for k, v in final.items() if k.startswith("loss_")},
    }


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-epoch records of ``run_dir/metrics.jsonl`` ([] when there is none); :meth:`RunDir.read_metrics
    <hiervq.layout.RunDir.read_metrics>`, kept for compatibility."""
    return RunDir(run_dir).read_metrics()


def write_report(
    run_dir: Path,
    model: DiscreteAutoencoder,
    test: ImageSet,
    summary: dict,
    history: list[dict],
    counts: list[torch.Tensor],
    title: str = "hiervq run",
) -> None:
    """Write the figures and ``report.md`` of a finished run into ``run_dir``."""
    run_dir = Path(run_dir)
    model.eval()
    x, _ = test.batch(slice(0, 16))
    device = next(model.parameters()).device
    with torch.no_grad():
        recon = model(x.to(device)).recon.cpu()
    plot_reconstructions(x, recon, run_dir / "reconstructions.png")
    sizes = [lv["codebook_size"] for lv in summary["levels"]]
    if history:
        plot_curves(history, run_dir / "curves.png", codebook_sizes=sizes)
    labels = [f"level {i} {tuple(lv['grid'])} K={lv['codebook_size']}" for i, lv in enumerate(summary["levels"])]
    plot_lorenz(counts, labels, run_dir / "usage.png")
    charts = have_matplotlib()
    no_chart = "\n(not drawn: matplotlib is not installed; `pip install 'hiervq[plots]'` and rerun to get it)\n"
    usage_figure = "![code usage](usage.png)" if charts else no_chart
    curves_figure = "![curves](curves.png)" if charts else no_chart
    ssim_row = (f"{summary['ssim']:.4f} ± {summary['ssim_std']:.4f} | {summary['ms_ssim']:.4f} ± "
                f"{summary['ms_ssim_std']:.4f}" if "ssim" in summary else "- | -")

    rows = "\n".join(
        f"| {i} | {'x'.join(str(v) for v in lv['grid'])} | {lv['codebook_size']} | {lv['code_dim']} | "
        f"{lv['perplexity']:.1f} | {lv['normalized_perplexity']:.3f} | {lv['used_fraction']:.3f} | "
        f"{lv['dead_codes']} | {lv['gini']:.3f} |"
        for i, lv in enumerate(summary["levels"])
    )
    text = f"""# {title}

Model `{summary['model']}`, {summary['params']:,} parameters, trained {summary['epochs']} epochs
({summary['steps']} steps) in {summary['train_s']:.0f} s.

## Test reconstruction ({summary['test_images']} images, pixels on [0, 1])

| MSE | PSNR (dB) | SSIM | MS-SSIM | bits per image | continuous budget | discrete budget |
|-----|-----------|------|---------|----------------|-------------------|-----------------|
| {summary['mse']:.3e} | {summary['psnr']:.2f} ± {summary['psnr_std']:.2f} | {ssim_row} | {summary['bits_per_image']:.0f} | {summary['budget']['continuous']:,} | {summary['budget']['discrete']:,} |

Means ± standard deviations over the test images. {summary.get('ssim_setting', '')}.

![reconstructions](reconstructions.png)

Rows alternate originals and their reconstructions (labelled on the left).

## Codebooks (test set)

| level | grid | K | code dim | perplexity | normalised | used fraction | dead codes | Gini |
|-------|------|---|----------|------------|------------|---------------|------------|------|
{rows}

{usage_figure}

## Training

{curves_figure}

Per-epoch numbers are in `metrics.jsonl`; the resolved configuration is `config.yaml`; the model is in
`model/` (load it with `hiervq.load("{run_dir}")`).
"""
    atomic_write_bytes(RunDir(run_dir).report, text.encode())


def write_prior_report(run_dir: str | Path, summary: dict, history: list[dict]) -> None:
    """Write ``nll.png`` (train and val (else test) NLL in bits per code per epoch; needs matplotlib) and ``report.md`` (the
    final numbers and the per-epoch table, which need nothing) of a finished prior run into ``run_dir``."""
    run_dir = Path(run_dir)
    if history:
        plot_nll(history, run_dir / "nll.png", summary.get("uniform_bits_per_code"))
    figure = ("![NLL per epoch](nll.png)" if have_matplotlib() and history else
              "(curve not drawn: matplotlib is not installed; `pip install 'hiervq[plots]'` and rerun to get it)")

    def bits(record: dict, split: str) -> str:
        value = (record.get(split) or {}).get("bits_per_code")
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    split = "val" if any("val" in r for r in history) else "test"  # per-epoch numbers: val when there is one
    rows = "\n".join(f"| {r.get('epoch')} | {r.get('step')} | {bits(r, 'train')} | {bits(r, split)} | "
                      f"{r.get('train_s', 0):.0f} |" for r in history)
    chosen = (f" The prior kept is epoch {summary.get('selected_epoch')}'s, the one with the fewest validation bits "
              f"({summary['val']['bits_per_code']:.4f} bits/code on {summary['val']['images']} validation images); "
              "the test split was evaluated once, at the end." if summary.get("selected_on") == "val" else "")
    grid = "x".join(str(v) for v in summary.get("grid") or [])
    conditional = "class-conditional" if summary.get("class_conditional") else "unconditional"
    text = f"""# hiervq prior run: level {summary.get('level')}

A {conditional} prior over the {grid} codes (K = {summary.get('codebook_size')}) of level {summary.get('level')} of
`{summary.get('autoencoder')}`: {summary.get('params', 0):,} parameters, {summary.get('epochs')} epochs in
{summary.get('train_s', 0):.0f} s on {summary.get('train_images')} training images' codes.

## Test negative log-likelihood ({summary.get('test_images')} images)

| bits per code | bits per image | uniform bits per image (log2 K x codes) | saved |
|---------------|----------------|------------------------------------------|-------|
| {summary['bits_per_code']:.4f} | {summary['bits_per_image']:.1f} | {summary['uniform_bits_per_image']:.1f} | {summary['saved_fraction']:.1%} |

## Training

{figure}

| epoch | step | train bits/code | {split} bits/code | train s |
|-------|------|-----------------|----------------|---------|
{rows}

Train values are means over the epoch's batches; per-epoch {split} values are over the first `train.eval_limit`
{split} codes, the final numbers above over all test codes.{chosen} The prior is in `model/`; sample with
`hiervq sample {summary.get('autoencoder')}`.
"""
    atomic_write_bytes(RunDir(run_dir).report, text.encode())
