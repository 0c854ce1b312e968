"""Study 1 on CIFAR-10 at CPU scale: capacity-matched single-level vs hierarchical VQ-VAE, and the collapse ablation.

Runs (or continues: finished points are skipped) the sweeps of configs/capacity-match-cifar10.yaml (three
codebook budgets, each a hierarchical model and its matched single-level twin) and
configs/collapse-ablation-cifar10.yaml (none / +data init / +dead-code reset / +low dim at constant K*D, both
architectures) and the code-dimension sweep (the hierarchical model of the capacity config at K = 256 per level,
D in 4, 8, 16, 32; the paper: "growing D above 8 hurts"), and writes benchmarks/results/capacity_match_cifar10.json
after each of the three parts (the parts not yet run are absent):

    {"mode": "unconditioned", "reseed": "mean",
     "pairs": [{"single": {"K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse",
                           "perplexity", "used_fraction", "params", "train_s"},
                "hier": {same keys, K/D/C per level as lists},
                "psnr_gap_db", "single_better_fraction", "paired_psnr_diff_std"}, ...],
     "d_sweep": [{"D": int, "K": int, "psnr": float, "perplexity": float, "train_s": float, ...}, ...],
     "ablation": {"none": {"single": {...}, "hier": {...}, "psnr_gap_db", ...}, "data_init": ..., "dead_reset": ...,
                  "low_dim": ...},
     "threads": int}

PSNR/MSE are over the full CIFAR-10 test split (10,000 images; mean and std over images). For the hierarchy,
``perplexity`` is the mean of its levels' test-set perplexities and ``used_fraction`` is used codes / all codes.
``train_s`` is each run's training time (from its summary). Per pair: ``psnr_gap_db`` is hierarchical minus
single-level mean PSNR; ``single_better_fraction`` the share of test images the single-level model reconstructs
with a higher PSNR and ``paired_psnr_diff_std`` the std over images of the per-image PSNR difference (both from
the point's ``compare.json``, i.e. from per-image test errors, so only a run that has the runs writes them).
Run from the repository root, alone on the machine (18 runs, about 3-6 minutes each on 2 cores):

    python benchmarks/capacity_match_cifar10.py [--runs runs] [--set key=value ...]

``--summarize`` trains nothing: it reads the existing JSON and adds the keys derived from it (``psnr_gap_db``);
the per-image keys and ``train_s`` need the runs, so a JSON from before they were written lacks them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hiervq.experiments.sweep import run_sweep
from hiervq.io import read_json, write_json
from hiervq.layout import COMPARE_RESULT, SWEEP_POINTS
from hiervq.train import load_config
from hiervq.train.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
CAPACITY = ROOT / "configs" / "capacity-match-cifar10.yaml"
ABLATION = ROOT / "configs" / "collapse-ablation-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "capacity_match_cifar10.json"
D_SWEEP = [4, 8, 16, 32]
D_SWEEP_K = 256
KEYS = ("K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse", "perplexity",
        "used_fraction", "params", "train_s")
PER_IMAGE_KEYS = ("single_better_fraction", "paired_psnr_diff_std")  # from compare.json: per-image test errors


def pick(row: dict) -> dict:
    return {k: row[k] for k in KEYS}


def derive(pair: dict) -> dict:
    """``pair`` with the keys that follow from its two entries: ``psnr_gap_db`` (hierarchical - single-level)."""
    return {**pair, "psnr_gap_db": pair["hier"]["psnr"] - pair["single"]["psnr"]}


def pairs_of(table: dict, sweep_dir: Path) -> dict[str, dict]:
    """{point name: {"hier": row, "single": row, derived and per-image keys}} from a sweep table of comparison
    points; the per-image keys come from each point's compare.json under ``sweep_dir``."""
    out: dict[str, dict] = {}
    for row in table["rows"]:
        out.setdefault(row["point"], {})[row["arch"]] = pick(row)
    for point, pair in out.items():
        compare = read_json(sweep_dir / SWEEP_POINTS / point / COMPARE_RESULT)
        out[point] = {"single": pair["single"], "hier": pair["hier"], **{k: compare[k] for k in PER_IMAGE_KEYS}}
        out[point] = derive(out[point])
    return out


def summarize(output: Path) -> dict:
    """The committed JSON with the keys derived from what it holds added (no training, no run needed)."""
    result = read_json(output)
    result["pairs"] = [derive(pair) for pair in result["pairs"]]
    if "ablation" in result:
        result["ablation"] = {name: derive(pair) for name, pair in result["ablation"].items()}
    return result


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
                     "perplexity": row["perplexity"], "used_fraction": row["used_fraction"],
                     "train_s": row["train_s"]})
    return sorted(rows, key=lambda r: r["D"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="parent folder of the three sweeps' output folders")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: add the keys derived from the existing JSON (--output) to it")
    args = parser.parse_args()

    runs = Path(args.runs)
    output = Path(args.output)
    if args.summarize:
        result = summarize(output)
        write_json(output, result)
        report(result, output)
        return
    capacity = load_config(CAPACITY, args.set)
    quantizer = capacity.model["quantizer"]
    result: dict = {"script": "benchmarks/capacity_match_cifar10.py", "mode": capacity.model["mode"], "reseed": quantizer.get("reseed", "sample"),
                    "threads": torch.get_num_threads(), "workers": args.workers}

    cap = run_sweep(capacity, runs / CAPACITY.stem, workers=args.workers)
    cap_pairs = pairs_of(cap, runs / CAPACITY.stem)
    result["pairs"] = [cap_pairs[p] for p in cap["points"]]
    write_json(output, result)

    dsw = run_sweep(d_sweep_config(capacity), runs / "d-sweep-cifar10", workers=args.workers)
    result["d_sweep"] = d_rows(dsw)
    write_json(output, result)

    abl = run_sweep(load_config(ABLATION, args.set), runs / ABLATION.stem, workers=args.workers)
    abl_pairs = pairs_of(abl, runs / ABLATION.stem)
    result["ablation"] = {p: abl_pairs[p] for p in abl["points"]}
    write_json(output, result)
    report(result, output)


def report(result: dict, output: Path) -> None:
    for name, pair in [(f"budget {p['hier']['discrete_budget']}", p) for p in result["pairs"]] + list(
        result["ablation"].items()
    ):
        h, s = pair["hier"], pair["single"]
        better = (f", single better on {pair['single_better_fraction']:.0%} of test images"
                  if "single_better_fraction" in pair else "")
        print(f"{name:>14}: hier {h['psnr']:.2f} dB (ppl {h['perplexity']:.0f}) vs single {s['psnr']:.2f} dB "
              f"(ppl {s['perplexity']:.0f}), gap {pair['psnr_gap_db']:+.2f} dB{better}")
    for row in result["d_sweep"]:
        print(f"D = {row['D']:>2} (K = {row['K']}): {row['psnr']:.2f} dB, perplexity {row['perplexity']:.0f}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
