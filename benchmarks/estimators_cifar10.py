"""Study 2 on CIFAR-10 at CPU scale: straight-through vs rotation trick, and the commitment weight beta.

Runs (or continues: finished points are skipped) the sweep of configs/estimators-cifar10.yaml (single-level
VQ-VAE, K = 1024, EMA codebooks with decay 0.99; ste, rotation, and ste with beta 0.1/0.5/1/2 -- the ste run is
beta = 0.25), then writes benchmarks/results/estimators_cifar10.json:

    {"ste": {"test_recon", "test_codebook", "perplexity"}, "rotation": {...},
     "beta": {"0.1": {...}, "0.25": {...}, "0.5": {...}, "1": {...}, "2": {...}}}

``test_recon`` is the test MSE on [0, 1] (full test split); ``perplexity`` is the test-set perplexity of the
codebook. With EMA codebooks the codebook term |sg(e) - q|^2 gets no gradient (the EMA moves the codes), so
``test_codebook`` reports its value, which equals the commitment distance |e - sg(q)|^2 (unweighted by beta).
Run from the repository root in a one-thread lane (6 runs, about 5-8 minutes each on one thread):

    OMP_NUM_THREADS=1 python benchmarks/estimators_cifar10.py [--runs runs] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hiervq.experiments.sweep import run_sweep
from hiervq.train import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "estimators-cifar10.yaml"
RESULT = ROOT / "benchmarks" / "results" / "estimators_cifar10.json"
BETAS = {"0.1": "beta_0.1", "0.25": "ste", "0.5": "beta_0.5", "1": "beta_1", "2": "beta_2"}


def entry(row: dict) -> dict:
    losses = row["test_losses"]
    codebook = losses["codebook"] if losses.get("codebook", 0.0) > 0 else losses["commitment"]
    return {"test_recon": losses["recon"], "test_codebook": codebook, "perplexity": row["perplexity"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="parent folder of the sweep's output folder")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()

    table = run_sweep(load_config(CONFIG, args.set), Path(args.runs) / CONFIG.stem, workers=args.workers)
    rows = {r["point"]: r for r in table["rows"]}
    result = {
        "ste": entry(rows["ste"]),
        "rotation": entry(rows["rotation"]),
        "beta": {beta: entry(rows[point]) for beta, point in BETAS.items()},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    for name, e in [("ste", result["ste"]), ("rotation", result["rotation"])] + [
        (f"beta {b}", e) for b, e in result["beta"].items()
    ]:
        print(f"{name:>10}: test recon {e['test_recon']:.3e}, codebook {e['test_codebook']:.3e}, "
              f"perplexity {e['perplexity']:.0f}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
