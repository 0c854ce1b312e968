"""Study 1 on CIFAR-10 at CPU scale: capacity-matched single-level vs hierarchical VQ-VAE, and the collapse ablation.

Runs (or continues: finished points are skipped) the sweeps of configs/capacity-match-cifar10.yaml (three
codebook budgets, each a hierarchical model and its matched single-level twin) and
configs/collapse-ablation-cifar10.yaml (none / +data init / +dead-code reset / +low dim at constant K*D, both
architectures), then writes benchmarks/results/capacity_match_cifar10.json:

    {"pairs": [{"single": {"K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse",
                           "perplexity", "used_fraction", "params"},
                "hier": {same keys, K/D/C per level as lists}}, ...],
     "ablation": {"none": {"single": {...}, "hier": {...}}, "data_init": ..., "dead_reset": ..., "low_dim": ...}}

PSNR/MSE are over the full CIFAR-10 test split (10,000 images; mean and std over images). For the hierarchy,
``perplexity`` is the mean of its levels' test-set perplexities and ``used_fraction`` is used codes / all codes.
Run from the repository root, alone on the machine (14 runs, about 3-6 minutes each on 2 cores):

    python benchmarks/capacity_match_cifar10.py [--runs runs] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hiervq.experiments.sweep import run_sweep
from hiervq.train import load_config

ROOT = Path(__file__).resolve().parents[1]
CAPACITY = ROOT / "configs" / "capacity-match-cifar10.yaml"
ABLATION = ROOT / "configs" / "collapse-ablation-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "capacity_match_cifar10.json"
KEYS = ("K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse", "perplexity",
        "used_fraction", "params")


def pick(row: dict) -> dict:
    return {k: row[k] for k in KEYS}


def pairs_of(table: dict) -> dict[str, dict]:
    """{point name: {"hier": row, "single": row}} from a sweep table of comparison points."""
    out: dict[str, dict] = {}
    for row in table["rows"]:
        out.setdefault(row["point"], {})[row["arch"]] = pick(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="parent folder of the two sweeps' output folders")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()

    runs = Path(args.runs)
    cap = run_sweep(load_config(CAPACITY, args.set), runs / CAPACITY.stem, workers=args.workers)
    abl = run_sweep(load_config(ABLATION, args.set), runs / ABLATION.stem, workers=args.workers)
    cap_pairs = pairs_of(cap)
    abl_pairs = pairs_of(abl)
    result = {
        "pairs": [{"single": cap_pairs[p]["single"], "hier": cap_pairs[p]["hier"]} for p in cap["points"]],
        "ablation": {p: {"single": abl_pairs[p]["single"], "hier": abl_pairs[p]["hier"]} for p in abl["points"]},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    for name, pair in [(f"budget {p['hier']['discrete_budget']}", p) for p in result["pairs"]] + list(
        result["ablation"].items()
    ):
        h, s = pair["hier"], pair["single"]
        print(f"{name:>14}: hier {h['psnr']:.2f} dB (ppl {h['perplexity']:.0f}) vs single {s['psnr']:.2f} dB "
              f"(ppl {s['perplexity']:.0f}), gap {h['psnr'] - s['psnr']:+.2f} dB")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
