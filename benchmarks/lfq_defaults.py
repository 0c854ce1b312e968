"""Do LFQ's defaults collapse? Codes used by a 10-bit LFQ at its defaults in a short training loop (issue 26, item 6).

The loop, the same for every variant:

* data: the first 2,000 CIFAR-10 training images (``/work/shared/data/cifar10/cifar10.npz``, or ``--data``) as
  (B, 3, 32, 32) tensors scaled to [-0.5, 0.5];
* model: a small conv autoencoder, the same for every variant and started from the same weights (seed 0):
  ``encoder = Conv2d(3, 64, 4, stride 2, pad 1) - ReLU - Conv2d(64, 64, 4, stride 2, pad 1) - ReLU -
  Conv2d(64, 64, 3, pad 1)`` (an 8x8 map of 64 channels), the quantizer on that (B, 64, 8, 8) map (dim 64, 10 bits:
  K = 1,024, projected 64 -> 10 -> 64 by the quantizer itself), ``decoder = Conv2d(64, 64, 3, pad 1) - ReLU -
  ConvTranspose2d(64, 64, 4, stride 2, pad 1) - ReLU - ConvTranspose2d(64, 3, 4, stride 2, pad 1)``;
* training: 150 steps of Adam (lr 1e-3), batches of 64 images drawn at random (seed 0), loss =
  MSE(decoder(quantized), images) + the quantizer's own loss (ours: ``Quantized.loss``; vector-quantize-pytorch:
  its ``entropy_aux_loss``);
* score: in eval mode after training, the number of distinct codes over the 2,000 images' 128,000 positions
  (``used_codes``, of 1,024), their perplexity, and the reconstruction MSE over the 2,000 images.

(A linear encoder of 8x8 patches does not collapse at the old defaults, 839 codes: the collapse needs an encoder
that can put out a constant channel.)

Variants: ``hiervq_old_defaults`` (``LFQ(64, 10, beta=0.25, entropy_weight=0.1, diversity=1,
inv_temperature=100)``, the defaults before issue 26), ``hiervq_new_defaults`` (``LFQ(64, 10)``),
``hiervq_inv_temperature_1`` (old defaults but ``inv_temperature=1``) and ``vqp`` (vector-quantize-pytorch's
``LFQ(dim=64, codebook_size=1024)`` at its defaults; its forward's ``inv_temperature`` default, 100; skipped when
the package is absent).

Output: ``benchmarks/results/lfq_defaults.json``: ``script``, ``threads``, ``steps``, ``variants`` (one entry per
variant: ``used_codes``, ``perplexity``, ``mse``, ``settings``, ``train_s``).

Usage (about 2 minutes on one thread):

    OMP_NUM_THREADS=1 python benchmarks/lfq_defaults.py
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results" / "lfq_defaults.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10.npz"  # ../shared beside the repository
IMAGES, DIM, BITS, STEPS, BATCH, LR = 2000, 64, 10, 150, 64, 1e-3


def images(path: Path, n: int) -> torch.Tensor:
    """(n, 3, 32, 32) first ``n`` training images, values in [-0.5, 0.5]."""
    x = torch.from_numpy(np.load(path)["train_images"][:n]).float() / 255.0 - 0.5  # (n, 32, 32, 3)
    return x.permute(0, 3, 1, 2).contiguous()


def encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, DIM, 4, 2, 1), nn.ReLU(), nn.Conv2d(DIM, DIM, 4, 2, 1), nn.ReLU(),
                         nn.Conv2d(DIM, DIM, 3, 1, 1))


def decoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(DIM, DIM, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(DIM, DIM, 4, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(DIM, 3, 4, 2, 1))


class Wrapped(nn.Module):
    """A quantizer of either library behind one interface: (quantized, indices, loss)."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        if variant == "vqp":
            from vector_quantize_pytorch import LFQ as VqpLFQ

            self.q = VqpLFQ(dim=DIM, codebook_size=2**BITS)
            self.settings = {"library": "vector-quantize-pytorch", "defaults": True, "inv_temperature": 100.0}
            return
        from hiervq.quantize import LFQ

        options = {
            "hiervq_old_defaults": dict(beta=0.25, entropy_weight=0.1, diversity=1.0, inv_temperature=100.0),
            "hiervq_new_defaults": {},
            "hiervq_inv_temperature_1": dict(beta=0.25, entropy_weight=0.1, diversity=1.0, inv_temperature=1.0),
        }[variant]
        self.q = LFQ(DIM, BITS, **options)
        self.settings = {"library": "hiervq", "beta": self.q.beta, "entropy_weight": self.q.entropy_weight,
                         "diversity": self.q.diversity, "inv_temperature": self.q.inv_temperature}

    def forward(self, z: torch.Tensor):
        if self.variant == "vqp":
            return self.q(z)
        out = self.q(z)
        return out.quantized, out.indices, out.loss


def run(variant: str, data: torch.Tensor) -> dict:
    torch.manual_seed(0)
    enc, dec = encoder(), decoder()
    quant = Wrapped(variant)
    params = [*enc.parameters(), *dec.parameters(), *quant.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    gen = torch.Generator().manual_seed(0)
    quant.train()
    start = time.perf_counter()
    for _ in range(STEPS):
        x = data[torch.randint(data.shape[0], (BATCH,), generator=gen)]
        q, _, qloss = quant(enc(x))
        loss = F.mse_loss(dec(q), x) + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    quant.eval()
    with torch.no_grad():
        q, idx, _ = quant(enc(data))
        mse = float(F.mse_loss(dec(q), data))
    counts = torch.bincount(idx.reshape(-1).long(), minlength=2**BITS).double()
    p = counts / counts.sum()
    perplexity = math.exp(float(-(p[p > 0] * p[p > 0].log()).sum()))
    return {"variant": variant, "used_codes": int((counts > 0).sum()), "of": 2**BITS,
            "perplexity": round(perplexity, 1), "mse": round(mse, 6), "settings": quant.settings,
            "train_s": round(train_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", "-o", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    args = parser.parse_args()
    variants = ["hiervq_old_defaults", "hiervq_new_defaults", "hiervq_inv_temperature_1", "vqp"]
    try:
        import vector_quantize_pytorch  # noqa: F401
    except ImportError:
        print("vector-quantize-pytorch is not installed: skipping its row (pip install 'hiervq[bench]')")
        variants.remove("vqp")
    if args.only:
        variants = [v for v in variants if v in args.only]
    data = images(args.data, IMAGES)
    rows = []
    for variant in variants:
        row = run(variant, data)
        print(json.dumps(row))
        rows.append(row)
    result = {"script": "benchmarks/lfq_defaults.py", "threads": torch.get_num_threads(), "steps": STEPS,
              "batch_images": BATCH, "images": IMAGES, "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
