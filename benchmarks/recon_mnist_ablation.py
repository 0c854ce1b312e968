"""What each ingredient of the MNIST VQ-VAE recipe is worth: leave-one-out variants at 10 epochs.

Runs (or continues: finished points are skipped) the sweep of configs/vqvae-mnist-ablation.yaml -- the
configs/vqvae-mnist.yaml recipe (8x8 codes, K = 256, 512 bits/image) with one ingredient removed at a time, and
the plain 128-channel straight-through VQ-VAE it started from -- then writes
benchmarks/results/recon_mnist_ablation.json:

    {"epochs": int, "threads": int,
     "variants": {"recipe": {"mse", "psnr", "perplexity", "used_fraction", "params", "train_s", "overrides"}, ...}}

MSE is on [0, 1] over the full MNIST test split; ``perplexity`` is the test-set perplexity of the codebook.
Run from the repository root, alone on the machine for honest times (about 32 minutes on 2 cores):

    python benchmarks/recon_mnist_ablation.py [--runs runs/vqvae-mnist-ablation] [--set train.epochs=5 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hiervq.experiments.sweep import run_sweep
from hiervq.train import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vqvae-mnist-ablation.yaml"
RESULT = ROOT / "benchmarks" / "results" / "recon_mnist_ablation.json"


def main(config_path: Path = CONFIG, result: Path = RESULT, runs: str = "runs/vqvae-mnist-ablation",
         description: str = __doc__.splitlines()[0], script: str = "benchmarks/recon_mnist_ablation.py") -> None:
    """Run the leave-one-out sweep of ``config_path`` (finished points are skipped) and write ``result``, naming
    ``script`` (the benchmark that ran) in it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", default=runs, help="the sweep's output folder")
    parser.add_argument("--set", action="append", default=[], help="config override for every variant")
    parser.add_argument("--output", default=str(result))
    args = parser.parse_args()

    config = load_config(config_path, args.set)
    table = run_sweep(config, args.runs)
    variants = {}
    for row in table["rows"]:  # one trained model per point
        variants[row["point"]] = {
            "mse": row["mse"],
            "psnr": row["psnr"],
            "perplexity": row["perplexity"],
            "used_fraction": row["used_fraction"],
            "params": row["params"],
            "train_s": row["train_s"],
            "overrides": config.sweep.variants[row["point"]],
        }
    result = {"script": script, "epochs": config.train.epochs, "threads": torch.get_num_threads(), "variants": variants}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    for name, v in variants.items():
        print(f"{name:>14}: test MSE {v['mse']:.3e}, PSNR {v['psnr']:.2f} dB, perplexity {v['perplexity']:.0f}, "
              f"{v['train_s']:.0f} s")


if __name__ == "__main__":
    main()
