"""PQ-VAE next to single-level VQ-VAEs at the same 512 bits per image (64 codes, K = 256), MNIST and CIFAR-10.

All models of a dataset share the encoder/decoder sizes and the training settings (the ``train:`` section of the
PQ-VAE recipe: epochs, hence steps, batch, learning rate and schedule); the VQ-VAEs quantize an 8x8 grid with
K = 256, the PQ-VAE a 1-D sequence of 64 codes from one codebook of K = 256. ``vqvae_plain`` is the baseline the
published table used (EMA codebook, data init, no k-means, no dead-code reset, straight-through, 64-d codes);
``vqvae`` is our strong recipe (rotation trick, k-means++ init, dead-code reset, 16-d codes), an extra row. Writes

* ``benchmarks/results/recon_pqvae_equal_steps.json``:
  ``{"mnist": {"pqvae": {"mse", "psnr", "perplexity", "epochs", "steps", "train_s", ...}, "vqvae_plain": {...},
  "vqvae": {...}}, "cifar10": {...}}`` (full test split, MSE on [0, 1], perplexity over the test codes; ``wall_s``,
  the model's whole ``train_run``, from the next run on) and ``pqvae_over_plain`` (:func:`summarize`: the PQ-VAE's
  test MSE and training time over the plain VQ-VAE's, per dataset; ``--summarize [--tag TAG]`` adds it to an
  existing JSON);
* ``benchmarks/results/pqvae_bayes_mnist.json``: ``{"prefix_lengths", "independent", "conditional"}`` (test
  accuracy of the code-count Bayes classifiers of the MNIST PQ-VAE vs the number of leading codes, Laplace
  smoothing alpha = 1), its figure, and ``pqvae_bayes_mnist_smoothing.json`` (alpha = 0.01 ... 10).

``--converged``: the issue-29 protocol, PQ-VAE against the plain VQ-VAE at equal wall-clock time. Every run gets
the same training budget (``--budget-s``, ``train.time_limit``) and a generous ``train.epochs`` (``--max-epochs``, the
length of the exponential schedule), and ends earlier once its val MSE improved by less than 2 % over the last
quarter of its epochs (``--plateau``, ``train.plateau``); per model and dataset ``--seeds`` seeds, the PQ-VAE and
the plain VQ-VAE of one seed trained side by side (``--workers 2``, one thread each, so both see the same machine).
Written as ``recon_pqvae[_TAG].json`` (the issue-29 file; the equal-step rows are ``recon_pqvae_equal_steps*``): ``{"script", "protocol": {...}, DATASET: {MODEL: {"mse", "seed_mse",
"converged", "runs": [{"seed", "converged", "stopped", "curve": [[train_s, val_mse], ...], "epochs", "steps",
"train_s", "mse", "load_avg", ...}]}}, "step_ratio": {DATASET: PQ-VAE seconds per step / plain VQ-VAE's}}``::

    OMP_NUM_THREADS=1 python benchmarks/recon_pqvae.py --converged --workers 2 --budget-s 1800

The run directories stay under ``--runs`` (default ``runs/bench-pqvae``) for ``hiervq info`` / ``hiervq prior``.
The committed MNIST results: the recipe's 6 epochs (2,814 steps) per model on one thread (see docs/pqvae.md)::

    OMP_NUM_THREADS=1 python benchmarks/recon_pqvae.py --threads 1 --only mnist
    python benchmarks/recon_pqvae.py --only mnist --set train.epochs=1       # a quicker look

The published model size (512-channel features, 3 residual blocks, the 64x16 spatial and 512x4 channel transforms,
lr 1e-3) for one epoch per model, written beside the committed rows as ``recon_pqvae_equal_steps_published.json`` (with
``pqvae_bayes_mnist_published.json`` and ``pqvae_bayes_mnist_smoothing_published.json``: ``--tag`` suffixes every
file)::

    OMP_NUM_THREADS=1 python benchmarks/recon_pqvae.py --threads 1 --tag published --models pqvae,vqvae_plain \
        --runs runs/bench-pqvae-published --set train.epochs=1 --set train.lr=1e-3 --set model.channels=512 \
        --set model.latent_channels=512 --set model.blocks=3 --set model.res_channels=128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hiervq.data import load_data  # noqa: E402
from hiervq.experiments.pqvae import bayes_curves, plot_bayes  # noqa: E402
from hiervq.io import atomic_write_bytes  # noqa: E402
from hiervq.pretrained import load  # noqa: E402
from hiervq.priors import extract_codes  # noqa: E402
from hiervq.train import train_run  # noqa: E402
from hiervq.train.config import apply_overrides, config_from_dict  # noqa: E402

RECIPES = {"mnist": "configs/pqvae-mnist.yaml", "cifar10": "configs/pqvae-cifar10.yaml"}


def vqvae_plain_model(pq_model: dict) -> dict:
    """The plain VQ-VAE of the published comparison at the PQ-VAE's bits per image and encoder/decoder sizes: an
    8x8 grid of K = 256 EMA codes of dimension 64, straight-through, no k-means, no dead-code reset. The codes are
    initialised from encoder outputs of the first batch: with random N(0, 1) codes it collapsed to 2 of 256 codes
    within the first epoch (test MSE 1.4e-2), a straw man the published row (0.78e-3) was not."""
    return {
        "name": "vqvae",
        "channels": pq_model["channels"],
        "blocks": pq_model["blocks"],
        "res_channels": pq_model["res_channels"],
        "levels": [{"downsample": 4, "codebook_size": pq_model["codebook_size"], "dim": 64}],
        "quantizer": {"estimator": "ste", "beta": 0.25, "ema_decay": 0.99, "init": "data", "dead_threshold": 0},
    }


def vqvae_model(pq_model: dict) -> dict:
    """Our strong single-level VQ-VAE at the PQ-VAE's bits per image: an 8x8 grid (downsample 4) of K = 256 codes,
    with the PQ-VAE's encoder/decoder sizes."""
    return {
        "name": "vqvae",
        "channels": pq_model["channels"],
        "blocks": pq_model["blocks"],
        "res_channels": pq_model["res_channels"],
        "levels": [{"downsample": 4, "codebook_size": pq_model["codebook_size"], "dim": 64, "code_dim": 16}],
        "quantizer": {"estimator": "rotation", "beta": 0.25, "ema_decay": 0.99, "init": "kmeans",
                      "dead_threshold": 2, "dead_window": 10},
    }


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def summarize(results: dict) -> dict:
    """The comparisons the docs quote: ``pqvae_over_plain`` = {dataset: {"mse": PQ-VAE's test MSE over the plain
    VQ-VAE's, "train_s": its training time over the plain model's (equal steps, so per step), "mse_over_ours": its
    test MSE over our VQ-VAE's, where that row exists}} for every dataset that has both rows."""
    out = {}
    for dataset, rows in results.items():
        if isinstance(rows, dict) and "pqvae" in rows and "vqvae_plain" in rows:
            pq, plain = rows["pqvae"], rows["vqvae_plain"]
            out[dataset] = {"mse": pq["mse"] / plain["mse"], "train_s": pq["train_s"] / plain["train_s"]}
            if "vqvae" in rows:
                out[dataset]["mse_over_ours"] = pq["mse"] / rows["vqvae"]["mse"]
    return {"pqvae_over_plain": out}


def merge_entry(path: Path, dataset: str, name: str, entry: dict) -> dict:
    """Write ``entry`` as ``[dataset][name]`` of the JSON at ``path``, re-reading the file under a lock first, so
    that two processes running different models (``--models pqvae`` beside ``--models vqvae_plain``) keep each
    other's rows. Returns the merged results."""
    with FileLock(str(path) + ".lock"):
        results = json.loads(path.read_text()) if path.is_file() else {}
        results["script"] = "benchmarks/recon_pqvae.py"
        results.setdefault(dataset, {})[name] = entry
        results.update(summarize({k: v for k, v in results.items() if k != "pqvae_over_plain"}))
        write_json(path, results)
    return results


def recipe_raw(dataset: str, overrides: list[str]) -> dict:
    """The dataset's PQ-VAE recipe as a raw config (no ``priors:`` section) with ``overrides`` and no progress bar."""
    raw = yaml.safe_load((REPO / RECIPES[dataset]).read_text())
    raw.pop("priors", None)
    return apply_overrides(raw, overrides + ["train.progress=false"])


def converged_job(dataset: str, name: str, seed: int, overrides: list[str], run_dir: str, threads: int) -> dict:
    """One run of the converged protocol (a worker process): train (or resume, or reuse) ``name`` on ``dataset``
    with ``overrides``; its entry: the final test numbers of the val-selected epoch and the val curve."""
    from hiervq.experiments.compare import train_or_resume
    from hiervq.train.rundir import RunDir

    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    raw = recipe_raw(dataset, overrides + [f"seed={seed}"])
    if name == "vqvae_plain":
        raw["model"] = vqvae_plain_model(raw["model"])
    summary = train_or_resume(config_from_dict(raw, f"{RECIPES[dataset]} ({name}, seed {seed})"), run_dir)
    history = RunDir(run_dir).read_metrics()
    stopped = history[-1].get("stopped") if history else None
    return {
        "seed": seed,
        "converged": stopped == "plateau",
        "stopped": stopped or "epochs",
        "curve": [[r["train_s"], r["val"]["mse"]] for r in history if "val" in r],
        "mse": summary["mse"],
        "psnr": summary["psnr"],
        "val_mse": summary["val"]["mse"],
        "selected_epoch": summary["selected_epoch"],
        "epochs": summary["epochs"],
        "steps": summary["steps"],
        "train_s": summary["train_s"],
        "s_per_step": summary["train_s"] / max(summary["steps"], 1),
        "perplexity": summary["levels"][0]["perplexity"],
        "params": summary["params"],
        "threads": threads,
        # the 1-minute load average when the run started and ended: the other jobs sharing the cores
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def converged_entry(runs: list[dict]) -> dict:
    """A model's row of the converged protocol from its runs (seeds)."""
    mses = [r["mse"] for r in runs]
    return {"mse": statistics.fmean(mses), "mse_std": statistics.stdev(mses) if len(mses) > 1 else 0.0, "seed_mse": mses, "converged": all(r["converged"] for r in runs),
            "seeds": len(runs), "train_s": [r["train_s"] for r in runs], "epochs": [r["epochs"] for r in runs],
            "runs": sorted(runs, key=lambda r: r["seed"])}


def run_converged(args, out_path: Path) -> dict:
    """The converged protocol (``--converged``); writes ``out_path`` after every finished run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    overrides = args.set + [f"train.epochs={args.max_epochs}", f"train.time_limit={args.budget_s}",
                            f"train.plateau={args.plateau}", "train.eval_every=1", "train.keep=best"]
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.only or sorted(RECIPES, key=lambda d: d != "mnist")
    jobs = [(d, name, seed) for d in datasets for seed in seeds for name in ("pqvae", "vqvae_plain")]
    result: dict = {
        "script": "benchmarks/recon_pqvae.py",
        "protocol": {"budget_s": args.budget_s, "plateau": args.plateau, "plateau_window": "last quarter of the epochs",
                     "max_epochs": args.max_epochs, "seeds": seeds, "workers": args.workers,
                     "threads_per_run": args.threads, "overrides": args.set,
                     "selected_on": "val", "command": " ".join(sys.argv),
                     "note": "each run ends at the plateau (converged) or at the budget; " + (
                         "the PQ-VAE and the plain VQ-VAE of a seed train side by side" if args.workers >= 2 else
                         "one run at a time (each run's load_avg says what else the machine ran)")},
    }
    done: dict = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        futures = {pool.submit(converged_job, d, name, seed, overrides,
                               str(Path(args.runs) / f"{d}-{name}-seed{seed}"), args.threads): (d, name, seed)
                   for d, name, seed in jobs}
        for future in as_completed(futures):
            d, name, seed = futures[future]
            run = future.result()
            print(f"{d} {name} seed {seed}: test MSE {run['mse']:.3e}, {run['epochs']} epochs, "
                  f"{run['train_s']:.0f} s, stopped at {run['stopped']}", flush=True)
            done.setdefault(d, {}).setdefault(name, []).append(run)
            for dataset, models in done.items():
                result[dataset] = {m: converged_entry(runs) for m, runs in models.items()}
            result["step_ratio"] = {
                dataset: (sum(r["s_per_step"] for r in models["pqvae"]) / len(models["pqvae"]))
                / (sum(r["s_per_step"] for r in models["vqvae_plain"]) / len(models["vqvae_plain"]))
                for dataset, models in done.items() if "pqvae" in models and "vqvae_plain" in models}
            write_json(out_path, result)
    return result


def converged_table(result: dict) -> str:
    """The docs' tables of a converged-protocol JSON: per dataset, per model the test MSE of each seed, epochs,
    training seconds, whether each run converged, and seed 0's validation curve (all x1e-3 where MSE)."""
    lines = []
    names = {"pqvae": "PQ-VAE", "vqvae_plain": "plain VQ-VAE"}
    for dataset in (d for d in RECIPES if d in result):
        lines += [f"{dataset} (step ratio {result['step_ratio'].get(dataset, float('nan')):.2f}):", "",
                  "| model | test MSE (x1e-3), per seed | mean | epochs | training s | ended at | val MSE curve "
                  "(x1e-3), first seed |", "|---|---|---|---|---|---|---|"]
        for model, entry in result[dataset].items():
            runs = entry["runs"]
            mse = " / ".join(f"{r['mse'] * 1e3:.2f}" for r in runs)
            epochs = " / ".join(str(r["epochs"]) for r in runs)
            seconds = " / ".join(f"{r['train_s']:.0f}" for r in runs)
            ended = " / ".join(r["stopped"] for r in runs)
            curve = ", ".join(f"{m * 1e3:.2f}" for _, m in runs[0]["curve"])
            lines.append(f"| {names.get(model, model)} | {mse} | {entry['mse'] * 1e3:.2f} | {epochs} | {seconds} | "
                         f"{ended} | {curve} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(RECIPES), action="append", help="run only these datasets")
    parser.add_argument("--models", default="pqvae,vqvae_plain,vqvae",
                        help="comma-separated subset of pqvae,vqvae_plain,vqvae")
    parser.add_argument("--set", action="append", default=[], help="override a key of both runs, e.g. train.epochs=1")
    parser.add_argument("--pq-set", action="append", default=[], help="override a key of the PQ-VAE runs only")
    parser.add_argument("--runs", default="runs/bench-pqvae", help="where the run directories go")
    parser.add_argument("--results", default="benchmarks/results", help="where the JSON files go")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--tag", default="",
                        help="suffix of every written JSON/figure name (recon_pqvae_equal_steps_TAG.json, ...), so a variant run "
                             "such as the published model size does not overwrite the committed results")
    parser.add_argument("--converged", action="store_true",
                        help="the equal-wall-clock protocol: PQ-VAE vs the plain VQ-VAE, each to its plateau or budget")
    parser.add_argument("--budget-s", type=float, default=1800.0, help="--converged: training seconds per run")
    parser.add_argument("--plateau", type=float, default=0.02, help="--converged: train.plateau")
    parser.add_argument("--max-epochs", type=int, default=100, help="--converged: train.epochs (the schedule's length)")
    parser.add_argument("--seeds", default="0,1", help="--converged: comma-separated seeds")
    parser.add_argument("--workers", type=int, default=2, help="--converged: runs at a time")
    parser.add_argument("--table", action="store_true",
                        help="train nothing: print the docs' tables of the converged JSON (recon_pqvae[_TAG].json)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: add pqvae_over_plain (summarize()) to the existing recon_pqvae_equal_steps[_TAG].json")
    args = parser.parse_args()
    suffix = f"_{args.tag}" if args.tag else ""
    if args.table:
        folder = REPO / args.results if not Path(args.results).is_absolute() else Path(args.results)
        print(converged_table(json.loads((folder / f"recon_pqvae{suffix}.json").read_text())))
        return 0
    if args.summarize:
        path = (REPO / args.results if not Path(args.results).is_absolute() else Path(args.results)) / f"recon_pqvae_equal_steps{suffix}.json"
        results = json.loads(path.read_text())
        results.update(summarize({k: v for k, v in results.items() if k != "pqvae_over_plain"}))
        write_json(path, results)
        print(json.dumps(results["pqvae_over_plain"], indent=2))
        return 0
    results_dir = REPO / args.results if not Path(args.results).is_absolute() else Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.converged:
        if args.runs == "runs/bench-pqvae":
            args.runs = "runs/bench-pqvae-converged"
        result = run_converged(args, results_dir / f"recon_pqvae{suffix}.json")
        print(json.dumps({k: v for k, v in result.items() if k in ("step_ratio", "protocol")}, indent=2))
        return 0
    torch.set_num_threads(args.threads)
    out_path = results_dir / f"recon_pqvae_equal_steps{suffix}.json"
    results: dict = {}  # the merged file after each model (merge_entry)
    models = args.models.split(",")

    for dataset in args.only or sorted(RECIPES, key=lambda d: d != "mnist"):
        raw = recipe_raw(dataset, args.set)
        data = load_data(config_from_dict(raw, RECIPES[dataset]).data)
        for name in models:
            run_raw = apply_overrides(raw, args.pq_set)
            if name in ("vqvae", "vqvae_plain"):
                run_raw["model"] = (vqvae_model if name == "vqvae" else vqvae_plain_model)(raw["model"])
            config = config_from_dict(run_raw, f"{RECIPES[dataset]} ({name})")
            run_dir = Path(args.runs) / f"{dataset}-{name}"
            t0 = time.time()
            summary = train_run(config, run_dir, overwrite=True, data=data)
            wall_s = time.time() - t0
            print(f"{dataset} {name}: test MSE {summary['mse']:.3e} ({wall_s:.0f}s wall)", flush=True)
            entry = {
                "mse": summary["mse"],
                "psnr": summary["psnr"],
                "perplexity": summary["levels"][0]["perplexity"],
                "epochs": summary["epochs"],
                "steps": summary["steps"],
                "train_s": summary["train_s"],
                "threads": torch.get_num_threads(),
                "recon_reduction": run_raw["model"].get("recon_reduction", "mean"),
                "bits_per_image": summary["bits_per_image"],
                "params": summary["params"],
                "used_fraction": summary["levels"][0]["used_fraction"],
                "wall_s": round(wall_s, 1),  # the whole train_run: training, evaluations, checkpoints
            }
            results = merge_entry(out_path, dataset, name, entry)
            if dataset == "mnist" and name == "pqvae":
                model = load(run_dir)
                train = extract_codes(model, data.train)
                test = extract_codes(model, data.test)
                curves = bayes_curves(train.codes, train.labels, test.codes, test.labels,
                                      model.levels[0].codebook_size, 10)
                bayes = {"script": "benchmarks/recon_pqvae.py",
                         **{k: curves[k] for k in ("prefix_lengths", "independent", "conditional")}}
                write_json(results_dir / f"pqvae_bayes_mnist{suffix}.json", bayes)
                smoothing: dict = {"script": "benchmarks/recon_pqvae.py"}
                for alpha in (0.01, 0.1, 1.0, 10.0):
                    c = curves if alpha == curves["alpha"] else bayes_curves(
                        train.codes, train.labels, test.codes, test.labels,
                        model.levels[0].codebook_size, 10, alpha=alpha)
                    smoothing[str(alpha)] = {m: {"all_codes": c[m][-1], "best": max(c[m]),
                                                 "best_prefix": c["prefix_lengths"][c[m].index(max(c[m]))]}
                                             for m in ("independent", "conditional")}
                write_json(results_dir / f"pqvae_bayes_mnist_smoothing{suffix}.json", smoothing)
                plot_bayes(curves, results_dir / f"pqvae_bayes_mnist{suffix}.png", "MNIST PQ-VAE codes: Bayes rule on counts")
                print(f"mnist pqvae Bayes: best independent {max(bayes['independent']):.4f}, "
                      f"best conditional {max(bayes['conditional']):.4f}", flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
