"""Reconstruction quality on MNIST at 512 bits per image: single-level VQ-VAE vs 2-level hierarchical VQ-VAE.

Trains configs/vqvae-mnist.yaml (8x8 codes, K = 256) and configs/hvqvae2-mnist.yaml (8x8 codes from K = 64 plus
4x4 codes from K = 256: also 512 bits) with the library's own `train_run`, evaluates on the full MNIST test
split (MSE on [0, 1]) and writes benchmarks/results/recon_mnist.json:

    {"vqvae": {"mse", "psnr", "perplexity", "epochs", "train_s", "wall_s", ...}, "hvqvae": {...}}

(``train_s`` counts training only, ``wall_s`` the model's whole ``train_run`` with its evaluations.)

``perplexity`` is the test-set perplexity of the bottom level's codebook (all levels are under
``perplexity_levels``). Run from the repository root (data in ../shared/data/mnist):

    python benchmarks/recon_mnist.py [--only vqvae] [--set train.epochs=2 ...] [--runs runs/bench]
    python benchmarks/recon_mnist.py --plot-only      # redraw docs/recon_mnist_curve.png from the JSON

Each model is sized to train in under 30 minutes on 2 CPU cores (the VQ-VAE about 18, the 2-level model about
21 on an otherwise idle 2-core machine); run it alone on the machine for honest timings. ``curve`` holds the test MSE
after every epoch (on the first ``train.eval_limit`` test images) with the training seconds spent so far, so the
time to reach a given MSE can be read off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hiervq.io import write_json
from hiervq.layout import RunDir
from hiervq.train import load_config, train_run

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"vqvae": ROOT / "configs" / "vqvae-mnist.yaml", "hvqvae": ROOT / "configs" / "hvqvae2-mnist.yaml"}
RESULT = ROOT / "benchmarks" / "results" / "recon_mnist.json"
FIGURE = ROOT / "docs" / "recon_mnist_curve.png"
BAR_MSE = 1.0e-3  # the target of issue 2: VQ-VAE test MSE within 30 minutes on 2 CPU cores
PUBLISHED_VQVAE_MSE = 0.78e-3
LABELS = {"vqvae": "VQ-VAE (8x8, K=256)", "hvqvae": "2-level (8x8 K=64 + 4x4 K=256)"}


def run_models(models: dict[str, Path], args: argparse.Namespace, output: Path,
               extra: Callable[[dict, Path], dict] | None = None,
               script: str = "benchmarks/recon_mnist.py") -> dict:
    """Train each of ``models`` ({name: config path}) into ``args.runs``/name (``name-seedN`` with ``--seeds``),
    writing ``output`` after each run (entries of models trained before are kept; ``"script"`` names the benchmark
    that wrote the file); ``extra(summary, run_dir)`` adds keys to a model's entry. With several seeds a model's
    entry is :func:`combine_seeds` of its runs."""
    results = json.loads(output.read_text()) if output.is_file() else {}
    results["script"] = script
    seeds = [int(s) for s in args.seeds.split(",")] if getattr(args, "seeds", None) else [None]
    for name in args.only or list(models):
        runs = []
        for seed in seeds:
            overrides = args.set + ([f"seed={seed}"] if seed is not None else [])
            config = load_config(models[name], overrides)
            run_dir = Path(args.runs) / (name if seed is None else f"{name}-seed{seed}")
            start = time.perf_counter()
            summary = train_run(config, run_dir, overwrite=True)
            wall_s = time.perf_counter() - start
            runs.append(run_entry(summary, run_dir, wall_s, extra, models[name], overrides, config.seed))
            results[name] = runs[0] if seed is None else combine_seeds(runs)
            write_json(output, results)
            print(f"{name} (seed {config.seed}): test MSE {summary['mse']:.3e}, PSNR {summary['psnr']:.2f} dB, "
                  f"{summary['train_s']:.0f} s, selected on {summary.get('selected_on')}", flush=True)
    return results


def run_entry(summary: dict, run_dir: Path, wall_s: float, extra: Callable[[dict, Path], dict] | None,
              config: Path, overrides: list[str], seed: int) -> dict:
    """One run's record: its test numbers, training seconds, codebook use, how its weights were selected
    (``selected_on``: ``"val"`` when the data has a validation split and the best val epoch was kept) and its
    curve: the val MSE after every epoch (``val_mse``; ``test_mse`` for runs without a val split) with the
    training seconds so far."""
    metrics = RunDir(run_dir).read_metrics()
    split = "val" if any("val" in r for r in metrics) else "test"
    entry = {
        "mse": summary["mse"],
        "psnr": summary["psnr"],
        **(extra(summary, run_dir) if extra else {}),
        "perplexity": summary["levels"][0]["perplexity"],
        "epochs": summary["epochs"],
        "train_s": summary["train_s"],
        "wall_s": round(wall_s, 1),  # the whole train_run: training, the evaluations, checkpoints
        "perplexity_levels": [lv["perplexity"] for lv in summary["levels"]],
        "used_fraction_levels": [lv["used_fraction"] for lv in summary["levels"]],
        "bits_per_image": summary["bits_per_image"],
        "params": summary["params"],
        "test_images": summary["test_images"],
        "config": str(config.relative_to(ROOT)),
        "overrides": overrides,
        "seed": seed,
        "threads": torch.get_num_threads(),
    }
    if "val" in summary:
        entry.update(selected_on=summary["selected_on"], selected_epoch=summary["selected_epoch"],
                     val_mse=summary["val"]["mse"], val_images=summary["val_images"],
                     train_images=summary["train_images"])
    if "stopped" in summary:
        entry["stopped"] = summary["stopped"]
    entry["curve"] = [
        {"epoch": r["epoch"], "train_s": r["train_s"], f"{split}_mse": r[split]["mse"]}
        for r in metrics
        if split in r
    ]
    return entry


def combine_seeds(runs: list[dict]) -> dict:
    """One model's entry over several seeds: the mean test MSE and PSNR, every seed's (``seed_mse``,
    ``seed_psnr``, ``seed_val_mse``, ``seed_train_s``, ``seed_epochs``), the longest training (``train_s``), how
    the weights were selected (``selected_on``: ``"val"`` only when every seed's were) and each run whole
    (``runs``); the first run's other keys describe the model."""
    first = runs[0]
    entry = {k: v for k, v in first.items() if k not in ("curve", "seed", "overrides", "wall_s")}
    entry.update(
        mse=statistics.fmean(r["mse"] for r in runs),
        psnr=statistics.fmean(r["psnr"] for r in runs),
        mse_std=statistics.stdev(r["mse"] for r in runs) if len(runs) > 1 else 0.0,
        seeds=[r["seed"] for r in runs],
        seed_mse=[r["mse"] for r in runs],
        seed_psnr=[r["psnr"] for r in runs],
        seed_train_s=[r["train_s"] for r in runs],
        seed_epochs=[r["epochs"] for r in runs],
        train_s=max(r["train_s"] for r in runs),
        selected_on="val" if all(r.get("selected_on") == "val" for r in runs) else first.get("selected_on", "last"),
        curve=first["curve"],
        runs=runs,
    )
    if all("val_mse" in r for r in runs):
        entry["seed_val_mse"] = [r["val_mse"] for r in runs]
        entry["val_mse"] = statistics.fmean(entry["seed_val_mse"])
    return entry


def main(models: dict[str, Path] = MODELS, result: Path = RESULT, figure: Path = FIGURE,
         runs: str = "runs/bench-recon-mnist", extra: Callable[[dict, Path], dict] | None = None,
         labels: dict[str, str] = LABELS, lines: list[tuple[float, str, str]] | None = None,
         title: str = "MNIST 32x32, 512 bits per image", description: str | None = None,
         script: str = "benchmarks/recon_mnist.py") -> None:
    """The command line of this benchmark and of its CIFAR-10 twin (recon_cifar10.py), which passes its own
    models, files, reference lines and title."""
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(models), action="append", help="run only these models")
    parser.add_argument("--set", action="append", default=[], help="config override for every model")
    parser.add_argument("--seeds", help="comma-separated seeds: one run per seed (runs/NAME-seedN), the model's "
                        "entry their mean with seed_mse (default: the config's seed, one run)")
    parser.add_argument("--runs", default=runs, help="where the run directories go")
    parser.add_argument("--output", default=str(result))
    parser.add_argument("--figure", default=str(figure), help="test MSE against training time, both models")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the figure from --output")
    args = parser.parse_args()

    output = Path(args.output)
    if args.plot_only:
        results = json.loads(output.read_text()) if output.is_file() else {}
    else:
        results = run_models(models, args, output, extra, script)
    if lines is None:
        lines = [(BAR_MSE, "bar: 1.0e-3 within 30 min", "--"), (PUBLISHED_VQVAE_MSE, "published VQ-VAE 0.78e-3", ":")]
    plot_curves(results, Path(args.figure), labels, lines, title)


def plot_curves(results: dict, path: Path, labels: dict[str, str], lines: list[tuple[float, str, str]],
                title: str) -> None:
    """Test MSE after each epoch against training minutes per model, with horizontal reference ``lines``
    (value, label, line style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    entries = {name: entry for name, entry in results.items() if isinstance(entry, dict)}  # not "script"
    for name, entry in entries.items():
        curve = entry.get("curve") or []
        if curve:
            ax.plot([c["train_s"] / 60 for c in curve], [c.get("test_mse", c.get("val_mse")) for c in curve], marker=".",
                    label=f"{labels.get(name, name)}: {entry['mse']:.2e} final")
    for value, label, style in lines:
        ax.axhline(value, color="k" if style == "--" else "grey", ls=style, lw=1, label=label)
    ax.set_yscale("log")
    threads = next(iter(entries.values()), {}).get("threads", "?")
    ax.set_xlabel(f"training time (min, {threads} CPU thread{'' if threads == 1 else 's'})")
    ax.set_ylabel("MSE per epoch: val, or test without a val split (pixels on [0, 1])")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
