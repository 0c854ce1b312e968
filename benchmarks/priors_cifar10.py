"""The whole generation flow on CIFAR-10: 3-level ConvNeXt VQ-VAE, a class-conditional PixelCNN per level, sampling.

    python benchmarks/priors_cifar10.py [--config ...] [--set ...] [--n 64]
    python benchmarks/priors_cifar10.py --summarize    # train nothing: add the totals to the existing JSON

Trains ``configs/hvqvae3-convnext-cifar10.yaml`` into ``runs/bench-priors-cifar10`` (replaced), fits every
level's prior (top first), samples ``--n`` images (one row per class) and writes

* ``benchmarks/results/priors_cifar10.json``: ``{"recon_psnr": float, "levels": [{"grid": [h, w],
  "codebook_size": int, "bits_per_image": float, "uniform_bits_per_image": float, "dead_fraction": float,
  "perplexity": float}, ...], "samples_per_s": float, "bits_per_image": float, "uniform_bits_per_image": float}``
  (test split; levels bottom first; bits per image = test negative log-likelihood of the level's codes under its
  prior; dead_fraction = share of the level's codes that no test image uses; perplexity = the autoencoder's
  test-set code perplexity; samples per second over all levels and the decoder; the top-level
  ``bits_per_image``/``uniform_bits_per_image`` are the levels' sums, :func:`totals`);
* ``docs/priors_cifar10_samples.png``: the sample grid;
* ``benchmarks/results/priors_cifar10_log.json``: timings and per-level details behind the numbers (beside
  ``--results``, named after it: ``X_log.json`` for ``X.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared, busy 2-core machine spinning threads made small
# convolutions up to 10x slower. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def totals(result: dict) -> dict:
    """The whole model's test bits per image under its priors and the uniform bound: the sums over the levels."""
    return {"bits_per_image": sum(lv["bits_per_image"] for lv in result["levels"]),
            "uniform_bits_per_image": sum(lv["uniform_bits_per_image"] for lv in result["levels"])}


def log_path(results: Path) -> Path:
    """The log beside ``results``: ``priors_cifar10_log.json`` for the default ``priors_cifar10.json``, ``X_log.json``
    for ``--results X.json`` (a run with other settings does not overwrite the committed log)."""
    return results.with_name(f"{results.stem}_log.json")


def main() -> None:
    from hiervq.io import write_json
    from hiervq.layout import RunDir
    from hiervq.metrics.plots import save_image_grid
    from hiervq.pretrained import load
    from hiervq.priors import prior_kind_for
    from hiervq.priors.sampling import sample_run
    from hiervq.train import load_config, train_run
    from hiervq.train.priors import prior_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "hvqvae3-convnext-cifar10.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config override (key=value)")
    ap.add_argument("--run", default=str(REPO / "runs" / "bench-priors-cifar10"))
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--skip-train", action="store_true", help="reuse the trained autoencoder in --run")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "priors_cifar10.json"))
    ap.add_argument("--grid", default=str(REPO / "docs" / "priors_cifar10_samples.png"))
    ap.add_argument("--summarize", action="store_true",
                    help="train nothing: add the keys derived from the existing --results JSON (the totals) to it")
    args = ap.parse_args()
    if args.summarize:
        result = json.loads(Path(args.results).read_text())
        result.update(totals(result))
        write_json(Path(args.results), result)
        print(json.dumps(totals(result), indent=2))
        return

    run = Path(args.run)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if not args.skip_train:
        config = load_config(args.config, args.set)
        t0 = time.perf_counter()
        train_run(config, run, overwrite=True)
        timings["autoencoder_s"] = time.perf_counter() - t0
    ae_summary = RunDir(run).read_summary()
    model = load(run)
    kind = prior_kind_for(model)
    summaries = {}
    for level in kind.prior_levels(model):  # top first
        t0 = time.perf_counter()
        summaries[level] = prior_run(run, level, overwrite=True)
        timings[f"prior_level{level}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = sample_run(run, n=args.n, seed=0)
    timings["sampling_s"] = time.perf_counter() - t0
    Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(samples.images, args.grid, nrow=samples.nrow)
    timings["total_s"] = time.perf_counter() - t_start

    ae_levels = ae_summary["levels"]  # bottom first, test split
    levels = [
        {
            "grid": summaries[lv]["grid"],
            "codebook_size": summaries[lv]["codebook_size"],
            "bits_per_image": summaries[lv]["bits_per_image"],
            "uniform_bits_per_image": summaries[lv]["uniform_bits_per_image"],
            "dead_fraction": ae_levels[lv]["dead_codes"] / ae_levels[lv]["codebook_size"],
            "perplexity": ae_levels[lv]["perplexity"],
        }
        for lv in sorted(summaries)  # bottom first
    ]
    result = {"script": "benchmarks/priors_cifar10.py", "recon_psnr": ae_summary["psnr"], "levels": levels, "samples_per_s": samples.samples_per_s}
    result.update(totals(result))
    write_json(Path(args.results), result)
    log = {
        "script": "benchmarks/priors_cifar10.py",
        "config": str(Path(args.config).relative_to(REPO)) if Path(args.config).is_relative_to(REPO) else args.config,
        "overrides": args.set,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "autoencoder": {k: ae_summary[k] for k in ("mse", "psnr", "bits_per_image", "params", "epochs", "train_s")},
        "priors": [summaries[lv] for lv in sorted(summaries)],
        "samples": {"n": len(samples.images), "seconds": samples.seconds, "samples_per_s": samples.samples_per_s},
    }
    write_json(log_path(Path(args.results)), log)
    print(json.dumps(result, indent=2))
    for s in log["priors"]:
        print(
            f"level {s['level']} {s['grid']} K={s['codebook_size']}: {s['bits_per_image']:.1f} bits/image vs uniform "
            f"{s['uniform_bits_per_image']:.1f} ({s['saved_bits_per_image']:.1f} bits, {s['saved_fraction']:.1%} fewer)"
        )
    print(f"timings: {log['timings_s']}")


if __name__ == "__main__":
    main()
