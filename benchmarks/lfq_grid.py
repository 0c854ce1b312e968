"""Select LFQ's entropy settings on the validation split (never the test split) of the recon_quantizers recipe.

The lfq row of benchmarks/recon_quantizers.py (configs/vqvae-mnist.yaml, 8 bits per position, 512 bits per image)
with ``data.val_fraction`` held out of train (stratified, seeded); each setting trains ``--epochs`` epochs and is
scored by the last epoch's validation MSE and code usage (``train.eval_limit`` images of val). Appends one row per
setting to the JSON list in ``--output`` (benchmarks/results/lfq_grid.json, which recon_quantizers.py copies into its
lfq entry as the grid the lfq row's settings were selected on):

    OMP_NUM_THREADS=1 python benchmarks/lfq_grid.py --setting 0.1,1.0,100 [--setting ...] [--epochs 1]

A setting is ``entropy_weight,diversity,inv_temperature[,beta]`` (beta, the commitment weight, 0.25 when omitted).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hiervq.io import write_json
from hiervq.train import load_config, train_run

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "vqvae-mnist.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", required=True,
                        help="entropy_weight,diversity,inv_temperature[,beta] (beta 0.25 when omitted)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--runs", default="runs/lfq-grid")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "lfq_grid.json"))
    args = parser.parse_args()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for setting in args.setting:
        ew, div, it, beta = ([float(v) for v in setting.split(",")] + [0.25])[:4]
        quantizer = (f"{{kind: lfq, bits: 8, entropy_weight: {ew}, diversity: {div}, inv_temperature: {it}, "
                     f"beta: {beta}}}")
        overrides = [f"train.epochs={args.epochs}", "train.progress=false", f"data.val_fraction={args.val_fraction}",
                     "model.levels.0.codebook_size=256", "model.levels.0.code_dim=null",
                     f"model.levels.0.quantizer={quantizer}"]
        run_dir = Path(args.runs) / f"ew{ew}-div{div}-it{it}-beta{beta}"
        train_run(load_config(RECIPE, overrides), run_dir, overwrite=True)
        last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()][-1]
        val, tr = last["val"], last["train"]
        row = {"script": "benchmarks/lfq_grid.py", "entropy_weight": ew, "diversity": div, "inv_temperature": it, "beta": beta, "epochs": args.epochs,
               "val_mse": val["mse"], "val_psnr": val["psnr"], "val_used_fraction": val["levels"][0]["used_fraction"],
               "val_perplexity": val["levels"][0]["perplexity"], "val_images": val["images"],
               "train_loss": tr["loss"], "train_recon": tr["recon"], "train_commitment": tr["commitment"],
               "train_perplexity": tr["perplexity"][0], "train_s": last.get("train_s"), "threads": torch.get_num_threads()}
        rows = json.loads(out.read_text()) if out.is_file() else []
        write_json(out, [*rows, row])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
