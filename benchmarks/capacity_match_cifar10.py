"""Study 1 on CIFAR-10 at CPU scale: capacity-matched single-level vs hierarchical VQ-VAE, and the collapse ablation.

Runs (or continues: finished points are skipped) the sweeps of configs/capacity-match-cifar10.yaml (three
codebook budgets, each a hierarchical model and its matched single-level twin) and
configs/collapse-ablation-cifar10.yaml (none / +data init / +dead-code reset / +low dim at constant K*D, both
architectures) and the code-dimension sweep (the hierarchical model of the capacity config at K = 256 per level,
D in 4, 8, 16, 32; the paper: "growing D above 8 hurts"), and writes benchmarks/results/capacity_match_cifar10.json
after each of the three parts (the parts not yet run are absent):

    {"mode": "unconditioned", "reseed": "mean",
     "pairs": [{"single": {"K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse",
                           "perplexity", "used_fraction", "params"},
                "hier": {same keys, K/D/C per level as lists}}, ...],
     "d_sweep": [{"D": int, "K": int, "psnr": float, "perplexity": float, ...}, ...],
     "ablation": {"none": {"single": {...}, "hier": {...}}, "data_init": ..., "dead_reset": ..., "low_dim": ...},
     "threads": int}

PSNR/MSE are over the full CIFAR-10 test split (10,000 images; mean and std over images). For the hierarchy,
``perplexity`` is the mean of its levels' test-set perplexities and ``used_fraction`` is used codes / all codes.
Run from the repository root, alone on the machine (18 runs, about 3-6 minutes each on 2 cores):

    python benchmarks/capacity_match_cifar10.py [--runs runs] [--set key=value ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hiervq.experiments.sweep import run_sweep
from hiervq.io import write_json
from hiervq.train import load_config
from hiervq.train.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
CAPACITY = ROOT / "configs" / "capacity-match-cifar10.yaml"
ABLATION = ROOT / "configs" / "collapse-ablation-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "capacity_match_cifar10.json"
D_SWEEP = [4, 8, 16, 32]
D_SWEEP_K = 256
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


def d_sweep_config(capacity):
    """The capacity config's hierarchical model alone (no single-level twin) at K = D_SWEEP_K, swept over D."""
    raw = capacity.to_dict()
    raw["compare"] = None
    for level in raw["model"]["levels"]:
        level["codebook_size"] = D_SWEEP_K
    raw["sweep"] = {"grid": {"model.levels.*.code_dim": D_SWEEP}}
    return config_from_dict(raw, f"{capacity.source} [D sweep]")


def d_rows(table: dict) -> list[dict]:
    rows = []
    for row in table["rows"]:
        d, k = row["D"], row["K"]
        rows.append({"D": d[0] if isinstance(d, list) else d, "K": k[0] if isinstance(k, list) else k,
                     "psnr": row["psnr"], "psnr_std": row["psnr_std"], "mse": row["mse"],
                     "perplexity": row["perplexity"], "used_fraction": row["used_fraction"]})
    return sorted(rows, key=lambda r: r["D"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="parent folder of the three sweeps' output folders")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()

    runs = Path(args.runs)
    output = Path(args.output)
    capacity = load_config(CAPACITY, args.set)
    quantizer = capacity.model["quantizer"]
    result: dict = {"script": "benchmarks/capacity_match_cifar10.py", "mode": capacity.model["mode"], "reseed": quantizer.get("reseed", "sample"),
                    "threads": torch.get_num_threads(), "workers": args.workers}

    cap = run_sweep(capacity, runs / CAPACITY.stem, workers=args.workers)
    cap_pairs = pairs_of(cap)
    result["pairs"] = [{"single": cap_pairs[p]["single"], "hier": cap_pairs[p]["hier"]} for p in cap["points"]]
    write_json(output, result)

    dsw = run_sweep(d_sweep_config(capacity), runs / "d-sweep-cifar10", workers=args.workers)
    result["d_sweep"] = d_rows(dsw)
    write_json(output, result)

    abl = run_sweep(load_config(ABLATION, args.set), runs / ABLATION.stem, workers=args.workers)
    abl_pairs = pairs_of(abl)
    result["ablation"] = {p: {"single": abl_pairs[p]["single"], "hier": abl_pairs[p]["hier"]} for p in abl["points"]}
    write_json(output, result)

    for name, pair in [(f"budget {p['hier']['discrete_budget']}", p) for p in result["pairs"]] + list(
        result["ablation"].items()
    ):
        h, s = pair["hier"], pair["single"]
        print(f"{name:>14}: hier {h['psnr']:.2f} dB (ppl {h['perplexity']:.0f}) vs single {s['psnr']:.2f} dB "
              f"(ppl {s['perplexity']:.0f}), gap {h['psnr'] - s['psnr']:+.2f} dB")
    for row in result["d_sweep"]:
        print(f"D = {row['D']:>2} (K = {row['K']}): {row['psnr']:.2f} dB, perplexity {row['perplexity']:.0f}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
