"""What bf16 autocast (``train.amp: true``) costs in quality: a paired check on the CIFAR-10 VQ-VAE recipe.

For each seed, trains configs/vqvae-cifar10.yaml twice from the same initialisation and the same batches, once in
float32 and once with bf16 autocast, for the same number of steps (``--steps``, default 400, on a fixed subset of
``steps * batch_size`` training images), and evaluates both in float32 on the full test split (evaluation never runs
under autocast). Nothing is selected: each run is measured once, at its last step. Writes
benchmarks/results/bf16_paired.json after every run:

    {"script", "config", "steps", "batch_size", "threads", "test_images",
     "runs": [{"seed", "float32": {"mse", "psnr", "train_s"}, "bf16": {...}, "rel_mse": float}, ...],
     "rel_mse_mean": float, "rel_mse_std": float, "speedup_mean": float, "float32_mse_spread": float}

``rel_mse`` is bf16 MSE / float32 MSE - 1 for the same seed; ``float32_mse_spread`` is the seed spread of the
float32 runs alone, max / min - 1 of their test MSE. Run from the repository root (data in ../shared/data/cifar10),
alone on the machine if the ``train_s`` figures are to be quoted:

    OMP_NUM_THREADS=2 python benchmarks/bf16_paired.py [--seeds 0,1,2] [--steps 400] [--threads 2]

``--summarize`` trains nothing: it recomputes the summary keys from the runs of the existing JSON and writes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from hiervq.io import write_json
from hiervq.train import load_config, train_run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vqvae-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "bf16_paired.json"


def summarize(results: dict) -> dict:
    """Set the summary keys of ``results`` from its runs: the mean and std of ``rel_mse``, the mean speed-up and the
    float32 seed spread."""
    runs = results["runs"]
    rel = [r["rel_mse"] for r in runs]
    results["rel_mse_mean"] = statistics.fmean(rel)
    results["rel_mse_std"] = statistics.stdev(rel) if len(rel) > 1 else 0.0
    results["speedup_mean"] = statistics.fmean(r["speedup"] for r in runs)
    float32 = [r["float32"]["mse"] for r in runs]
    results["float32_mse_spread"] = max(float32) / min(float32) - 1.0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs/bench-bf16-paired")
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: recompute the summary keys of the existing JSON (--output)")
    args = parser.parse_args()
    if args.summarize:
        output = Path(args.output)
        results = summarize(json.loads(output.read_text()))
        write_json(output, results)
        report(results)
        return
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(CONFIG, [])
    batch = base.train.batch_size
    overrides = [f"data.train_limit={args.steps * batch}", "train.epochs=1", "train.eval_limit=1000",
                 f"train.warmup_steps={min(base.train.warmup_steps, args.steps // 2)}", "train.progress=false"]
    results = {"script": "benchmarks/bf16_paired.py", "config": str(CONFIG.relative_to(ROOT)), "steps": args.steps,
               "batch_size": batch, "threads": torch.get_num_threads(), "overrides": overrides, "runs": []}
    previous = json.loads(output.read_text()) if output.is_file() else {}
    if previous.get("steps") == args.steps and previous.get("threads") == results["threads"]:
        results["runs"] = [r for r in previous.get("runs", []) if "rel_mse" in r and r["seed"] not in seeds]
    for seed in seeds:
        row = {"seed": seed}
        for name, amp in (("float32", False), ("bf16", True)):
            config = load_config(CONFIG, [*overrides, f"seed={seed}", f"train.amp={str(amp).lower()}"])
            summary = train_run(config, Path(args.runs) / f"seed{seed}-{name}", overwrite=True)
            row[name] = {"mse": summary["mse"], "psnr": summary["psnr"], "train_s": summary["train_s"]}
            results["test_images"] = summary["test_images"]
            print(f"seed {seed} {name}: test MSE {summary['mse']:.4e} in {summary['train_s']:.0f} s", flush=True)
        row["rel_mse"] = row["bf16"]["mse"] / row["float32"]["mse"] - 1.0
        row["speedup"] = row["float32"]["train_s"] / row["bf16"]["train_s"]
        results["runs"].append(row)
        write_json(output, summarize(results))
    report(results)


def report(results: dict) -> None:
    print(f"bf16 vs float32 test MSE: {100 * results['rel_mse_mean']:+.2f} +- {100 * results['rel_mse_std']:.2f} % "
          f"(float32 seed spread {100 * results['float32_mse_spread']:.1f} %)")


if __name__ == "__main__":
    main()
