"""Baseline for the priors: test bits per code of a per-position unigram model of a run's cached codes.

    python benchmarks/priors_unigram.py runs/bench-priors-cifar10

Reads ``RUN/codes.npz`` (written by ``hiervq prior``), estimates Laplace-smoothed code frequencies per position
from the train codes and reports their cross-entropy on the test codes, per level, next to the uniform log2(K)
(``codes_per_image`` counts every position of every scale of a multi-scale level, whose ``grid`` is its last scale).
A prior that beats this uses more than how often each code occurs at each position.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np


def unigram_bits(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """Mean test bits per code under per-position add-one-smoothed frequencies of ``train`` (N, P) codes."""
    bits = []
    for j in range(train.shape[1]):
        p = np.bincount(train[:, j], minlength=k) + 1.0
        p /= p.sum()
        bits.append(-np.log2(p[test[:, j]]).mean())
    return float(np.mean(bits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="autoencoder run directory with codes.npz")
    args = ap.parse_args()
    import hiervq
    from hiervq.layout import RunDir

    model = hiervq.load(args.run)
    archive = np.load(RunDir(args.run).codes)
    rows = []
    for level, info in enumerate(model.levels):
        tr = archive[f"train_codes{level}"].astype(np.int64)
        te = archive[f"test_codes{level}"].astype(np.int64)
        bits = unigram_bits(tr.reshape(len(tr), -1), te.reshape(len(te), -1), info.codebook_size)
        row = {"level": level, "grid": list(info.grid), "codes_per_image": info.codes_per_image,
               "codebook_size": info.codebook_size, "unigram_bits_per_code": round(bits, 4),
               "uniform_bits_per_code": math.log2(info.codebook_size)}
        if info.scales is not None:  # a multi-scale level: "grid" is its last scale, its codes are all scales'
            row["scales"] = [list(scale) for scale in info.scales]
        rows.append(row)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
