"""``hiervq compare``: a hierarchical VQ-VAE and its capacity-matched single-level twin, trained identically.

Both runs use the same config except the ``model`` section (same objective, quantizer, schedule, seed and hence
data order, same images loaded once). Output folder::

    OUT/hier/, OUT/single/   ordinary run directories (resumable; a finished one is reused)
    OUT/compare.json         both models' test metrics, budgets, codebook health, params, wall time
    OUT/lorenz.png           Lorenz curves of code usage of every codebook of both models
    OUT/psnr_scatter.png     per-image test PSNR, single-level vs hierarchical
    OUT/report.md            the table and figures
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplits, load_data
from ..errors import HierVQError
from ..io import atomic_write_bytes, write_json
from ..layout import COMPARE_RESULT, COMPARE_RUNS, REPORT, RunDir
from ..metrics import psnr
from ..metrics.plots import plot_lorenz, plot_paired_scatter
from ..pretrained import load
from ..train.config import RunConfig, config_from_dict, dump_config
from ..train.run import train_run
from ..train.rundir import check_replaceable, mark_output_dir, record_written
from ..train.trainer import Trainer
from .capacity import CapacityMatch, match_capacity
from .study import TrainingSnapshots, finish_study, study_finished

logger = logging.getLogger(__name__)

ARCHS = COMPARE_RUNS


def train_or_resume(config: RunConfig, run_dir: str | Path, data: DataSplits | None = None) -> dict[str, Any]:
    """Train ``config`` into ``run_dir``, continue it from its checkpoint, or return its finished summary.

    With a ``study:`` section, training snapshots are taken and their figures drawn. Refuses (HierVQError) to
    reuse a run directory that was started with a different config.
    """
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    if run.config.is_file() and run.config.read_text() != dump_config(config):
        raise HierVQError(
            f"{run_dir} was started with a different config ({run.config}); pass --overwrite or choose another --out"
        )
    data = data or load_data(config.data)
    if run.is_finished() and (config.study is None or study_finished(run_dir)):
        return run.read_summary()
    if not run.is_finished():
        callbacks = []
        if config.study is not None:
            epochs = sum(p.epochs for p in config.train.phase_list())
            callbacks.append(TrainingSnapshots(config.study, run_dir, data.test, epochs))
        resume = run.has_checkpoint()
        train_run(config, run_dir, resume=resume, overwrite=not resume, callbacks=callbacks, data=data)
    if config.study is not None:
        finish_study(config.study, run_dir, data.test, seed=config.seed)
    return run.read_summary()


def evaluate_saved(config: RunConfig, run_dir: str | Path, data: DataSplits) -> dict[str, Any]:
    """Test evaluation of a finished run's saved model with per-image MSE and code counts per level."""
    trainer = Trainer(config.train, None, seed=config.seed)
    model = load(RunDir(run_dir).model).to(trainer.dist.device)
    return trainer.evaluate(model, data.test, with_counts=True, per_image=True)


def model_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """One model's row from its ``summary.json``: K, D, C per level (scalars for one level), budgets, test
    PSNR/MSE (mean and std over images), codebook health and cost.

    For a hierarchy, ``perplexity`` and ``normalized_perplexity`` are means over its levels and
    ``used_fraction`` is used codes / codes over all its codebooks.
    """
    levels = summary["levels"]
    one = len(levels) == 1

    def per_level(key: str):
        values = [lv[key] for lv in levels]
        return values[0] if one else values

    total_codes = sum(lv["codebook_size"] for lv in levels)
    used = sum(lv["codebook_size"] - lv["dead_codes"] for lv in levels)
    return {
        "K": per_level("codebook_size"),
        "D": per_level("code_dim"),
        "C": per_level("channels"),
        "continuous_budget": int(summary["budget"]["continuous"]),
        "discrete_budget": int(summary["budget"]["discrete"]),
        "psnr": summary["psnr"],
        "psnr_std": summary["psnr_std"],
        "mse": summary["mse"],
        "mse_std": summary["mse_std"],
        "perplexity": sum(lv["perplexity"] for lv in levels) / len(levels),
        "normalized_perplexity": sum(lv["normalized_perplexity"] for lv in levels) / len(levels),
        "used_fraction": used / total_codes,
        "used_codes": used,
        "dead_codes": total_codes - used,
        "gini": [lv["gini"] for lv in levels] if not one else levels[0]["gini"],
        "bits_per_image": summary["bits_per_image"],
        "params": int(summary["params"]),
        "train_s": summary["train_s"],
        "test_losses": summary.get("losses", {}),
    }


def arch_configs(config: RunConfig, match: CapacityMatch) -> dict[str, RunConfig]:
    """The two run configs: ``config`` with the hierarchical and with the matched single-level model section."""
    raw = config.to_dict()
    raw.pop("compare", None)
    raw.pop("sweep", None)
    out = {}
    for arch, model in (("hier", match.hier), ("single", match.single)):
        raw["model"] = model
        out[arch] = config_from_dict(dict(raw), f"{config.source} [{arch}]")
    return out


def run_compare(
    config: RunConfig, out_dir: str | Path, data: DataSplits | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Match, train both models (or reuse/resume finished runs), evaluate, write the report; returns
    ``compare.json``'s content: ``{"match": ..., "hier": entry, "single": entry}`` (see :func:`model_entry`)."""
    out_dir = Path(out_dir)
    if overwrite:
        check_replaceable(out_dir, "compare output folder")
    data = data or load_data(config.data)  # before deleting anything: a typo in data.path keeps the old results
    if overwrite and out_dir.exists():
        shutil.rmtree(out_dir)
    since = time.time_ns()  # what this call writes into out_dir goes into its manifest (train.rundir)
    mark_output_dir(out_dir)
    c, h, _ = data.train.shape
    cmp = config.compare
    match = match_capacity(
        config.model, image_size=h, in_channels=c,
        code_dim=cmp.single_code_dim if cmp else None,
        codebook_size=cmp.single_codebook_size if cmp else None,
        where=f"{config.source}: model",
    )
    logger.info(match.describe())
    configs = arch_configs(config, match)
    entries, evals = {}, {}
    for arch in ARCHS:
        logger.info(f"== {arch}: {out_dir / arch}")
        summary = train_or_resume(configs[arch], out_dir / arch, data)
        entries[arch] = model_entry(summary)
        evals[arch] = evaluate_saved(configs[arch], out_dir / arch, data)

    counts, labels = [], []
    for arch in ARCHS:
        for i, lv in enumerate(evals[arch]["counts"]):
            counts.append(lv)
            name = "hierarchical level " + str(i) if arch == "hier" else "single-level"
            labels.append(f"{name} K={len(lv)}")
    plot_lorenz(counts, labels, out_dir / "lorenz.png", title="code usage on the test set")
    p = {arch: psnr(evals[arch]["mse_per_image"]) for arch in ARCHS}
    better = float((p["single"] > p["hier"]).double().mean())
    plot_paired_scatter(p["hier"], p["single"], out_dir / "psnr_scatter.png",
                        "hierarchical PSNR (dB)", "single-level PSNR (dB)",
                        f"per test image: single-level better on {better:.0%}")
    result = {
        "match": {
            "continuous_budget": match.hier_budget.continuous,
            "discrete_budget": match.hier_budget.discrete,
            "hier_model": match.hier,
            "single_model": match.single,
        },
        "hier": entries["hier"],
        "single": entries["single"],
        "psnr_gap_db": entries["hier"]["psnr"] - entries["single"]["psnr"],
        "single_better_fraction": better,
        "paired_psnr_diff_std": float(torch.std(p["hier"] - p["single"])),
    }
    write_json(out_dir / COMPARE_RESULT, result)
    write_compare_report(out_dir, match, result)
    print(
        f"hierarchical {entries['hier']['psnr']:.2f} dB vs single-level {entries['single']['psnr']:.2f} dB "
        f"(gap {result['psnr_gap_db']:+.2f} dB) -> {out_dir / REPORT}",
        flush=True,
    )
    record_written(out_dir, since)
    return result


def _fmt_list(v) -> str:
    return " + ".join(map(str, v)) if isinstance(v, list) else str(v)


def compare_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown table of :func:`model_entry` rows."""
    head = (
        "| model | K | D | C | PSNR (dB) | MSE | perplexity | normalised | used codes | params | train s |\n"
        "|-------|---|---|---|-----------|-----|------------|------------|------------|--------|---------|\n"
    )
    body = "".join(
        f"| {name} | {_fmt_list(e['K'])} | {_fmt_list(e['D'])} | {_fmt_list(e['C'])} | "
        f"{e['psnr']:.2f} ± {e['psnr_std']:.2f} | {e['mse']:.2e} ± {e['mse_std']:.1e} | {e['perplexity']:.1f} | "
        f"{e['normalized_perplexity']:.3f} | {e['used_codes']} ({e['used_fraction']:.0%}) | {e['params']:,} | "
        f"{e['train_s']:.0f} |\n"
        for name, e in rows
    )
    return head + body


def write_compare_report(out_dir: Path, match: CapacityMatch, result: dict[str, Any]) -> None:
    text = f"""# Capacity-matched comparison

```
{match.describe()}
```

Both models were trained with the same config apart from the model section (objective, quantizer, schedule,
seed and data order). Test set metrics, PSNR and MSE as mean ± std over images; for the hierarchy perplexity
and normalised perplexity are means over its levels.

{compare_table([("hierarchical", result["hier"]), ("single-level", result["single"])])}
Gap (hierarchical - single-level): {result['psnr_gap_db']:+.2f} dB; the single-level model reconstructs
{result['single_better_fraction']:.0%} of the test images better.

![Lorenz curves](lorenz.png) ![per-image PSNR](psnr_scatter.png)

Run directories: `hier/`, `single/` (each with its own report.md).
"""
    atomic_write_bytes(out_dir / REPORT, text.encode())
