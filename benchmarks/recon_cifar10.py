"""Reconstruction quality on CIFAR-10 at 512 bits per image: single-level VQ-VAE vs 2-level hierarchical VQ-VAE.

Trains configs/vqvae-cifar10.yaml (8x8 codes, K = 256) and configs/hvqvae2-cifar10-512.yaml (8x8 codes from K = 64
plus 4x4 codes from K = 256: also 512 bits) on the training split (47,500 images since the data's default
validation split; the committed entries of these two used all 50,000) with the library's own `train_run`,
evaluates on the full test split (MSE on [0, 1], PSNR, SSIM) and writes benchmarks/results/recon_cifar10.json
(after each model):

    {"vqvae": {"mse", "psnr", "ssim", "perplexity", "epochs", "train_s", "threads", "curve", ...}, "hvqvae": {...},
     "hvqvae_wide": {...}}

``hvqvae_wide`` (configs/hvqvae2-cifar10-512-wide.yaml, the 2-level model 1.5x wider) trains on the 47,500 images
left after the validation split, keeps the best epoch on val and has ``"selected_on": "val"``; with ``--seeds 0,1``
a model runs once per seed (runs/.../NAME-seedN) and its entry holds the mean with ``seed_mse``, ``seed_val_mse``,
``seed_train_s`` and every run (``runs``); ``curve`` is then the first seed's val MSE per epoch (``val_mse``).
The two older entries were trained before the validation split existed (all 50,000 images, per-epoch test MSE).

Published rows at this budget (test MSE): VQ-VAE 3.63e-3, VQ-WAE 3.43e-3, SQ-VAE 3.27e-3, PQ-VAE 2.96e-3.
``curve`` holds the test MSE after every epoch (first ``train.eval_limit`` test images) with the training seconds
so far. Run from the repository root (data in ../shared/data/cifar10), alone on the machine for honest timings:

    python benchmarks/recon_cifar10.py [--only vqvae] [--seeds 0,1] [--set train.epochs=2 ...] [--runs runs/bench-recon-cifar10]
    python benchmarks/recon_cifar10.py --plot-only      # redraw docs/recon_cifar10_curve.png from the JSON

The committed variants came from this script with ``--output`` (docs/reconstruction.md): recon_cifar10_28epochs.json
(both models at 28 epochs, run when the VQ-VAE recipe itself ran 28) and recon_cifar10_seed1.json (``--only vqvae
--set seed=1``).
"""

from __future__ import annotations

from recon_mnist import ROOT
from recon_mnist import main as recon_main

MODELS = {"vqvae": ROOT / "configs" / "vqvae-cifar10.yaml", "hvqvae": ROOT / "configs" / "hvqvae2-cifar10-512.yaml",
          "hvqvae_wide": ROOT / "configs" / "hvqvae2-cifar10-512-wide.yaml"}
RESULT = ROOT / "benchmarks" / "results" / "recon_cifar10.json"
FIGURE = ROOT / "docs" / "recon_cifar10_curve.png"
PUBLISHED = {"VQ-VAE": 3.63e-3, "PQ-VAE": 2.96e-3}
LABELS = {"vqvae": "VQ-VAE (8x8, K=256)", "hvqvae": "2-level (8x8 K=64 + 4x4 K=256)",
          "hvqvae_wide": "2-level, 192 channels (val-selected)"}


def main() -> None:
    lines = [(PUBLISHED["VQ-VAE"], "bar: published VQ-VAE 3.63e-3", "--"),
             (PUBLISHED["PQ-VAE"], "target: published PQ-VAE 2.96e-3", ":")]
    recon_main(MODELS, RESULT, FIGURE, "runs/bench-recon-cifar10", extra=lambda summary, _run: {"ssim": summary["ssim"]},
               labels=LABELS, lines=lines, title="CIFAR-10 32x32, 512 bits per image",
               description=__doc__.splitlines()[0], script="benchmarks/recon_cifar10.py")


if __name__ == "__main__":
    main()
