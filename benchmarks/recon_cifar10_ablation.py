"""What each ingredient of the CIFAR-10 VQ-VAE recipe is worth: leave-one-out variants at 4 epochs.

Runs (or continues: finished points are skipped) the sweep of configs/vqvae-cifar10-ablation.yaml -- the
configs/vqvae-cifar10.yaml recipe (8x8 codes, K = 256, 512 bits/image, bf16 autocast) with one ingredient removed
at a time, and the plain VQ-VAE it started from -- then writes benchmarks/results/recon_cifar10_ablation.json in the
format of recon_mnist_ablation.json:

    {"epochs": int, "threads": int,
     "variants": {"recipe": {"mse", "psnr", "perplexity", "used_fraction", "params", "train_s", "overrides"}, ...}}

MSE is on [0, 1] over the full CIFAR-10 test split (10,000 images); ``perplexity`` is the test-set perplexity of
the codebook. The variants are compared, not selected: the recipe was fixed before this sweep ran. Run from the
repository root (data in ../shared/data/cifar10):

    python benchmarks/recon_cifar10_ablation.py [--runs runs/vqvae-cifar10-ablation] [--set train.epochs=2 ...]
"""

from __future__ import annotations

from recon_mnist_ablation import ROOT
from recon_mnist_ablation import main as ablation_main

CONFIG = ROOT / "configs" / "vqvae-cifar10-ablation.yaml"
RESULT = ROOT / "benchmarks" / "results" / "recon_cifar10_ablation.json"

if __name__ == "__main__":
    ablation_main(CONFIG, RESULT, "runs/vqvae-cifar10-ablation", __doc__.splitlines()[0],
                  script="benchmarks/recon_cifar10_ablation.py")
