"""Baseline for the priors: test bits per code of a per-position unigram model of a run's cached codes.

    python benchmarks/priors_unigram.py runs/bench-priors-cifar10 [--output benchmarks/results/priors_unigram.json]

Reads ``RUN/codes.npz`` (written by ``hiervq prior``), estimates Laplace-smoothed code frequencies per position
from the train codes and reports their cross-entropy on the test codes, per level, next to the uniform log2(K)
(``codes_per_image`` counts every position of every scale of a multi-scale level, whose ``grid`` is its last scale).
A prior that beats this uses more than how often each code occurs at each position. Prints and writes (default
``benchmarks/results/priors_unigram.json``; one file per run, so name another run's with ``--output``, e.g.
``benchmarks/results/priors_unigram_nextscale_mnist.json``):

    {"script", "run", "train_images", "test_images",
     "levels": [{"level", "grid", "codes_per_image", "codebook_size", "unigram_bits_per_code",
                 "unigram_bits_per_image", "uniform_bits_per_code", "uniform_bits_per_image"[, "scales"]}, ...],
     "unigram_bits_per_image", "uniform_bits_per_image"}

The run takes seconds (no training): it counts codes that ``hiervq prior`` already extracted.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "priors_unigram.json"


def unigram_bits(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """Mean test bits per code under per-position add-one-smoothed frequencies of ``train`` (N, P) codes."""
    bits = []
    for j in range(train.shape[1]):
        p = np.bincount(train[:, j], minlength=k) + 1.0
        p /= p.sum()
        bits.append(-np.log2(p[test[:, j]]).mean())
    return float(np.mean(bits))


def unigram_result(run: str | Path) -> dict:
    """The unigram baseline of every level of ``run`` (an autoencoder run directory with codes.npz)."""
    import hiervq
    from hiervq.layout import RunDir

    model = hiervq.load(run)
    archive = np.load(RunDir(run).codes)
    rows = []
    images = {}
    for level, info in enumerate(model.levels):
        tr = archive[f"train_codes{level}"].astype(np.int64)
        te = archive[f"test_codes{level}"].astype(np.int64)
        images = {"train_images": len(tr), "test_images": len(te)}
        tr, te = tr.reshape(len(tr), -1), te.reshape(len(te), -1)
        bits = unigram_bits(tr, te, info.codebook_size)
        codes = tr.shape[1]
        uniform = math.log2(info.codebook_size)
        row = {"level": level, "grid": list(info.grid), "codes_per_image": info.codes_per_image,
               "codebook_size": info.codebook_size, "unigram_bits_per_code": bits,
               "unigram_bits_per_image": bits * codes, "uniform_bits_per_code": uniform,
               "uniform_bits_per_image": uniform * codes}
        if info.scales is not None:  # a multi-scale level: "grid" is its last scale, its codes are all scales'
            row["scales"] = [list(scale) for scale in info.scales]
        rows.append(row)
    return {"script": "benchmarks/priors_unigram.py", "run": str(run), **images, "levels": rows,
            "unigram_bits_per_image": sum(r["unigram_bits_per_image"] for r in rows),
            "uniform_bits_per_image": sum(r["uniform_bits_per_image"] for r in rows)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="autoencoder run directory with codes.npz")
    ap.add_argument("--output", default=str(RESULT), help="the JSON to write (default %(default)s)")
    args = ap.parse_args(argv)
    from hiervq.io import write_json

    result = unigram_result(args.run)
    write_json(args.output, result)
    print(json.dumps(result, indent=2))
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
