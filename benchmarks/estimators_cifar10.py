"""Study 2 on CIFAR-10: straight-through vs rotation trick, and the commitment weight beta (rotation model).

Runs (or continues: finished points are skipped) the sweep of configs/estimators-cifar10.yaml (single-level
VQ-VAE, K = 1024 codes of dimension 256, EMA decay 0.99, Adam lr 2e-4, Tanh output, all 50k training images;
ste, rotation, rotation with beta 0.1/0.5/1/2 -- the rotation run is beta = 0.25 -- and rotation with 32-d codes),
then writes benchmarks/results/estimators_cifar10_fixes.json (the study with our collapse fixes, data initialisation
and dead-code reset; ``--faithful`` writes estimators_cifar10.json, the study in the paper's setting):

    {"ste": {"test_recon", "test_codebook", "perplexity", "train_perplexity", "used_codes", "train_s",
             "psnr", "psnr_std", "psnr_of_mean_mse"}, "rotation": {...},
     "rotation_lowdim": {...}, "beta": {"0.1": {...}, "0.25": {...}, "0.5": {...}, "1": {...}, "2": {...}},
     "settings": {"beta_sweep_estimator": "rotation", "dead_threshold", "lr", "codebook_size", "code_dim",
                  "epochs", "batch_size", "train_images", "init_after", "steps_per_epoch", "steps", ...},
     "threads": int, "train_s_total": float}

``test_recon`` is the test MSE on [0, 1] (full test split); ``perplexity`` the test-set perplexity of the codebook;
``train_perplexity`` the mean per-batch training perplexity of the last epoch (what the paper reports);
``used_codes`` the codes used on the test split. With EMA codebooks the codebook term |sg(e) - q|^2 gets no
gradient, so ``test_codebook`` reports the commitment distance |e - sg(q)|^2 (unweighted by beta).
``psnr``/``psnr_std`` are the mean and std over test images of the per-image PSNR (from the run summaries);
``psnr_of_mean_mse`` is 10 log10(1 / test_recon), the PSNR of the mean test MSE, which is lower than the mean of the
per-image PSNRs. ``train_s_total`` sums ``train_s`` over the 7 runs (the beta = 0.25 entry is the rotation run).
Each entry's ``params`` is the parameter count of its model, built from its sweep point's config for the data (as
the trainer builds it); ``settings.steps_per_epoch`` is the number of full batches of ``batch_size`` in
``train_images`` (what the trainer draws, :func:`hiervq.data.batches.epoch_order`) and ``settings.steps`` that
times ``epochs``.
Run from the repository root (7 runs, ~5-6 minutes each on one thread):

    OMP_NUM_THREADS=1 python benchmarks/estimators_cifar10.py [--runs runs] [--set key=value ...]

``--faithful`` runs the study in the paper's setting instead (``configs/estimators-faithful-cifar10.yaml``: a uniform
codebook on [-1/K, 1/K], no dead-code reset, 15 epochs, 2 seeds; beside it our collapse fixes as ``reset_variant``) and writes the
same file in issue 29's format: ``{"settings": {"faithful": true, "init": "uniform", "dead_threshold": 0, ...},
"seeds": 2, "ste", "rotation", "beta": {"0.25", "1", "2"}, "reset_variant": {"settings", "beta": {"0.25", "2"}},
"perplexity_vs_beta": {"faithful", "reset"}}``, each entry the mean over seeds (``*_std``) with its ``per_seed``
entries and their per-epoch ``curve`` (validation MSE and perplexity, training perplexity); 12 runs, ~20 minutes
each on one thread (``--workers 2`` runs two at a time):

    python benchmarks/estimators_cifar10.py --faithful --workers 2

``--summarize`` trains nothing: it reads the existing JSON and adds the keys derived from it (``psnr_of_mean_mse``,
``train_s_total``, ``steps_per_epoch``, ``steps``) and from the recipe (``params``: built, not trained; a few
seconds); ``psnr``/``psnr_std`` need the runs, so a JSON from before they were written lacks them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

from hiervq.data import load_data
from hiervq.data.batches import epoch_order
from hiervq.experiments.sweep import expand_points, point_config, run_sweep
from hiervq.layout import SWEEP_POINTS, RunDir
from hiervq.train import load_config
from hiervq.train.run import build_for_data

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "estimators-cifar10.yaml"
FAITHFUL = ROOT / "configs" / "estimators-faithful-cifar10.yaml"
#: the faithful study's variants: beta -> sweep variant, in the paper's setting and with our collapse fixes
FAITHFUL_BETAS = {"0.25": "rotation", "1": "beta_1", "2": "beta_2"}
RESET_BETAS = {"0.25": "reset_rotation", "2": "reset_beta_2"}
RESULT = ROOT / "benchmarks" / "results" / "estimators_cifar10.json"  # --faithful
RESULT_FIXES = ROOT / "benchmarks" / "results" / "estimators_cifar10_fixes.json"  # the study with our collapse fixes
BETAS = {"0.1": "beta_0.1", "0.25": "rotation", "0.5": "beta_0.5", "1": "beta_1", "2": "beta_2"}


def _first(value):
    return value[0] if isinstance(value, list) else value


def entry(row: dict) -> dict:
    losses = row["test_losses"]
    codebook = losses["codebook"] if losses.get("codebook", 0.0) > 0 else losses["commitment"]
    return {"test_recon": losses["recon"], "test_codebook": codebook, "perplexity": _first(row["perplexity"]),
            "train_perplexity": _first(row["train_final"]["perplexity"]), "used_codes": _first(row["used_codes"]),
            "train_s": row.get("train_s"), "psnr": row["psnr"], "psnr_std": row["psnr_std"]}


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of an MSE on [0, 1] pixels."""
    return 10.0 * math.log10(1.0 / mse)


def runs_of(result: dict) -> dict[str, dict]:
    """{sweep point: entry} of the 7 runs (the beta = 0.25 entry is the rotation run, counted once)."""
    return {"ste": result["ste"], "rotation_lowdim": result["rotation_lowdim"],
            **{BETAS[beta]: e for beta, e in result["beta"].items()}}


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Training steps per epoch: the trainer's full batches (:func:`hiervq.data.batches.epoch_order`)."""
    return len(epoch_order(train_images, batch_size, seed=0, epoch=0))


def derive(result: dict) -> dict:
    """Add the keys that follow from the entries: each one's ``psnr_of_mean_mse``, the total ``train_s`` and, when
    the settings record the training images, the steps per epoch and in all."""
    for e in [result["ste"], result["rotation"], result["rotation_lowdim"], *result["beta"].values()]:
        e["psnr_of_mean_mse"] = psnr_of_mse(e["test_recon"])
    times = [e.get("train_s") for e in runs_of(result).values()]
    result["train_s_total"] = sum(times) if None not in times else None
    settings = result.get("settings", {})
    if isinstance(settings.get("train_images"), int) and settings.get("batch_size") and settings.get("epochs"):
        settings["steps_per_epoch"] = steps_per_epoch(settings["train_images"], settings["batch_size"])
        settings["steps"] = settings["steps_per_epoch"] * settings["epochs"]
    return result


def point_params(config) -> dict[str, int]:
    """{sweep point: parameter count of its model}, each built from the point's config for the config's data (as
    the trainer builds it; nothing is trained)."""
    data = load_data(config.data)
    sweep = config.sections["sweep"]
    return {point.name: build_for_data(point_config(config, point), data).num_parameters()
            for point in expand_points(sweep.grid, sweep.variants)}


def add_params(result: dict, params: dict[str, int]) -> dict:
    """Each entry's ``params`` from ``params`` ({sweep point: count}; the beta = 0.25 entry is the rotation run)."""
    for point, e in runs_of(result).items():
        e["params"] = params[point]
    result["rotation"]["params"] = params["rotation"]
    return result


def write(output: Path, result: dict) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")


def train_images(sweep_dir: Path, points) -> int | dict | None:
    """The number of training images the points ran on, from their run summaries (one number when all agree, else
    {point: number}); None when no summary records it (runs from before summaries carried ``train_images``)."""
    counts = {}
    for point in points:
        run = RunDir(sweep_dir / SWEEP_POINTS / point)
        if run.summary.is_file():
            counts[point] = run.read_summary().get("train_images")
    values = set(counts.values()) - {None}
    if not values:
        return None
    return values.pop() if len(values) == 1 and None not in counts.values() else counts


def curve(run: Path) -> list[dict]:
    """Per epoch of a run: the validation MSE and perplexity, and the training perplexity (its ``metrics.jsonl``)."""
    out = []
    for r in RunDir(run).read_metrics():
        val = r.get("val") or {}
        level = (val.get("levels") or [{}])[0]
        out.append({"epoch": r["epoch"], "val_mse": val.get("mse"), "val_perplexity": level.get("perplexity"),
                    "val_used_fraction": level.get("used_fraction"),
                    "train_perplexity": _first(r["train"]["perplexity"])})
    return out


def over_seeds(runs: list[dict]) -> dict:
    """The mean over seeds of every number of the runs' entries, their std, and the runs themselves."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in keys:
        values = [r[k] for r in runs if r.get(k) is not None]
        if values:
            out[k] = statistics.fmean(values)
            out[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return {**out, "seeds": len(runs), "per_seed": runs}


def faithful(args) -> None:
    """The study in the paper's setting (``configs/estimators-faithful-cifar10.yaml``): every variant at every seed
    of its grid, then the JSON of issue 29 (means over seeds, per-seed entries with their curves, the settings
    read from the configs that ran)."""
    config = load_config(FAITHFUL, args.set)
    sweep_dir = Path(args.runs) / FAITHFUL.stem
    sweep = config.sections["sweep"]
    seeds = list(sweep.grid.get("seed", [config.seed]))
    reset_seeds = seeds[: args.reset_seeds] if args.reset_seeds else seeds

    def keep(point) -> bool:  # the reset variants (our ablation) at their first --reset-seeds seeds only
        return not point.values.get("variant", "").startswith("reset_") or point.values.get("seed") in reset_seeds

    table = run_sweep(config, sweep_dir, workers=args.workers, keep=keep)
    points = {p.name: p for p in expand_points(sweep.grid, sweep.variants)}
    by_variant: dict[str, list[dict]] = {}
    for row in table["rows"]:
        e = entry(row)
        e["seed"] = row["seed"]
        e["psnr_of_mean_mse"] = psnr_of_mse(e["test_recon"])
        e["curve"] = curve(sweep_dir / SWEEP_POINTS / row["point"])
        by_variant.setdefault(row["variant"], []).append(e)
    agg = {v: over_seeds(sorted(runs, key=lambda e: e["seed"])) for v, runs in by_variant.items()}

    def quantizer(variant: str) -> dict:
        point = next(p for p in points.values() if p.values.get("variant") == variant)
        return point_config(config, point).model["quantizer"]

    level = config.model["levels"][0]
    q = quantizer("rotation")
    settings = {"faithful": q.get("dead_threshold") in (0, None) and q.get("init") in ("random", "uniform"),
                "init": q.get("init"), "dead_threshold": q.get("dead_threshold"), "ema_decay": q.get("ema_decay"),
                "beta_sweep_estimator": "rotation", "lr": config.train.lr, "optimizer": config.train.optimizer,
                "schedule": config.train.schedule, "codebook_size": level.get("codebook_size"),
                "code_dim": level.get("code_dim") or level.get("dim"), "epochs": config.train.epochs,
                "batch_size": config.train.batch_size, "keep": config.train.keep,
                "train_images": train_images(sweep_dir, [r["point"] for r in table["rows"]]),
                "output": config.model.get("output", "linear"), "seeds_grid": sweep.grid.get("seed")}
    rq = quantizer("reset_rotation")
    result = {
        "script": "benchmarks/estimators_cifar10.py",
        "command": "python benchmarks/estimators_cifar10.py " + " ".join(sys.argv[1:]),
        "settings": settings,
        "seeds": min(len(runs) for v, runs in by_variant.items() if not v.startswith("reset_")),
        "ste": agg["ste"],
        "rotation": agg["rotation"],
        "beta": {b: agg[v] for b, v in FAITHFUL_BETAS.items()},
        "reset_variant": {"settings": {k: rq.get(k) for k in ("init", "init_after", "dead_threshold", "dead_window")},
                          "seeds": min(len(by_variant[v]) for v in RESET_BETAS.values()),
                          "beta": {b: agg[v] for b, v in RESET_BETAS.items()}},
        "perplexity_vs_beta": {"faithful": {b: agg[v]["train_perplexity"] for b, v in FAITHFUL_BETAS.items()},
                               "reset": {b: agg[v]["train_perplexity"] for b, v in RESET_BETAS.items()}},
        "threads": torch.get_num_threads(),
    }
    write(Path(args.output), result)
    for b, v in FAITHFUL_BETAS.items():
        print(f"beta {b}: train perplexity {agg[v]['train_perplexity']:.0f} (faithful)"
              + (f", {agg[RESET_BETAS[b]]['train_perplexity']:.0f} (with reset)" if b in RESET_BETAS else ""))
    print(f"-> {args.output}")


def faithful_table(result: dict) -> str:
    """The docs' markdown table of a faithful-study JSON: one row per variant, means ± std over its seeds."""
    rows = [("ste", "straight-through", "0.25", "no", result["ste"])]
    rows += [(f"beta {b}" if b != "0.25" else "rotation", "rotation", b, "no", e) for b, e in result["beta"].items()]
    rows += [(f"reset, beta {b}", "rotation", b, "yes", e) for b, e in result["reset_variant"]["beta"].items()]

    def pm(e, key, fmt):
        return f"{e[key]:{fmt}} ± {e[key + '_std']:{fmt}}" if e["seeds"] > 1 else f"{e[key]:{fmt}}"

    lines = ["| run | estimator | beta | init + reset | seeds | test MSE | PSNR of mean MSE, dB | train ppl (last epoch) "
             "| test ppl | used codes (test) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, est, beta, reset, e in rows:
        lines.append(f"| {name} | {est} | {beta} | {reset} | {e['seeds']} | {pm(e, 'test_recon', '.3e')} | "
                     f"{psnr_of_mse(e['test_recon']):.2f} | {pm(e, 'train_perplexity', '.0f')} | "
                     f"{pm(e, 'perplexity', '.0f')} | {pm(e, 'used_codes', '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="parent folder of the sweep's output folder")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", help=f"the JSON (default: {RESULT_FIXES.name}; {RESULT.name} with --faithful)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: add the keys derived from the existing JSON (--output) to it")
    parser.add_argument("--table", action="store_true",
                        help="train nothing: print the docs' markdown table of a faithful-study JSON (--output)")
    parser.add_argument("--reset-seeds", type=int, default=None,
                        help="--faithful: run the reset variants (our ablation) at only the first N seeds of the grid")
    parser.add_argument("--faithful", action="store_true",
                        help="the study in the paper's setting (configs/estimators-faithful-cifar10.yaml)")
    args = parser.parse_args()
    args.output = args.output or str(RESULT if args.faithful else RESULT_FIXES)
    output = Path(args.output)
    if args.table:
        print(faithful_table(json.loads(output.read_text())))
        return
    if args.faithful:
        faithful(args)
        return
    if args.summarize:
        result = add_params(derive(json.loads(output.read_text())), point_params(load_config(CONFIG, args.set)))
        write(output, result)
        report(result, output)
        return

    config = load_config(CONFIG, args.set)
    sweep_dir = Path(args.runs) / CONFIG.stem
    table = run_sweep(config, sweep_dir, workers=args.workers)
    rows = {r["point"]: r for r in table["rows"]}
    q = config.model.get("quantizer", {}) if isinstance(config.model, dict) else {}
    level = config.model["levels"][0] if isinstance(config.model, dict) else {}
    result = {
        "script": "benchmarks/estimators_cifar10.py",
        "ste": entry(rows["ste"]),
        "rotation": entry(rows["rotation"]),
        "rotation_lowdim": entry(rows["rotation_lowdim"]),
        "beta": {beta: entry(rows[point]) for beta, point in BETAS.items()},
        "settings": {"beta_sweep_estimator": "rotation", "dead_threshold": float(q.get("dead_threshold", 2.0)),
                     "dead_window": q.get("dead_window"), "init_after": q.get("init_after", 0),
                     "lr": config.train.lr, "optimizer": config.train.optimizer, "schedule": config.train.schedule,
                     "codebook_size": level.get("codebook_size"), "code_dim": level.get("code_dim") or level.get("dim"),
                     # what ran: the low-dim run's code dimension and the training images, from the run summaries
                     "lowdim_code_dim": rows["rotation_lowdim"]["D"], "epochs": config.train.epochs,
                     "batch_size": config.train.batch_size, "train_images": train_images(sweep_dir, rows),
                     "output": config.model.get("output", "linear")},
        "threads": torch.get_num_threads(),
    }
    params = point_params(config)
    ran = {point: rows[point].get("params") for point in params}
    if any(n is not None and n != params[point] for point, n in ran.items()):
        raise SystemExit(f"parameter counts of the runs {ran} differ from the models built from the config {params}")
    write(output, add_params(derive(result), params))
    report(result, output)


def report(result: dict, output: Path) -> None:
    for name, e in [("ste", result["ste"]), ("rotation", result["rotation"])] + [
        (f"beta {b}", e) for b, e in result["beta"].items()
    ]:
        print(f"{name:>10}: test recon {e['test_recon']:.3e} ({e['psnr_of_mean_mse']:.2f} dB), codebook "
              f"{e['test_codebook']:.3e}, perplexity {e['perplexity']:.0f}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
