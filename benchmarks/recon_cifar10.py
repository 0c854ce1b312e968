"""Reconstruction quality on CIFAR-10 at 512 bits per image: single-level VQ-VAE vs 2-level hierarchical VQ-VAE.

Trains configs/vqvae-cifar10.yaml (8x8 codes, K = 256) and configs/hvqvae2-cifar10-512.yaml (8x8 codes from K = 64
plus 4x4 codes from K = 256: also 512 bits) on all 50,000 training images with the library's own `train_run`,
evaluates on the full test split (MSE on [0, 1], PSNR, SSIM) and writes benchmarks/results/recon_cifar10.json
(after each model):

    {"vqvae": {"mse", "psnr", "ssim", "perplexity", "epochs", "train_s", "threads", "curve", ...}, "hvqvae": {...}}

Published rows at this budget (test MSE): VQ-VAE 3.63e-3, VQ-WAE 3.43e-3, SQ-VAE 3.27e-3, PQ-VAE 2.96e-3.
``curve`` holds the test MSE after every epoch (first ``train.eval_limit`` test images) with the training seconds
so far. Run from the repository root (data in ../shared/data/cifar10), alone on the machine for honest timings:

    python benchmarks/recon_cifar10.py [--only vqvae] [--set train.epochs=2 ...] [--runs runs/bench-recon-cifar10]
    python benchmarks/recon_cifar10.py --plot-only      # redraw docs/recon_cifar10_curve.png from the JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recon_mnist import ROOT, plot_curves, run_models

MODELS = {"vqvae": ROOT / "configs" / "vqvae-cifar10.yaml", "hvqvae": ROOT / "configs" / "hvqvae2-cifar10-512.yaml"}
RESULT = ROOT / "benchmarks" / "results" / "recon_cifar10.json"
FIGURE = ROOT / "docs" / "recon_cifar10_curve.png"
PUBLISHED = {"VQ-VAE": 3.63e-3, "PQ-VAE": 2.96e-3}
LABELS = {"vqvae": "VQ-VAE (8x8, K=256)", "hvqvae": "2-level (8x8 K=64 + 4x4 K=256)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append", help="run only these models")
    parser.add_argument("--set", action="append", default=[], help="config override for every model")
    parser.add_argument("--runs", default="runs/bench-recon-cifar10", help="where the run directories go")
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--figure", default=str(FIGURE), help="test MSE against training time, both models")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the figure from --output")
    args = parser.parse_args()

    output = Path(args.output)
    if args.plot_only:
        results = json.loads(output.read_text()) if output.is_file() else {}
    else:
        results = run_models(MODELS, args, output, extra=lambda summary, _run: {"ssim": summary["ssim"]})
    lines = [(PUBLISHED["VQ-VAE"], "bar: published VQ-VAE 3.63e-3", "--"),
             (PUBLISHED["PQ-VAE"], "target: published PQ-VAE 2.96e-3", ":")]
    plot_curves(results, Path(args.figure), LABELS, lines, "CIFAR-10 32x32, 512 bits per image")


if __name__ == "__main__":
    main()
