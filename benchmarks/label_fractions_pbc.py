"""Issue 4 at CPU scale: SVQVAE vs dual-stack hierarchical SVQVAE vs raw pixels, with 100/50/10/1 % of the labels.

Runs ``hiervq classify configs/svqvae-dual-pbc.yaml --fractions 1,0.5,0.1,0.01`` from scratch (pretraining
included) into a fresh folder, measures the whole wall time, and writes benchmarks/results/label_fractions_pbc.json:

    {"fractions": [1.0, 0.5, 0.1, 0.01],
     "models": {"svqvae": {"test_acc": [4 floats], "val_selected": true, "params": int, "pretrain_s": float},
                "dual_stack": {...}, "pixels_mlp": {...}}}

``test_acc`` is the test accuracy (on [0, 1]) at the epoch selected on the validation split; ``params`` counts the
pretrained encoder (the SVQVAE row: stack 1 only) plus the MLP head; ``pretrain_s`` is the training time of the
phases that trained the row's encoder (0 for pixels). The full results (final-epoch accuracy, per-class accuracy,
confusion matrices, the report) stay in the output folder. Run from the repository root, on one core (the committed
numbers: one thread, the other core busy with another job):

    OMP_NUM_THREADS=1 python benchmarks/label_fractions_pbc.py [--out runs/label_fractions_pbc] [--set k=v ...]
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared 2-core machine spinning
# threads steal the cores their partners need (measured: a training step 5x slower); results are unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from hiervq.experiments.label_fractions import run_label_fractions  # noqa: E402
from hiervq.train import load_config  # noqa: E402
from hiervq.train.rundir import check_replaceable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "svqvae-dual-pbc.yaml"
RESULT = ROOT / "benchmarks" / "results" / "label_fractions_pbc.json"
FRACTIONS = [1.0, 0.5, 0.1, 0.01]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/label_fractions_pbc", help="output folder (replaced)")
    parser.add_argument("--result", default=str(RESULT), help="where the benchmark JSON goes")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        check_replaceable(out, "classify output folder")  # --out is the user's: replace only hiervq output
        shutil.rmtree(out)
    t0 = time.perf_counter()
    result = run_label_fractions(load_config(CONFIG, args.set), out, FRACTIONS)
    wall = time.perf_counter() - t0
    bench = {
        "fractions": result["fractions"],
        "models": {
            name: {"test_acc": row["test_acc"], "val_selected": True, "params": row["params"],
                   "pretrain_s": float(row["pretrain_s"])}
            for name, row in result["models"].items()
        },
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(bench, indent=2) + "\n")
    print(f"whole comparison: {wall:.0f} s wall ({wall / 60:.1f} min) -> {args.result}; details in {out}/")


if __name__ == "__main__":
    main()
