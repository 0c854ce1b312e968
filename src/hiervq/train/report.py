"""A run's report: summary.json, reconstructions.png, curves.png, usage.png and report.md tying them together."""

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
    from ..metrics.plots import plot_curves, plot_lorenz, plot_reconstructions

    run_dir = Path(run_dir)
    model.eval()
    x, _ = test.batch(slice(0, 16))
    device = next(model.parameters()).device
    with torch.no_grad():
        recon = model(x.to(device)).recon.cpu()
    plot_reconstructions(x, recon, run_dir / "reconstructions.png")
    if history:
        plot_curves(history, run_dir / "curves.png")
    labels = [f"level {i} {tuple(lv['grid'])} K={lv['codebook_size']}" for i, lv in enumerate(summary["levels"])]
    plot_lorenz(counts, labels, run_dir / "usage.png")

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

| MSE | PSNR (dB, mean ± std over images) | bits per image | continuous budget | discrete budget |
|-----|-----------------------------------|----------------|-------------------|-----------------|
| {summary['mse']:.3e} | {summary['psnr']:.2f} ± {summary['psnr_std']:.2f} | {summary['bits_per_image']:.0f} | {summary['budget']['continuous']:,} | {summary['budget']['discrete']:,} |

![reconstructions](reconstructions.png)

Originals (odd rows) above their reconstructions (even rows).

## Codebooks (test set)

| level | grid | K | code dim | perplexity | normalised | used fraction | dead codes | Gini |
|-------|------|---|----------|------------|------------|---------------|------------|------|
{rows}

![code usage](usage.png)

## Training

![curves](curves.png)

Per-epoch numbers are in `metrics.jsonl`; the resolved configuration is `config.yaml`; the model is in
`model/` (load it with `hiervq.load("{run_dir}")`).
"""
    atomic_write_bytes(RunDir(run_dir).report, text.encode())
