"""Re-derive on the validation split the two choices of configs/hvqvae3-convnext-cifar10.yaml that were made from
test numbers: the learning rate (1e-3 vs 2e-3: does the 2x2 top level collapse in the first epoch?) and the middle
level's codebook size (K = 64 vs 128: how many of its codes does no validation image use?).

Every run trains the recipe as it is (5 % of its 20,000 training images held out as the validation split, the
default ``data.val_fraction``) with one change, for ``--epochs`` epochs (default 1 for the learning rate, where the
collapse shows, and ``--k-epochs`` for K), and reads only validation numbers: the per-level used fraction and dead
codes on the validation images after each epoch, and the validation MSE. The test split is not looked at (the
runs' final summary evaluates it, as every run does; this script does not read it). Writes
benchmarks/results/recipe_choices_val.json after every run:

    {"script", "config", "threads", "val_images",
     "lr": {"1e-3": {"epochs", "val_mse", "used_fraction": [per level], "unused_codes": [per level], "curve"}, ...},
     "middle_k": {"64": {...}, "128": {...}}, "choice": {"lr": str, "middle_k": str}}

``choice.lr``: the largest learning rate whose top level keeps at least half of its codes in use on val after
the first epoch; ``choice.middle_k``: the larger K whose unused fraction on val stays under 10 %, else the smaller.
Run from the repository root (data in ../shared/data/cifar10), one thread each when sharing the machine:

    OMP_NUM_THREADS=1 python benchmarks/recipe_choices_val.py [--epochs 1] [--k-epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hiervq.io import write_json
from hiervq.layout import RunDir
from hiervq.train import load_config, train_run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "hvqvae3-convnext-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "recipe_choices_val.json"


def val_entry(run_dir: Path) -> dict:
    """What the run's validation split says, epoch by epoch (metrics.jsonl holds val only)."""
    records = [r for r in RunDir(run_dir).read_metrics() if "val" in r]
    last = records[-1]["val"]
    return {
        "epochs": records[-1]["epoch"],
        "val_mse": last["mse"],
        "used_fraction": [lv["used_fraction"] for lv in last["levels"]],
        "unused_codes": [round(lv["codebook_size"] * (1 - lv["used_fraction"])) for lv in last["levels"]],
        "curve": [{"epoch": r["epoch"], "val_mse": r["val"]["mse"],
                   "used_fraction": [lv["used_fraction"] for lv in r["val"]["levels"]]} for r in records],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the learning-rate runs")
    parser.add_argument("--k-epochs", type=int, default=2, help="epochs of the middle-K runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="runs/bench-recipe-choices")
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--set", action="append", default=[], help="override for every run (e.g. a quick check)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    results = json.loads(output.read_text()) if output.is_file() else {}
    results.update({"script": "benchmarks/recipe_choices_val.py", "config": str(CONFIG.relative_to(ROOT)),
                    "threads": torch.get_num_threads()})
    base = ["train.eval_limit=null", "train.progress=false", *args.set]  # every validation image, every epoch
    plan = [("lr", "1e-3", [f"train.epochs={args.epochs}", "train.lr=1.0e-3"]),
            ("lr", "2e-3", [f"train.epochs={args.epochs}", "train.lr=2.0e-3"]),
            ("middle_k", "64", [f"train.epochs={args.k_epochs}", "model.levels.1.codebook_size=64"]),
            ("middle_k", "128", [f"train.epochs={args.k_epochs}", "model.levels.1.codebook_size=128"])]
    for group, name, overrides in plan:
        if name in results.get(group, {}) and results[group][name].get("overrides") == overrides:
            continue  # finished with the same settings
        run_dir = Path(args.runs) / f"{group}-{name}"
        summary = train_run(load_config(CONFIG, [*base, *overrides]), run_dir, overwrite=True)
        entry = {**val_entry(run_dir), "overrides": overrides, "train_s": summary["train_s"]}
        results.setdefault(group, {})[name] = entry
        results["val_images"] = summary.get("val_images")
        write_json(output, results)
        print(f"{group} {name}: val MSE {entry['val_mse']:.3e}, used {entry['used_fraction']}", flush=True)
    lr, ks = results["lr"], results["middle_k"]
    kept = [name for name in sorted(lr, key=float) if lr[name]["used_fraction"][-1] >= 0.5]
    results["choice"] = {
        "lr": kept[-1] if kept else min(lr, key=float),
        "middle_k": "128" if 1 - ks["128"]["used_fraction"][1] < 0.10 else "64",
    }
    write_json(output, results)
    print(f"chosen on val: lr {results['choice']['lr']}, middle K {results['choice']['middle_k']}")


if __name__ == "__main__":
    main()
