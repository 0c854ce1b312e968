"""Every quantizer kind in the same autoencoder: MNIST 32x32 at 512 bits per image.

The VQ-VAE recipe of configs/vqvae-mnist.yaml (8x8 codes; same encoder/decoder, schedule, epochs and seed for every
row) with its one level quantized by each kind at the same 512 bits per image (8 bits per position):

* ``vq``: nearest-neighbour VQ, K = 256 (the recipe: EMA, k-means init, dead-code reset, 16-d codes);
* ``residual``: ResidualVQ, 2 stages of K = 16 (same codebook options);
* ``fsq``: FSQ with levels [8, 8, 4] (256 grid points);
* ``lfq``: LFQ with 8 bits, with the entropy settings (entropy_weight, diversity, inv_temperature, beta) of the
  lowest-val_mse row of benchmarks/lfq_grid.py's grid (benchmarks/results/lfq_grid.json, scored on a validation
  split); without that file, LFQ's defaults (which collapse here to a few codes) and no ``selected_on``;
* ``simvq``: SimVQ, K = 256 (frozen random basis x one learned map; learned codes, so no EMA or resets).

Trains each on all 60,000 training images and evaluates on the full test split (MSE on [0, 1]), then writes
benchmarks/results/recon_quantizers.json after each kind:

    {"script": "benchmarks/recon_quantizers.py",
     "KIND": {"mse": float, "psnr": float, "used_fraction": float, "train_s": float, "epochs": int,
              "perplexity": float, "bits_per_image": float, "threads": int}, ...}

The lfq entry adds ``settings`` (what it trained with), and, when they came from the grid, ``selected_on`` (the split
the grid's rows were scored on, read from their keys), ``selection`` (the rule) and ``grid`` (the rows).

Every kind gets the same number of epochs (``--epochs``, default 3), so the budget is equal in steps; ``train_s``
says what each cost in wall time. Run alone for honest timings:

    OMP_NUM_THREADS=1 python benchmarks/recon_quantizers.py [--epochs 3] [--only fsq] [--runs runs/bench-quantizers]
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
RESULT = ROOT / "benchmarks" / "results" / "recon_quantizers.json"
LFQ_GRID = ROOT / "benchmarks" / "results" / "lfq_grid.json"  # benchmarks/lfq_grid.py's validation grid
KINDS: dict[str, list[str]] = {
    "vq": [],
    "residual": ["model.levels.0.codebook_size=16", "model.levels.0.quantizer={kind: residual, stages: 2, "
                 "init: kmeans, dead_threshold: 2, dead_window: 10}"],
    "fsq": ["model.levels.0.codebook_size=256", "model.levels.0.code_dim=null", "model.levels.0.quantizer={kind: fsq, levels: [8, 8, 4]}"],
    "lfq": [],  # lfq_overrides(): the settings come from the grid file
    "simvq": ["model.levels.0.quantizer={kind: vq, simvq: true, ema_decay: null}"],
}


LFQ_KEYS = ("entropy_weight", "diversity", "inv_temperature", "beta")


def lfq_choice(grid: list[dict] | None) -> dict | None:
    """The LFQ settings chosen from lfq_grid.py's rows: those of the row with the lowest validation MSE, with the
    split the rows were scored on as the grid records it (``selected_on``: "val" only when every row has a
    ``val_mse`` measured on ``val_images`` > 0 images). None when there is no grid."""
    if not grid:
        return None
    best = min(grid, key=lambda row: row["val_mse"])
    on_val = all("val_mse" in row and row.get("val_images", 0) > 0 for row in grid)
    choice = {"settings": {k: best[k] for k in LFQ_KEYS},
              "selection": f"lowest val_mse of the {len(grid)} rows of benchmarks/results/lfq_grid.json"}
    if on_val:
        choice["selected_on"] = "val"
    return choice


def lfq_overrides(choice: dict | None) -> list[str]:
    """The lfq row's overrides: 8 bits, with the chosen settings (LFQ's defaults without a choice)."""
    settings = "".join(f", {k}: {v}" for k, v in (choice["settings"] if choice else {}).items())
    return ["model.levels.0.codebook_size=256", "model.levels.0.code_dim=null",
            f"model.levels.0.quantizer={{kind: lfq, bits: 8{settings}}}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(KINDS), action="append", help="run only these kinds")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of every kind")
    parser.add_argument("--set", action="append", default=[], help="config override for every kind")
    parser.add_argument("--runs", default="runs/bench-quantizers", help="where the run directories go")
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()

    output = Path(args.output)
    results = json.loads(output.read_text()) if output.is_file() else {}
    results["script"] = "benchmarks/recon_quantizers.py"
    grid = json.loads(LFQ_GRID.read_text()) if LFQ_GRID.is_file() else None
    choice = lfq_choice(grid)
    for kind in args.only or list(KINDS):
        kind_overrides = lfq_overrides(choice) if kind == "lfq" else KINDS[kind]
        overrides = [f"train.epochs={args.epochs}", "train.progress=false", *kind_overrides, *args.set]
        summary = train_run(load_config(RECIPE, overrides), Path(args.runs) / kind, overwrite=True)
        level = summary["levels"][0]
        results[kind] = {
            "mse": summary["mse"],
            "psnr": summary["psnr"],
            "used_fraction": level["used_fraction"],
            "train_s": summary["train_s"],
            "epochs": summary["epochs"],
            "perplexity": level["perplexity"],
            "bits_per_image": summary["bits_per_image"],
            "params": summary["params"],
            "threads": torch.get_num_threads(),
            "overrides": overrides,
        }
        if kind == "lfq":
            results[kind]["settings"] = load_config(RECIPE, overrides).model["levels"][0]["quantizer"]
            if choice is not None:  # what the grid file records: its rule, the split its rows were scored on
                results[kind].update({k: v for k, v in choice.items() if k != "settings"}, grid=grid)
        write_json(output, results)
        print(f"{kind}: test MSE {summary['mse']:.3e}, PSNR {summary['psnr']:.2f} dB, used {level['used_fraction']:.2f}, "
              f"{summary['train_s']:.0f} s")


if __name__ == "__main__":
    main()
