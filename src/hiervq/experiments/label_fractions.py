"""``hiervq classify``: semi-supervised classification with scarce labels on a pretrained model's features.

Pretrain (or reuse) a discrete autoencoder on the training images without their labels, then train one MLP head per
label fraction and per feature source (rows of ``classify.models``, plus the same head on raw pixels), selecting
the epoch on the validation split and reporting the test accuracy at that epoch and at the last one. The label
subsets are stratified, seeded, nested and identical for every row, so the comparison is paired. Output::

    OUT/pretrain/            the pretraining run (reused when finished, resumed when interrupted)
    OUT/results.json         every number: accuracies, per-class accuracy, confusion matrices, params, times
    OUT/confusion_<pct>.png  test confusion matrices of every row at that fraction (val-selected epoch)
    OUT/report.md            the accuracy table, per-class accuracy, parameter counts, pretraining time
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..classify import ConvClassifier, FeatureClassifier, MLPHead, extract_features
from ..classify.config import ClassifyConfig
from ..data import label_subset, load_data
from ..errors import ConfigError, DataError, HierVQError
from ..io import atomic_write_bytes, write_json
from ..layout import CLASSIFY_RESULT, PRETRAIN_DIR, REPORT, RunDir
from ..metrics import per_class_accuracy
from ..metrics.plots import plot_confusions
from ..models.base import DiscreteAutoencoder
from ..pretrained import load, resolve_model_dir
from ..schema import to_dict
from ..train import fit_classifier
from ..train.run import seed_everything
from ..train.rundir import mark_output_dir, record_written
from .compare import train_or_resume

PIXELS = "pixels_mlp"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def phase_seconds(run_dir: Path) -> dict[str, float]:
    """Training seconds per phase of a finished run, from its ``metrics.jsonl`` (cumulative ``train_s``)."""
    out: dict[str, float] = {}
    previous = 0.0
    for record in RunDir(run_dir).read_metrics():
        out[record["phase"]] = out.get(record["phase"], 0.0) + record["train_s"] - previous
        previous = record["train_s"]
    return {k: round(v, 2) for k, v in out.items()}


def pretrain_seconds(phases: dict[str, float], path: str) -> float:
    """Seconds of the phases that trained submodule ``path`` ("" = all phases; "all" counts for every path)."""
    if not path:
        return round(sum(phases.values()), 2)
    return round(sum(s for name, s in phases.items() if name in (path, "all") or name.startswith(path + ".")), 2)


def pretrain(config, out_dir: Path, pretrained: str | None, log) -> tuple[Path, float | None]:
    """The finished pretraining run to use: ``pretrained``, or ``OUT/pretrain`` (trained, resumed or reused).
    Returns the run directory and the wall time spent training here (None when nothing was trained)."""
    if pretrained:
        resolve_model_dir(pretrained)  # a clear error when it is not a finished run
        return Path(pretrained), None

    run_dir = out_dir / PRETRAIN_DIR
    finished = RunDir(run_dir).is_finished()
    t0 = time.perf_counter()
    try:
        train_or_resume(config.with_sections(classify=None), run_dir)
    except HierVQError as exc:
        raise HierVQError(f"{exc} (delete {run_dir} to pretrain again)") from None
    if finished:
        log(f"reusing the pretrained model in {run_dir}")
        return run_dir, None
    return run_dir, round(time.perf_counter() - t0, 2)


def _row_encoder(model, row, name: str, source: str):
    """The submodule of ``model`` a row's head sits on (a :class:`DiscreteAutoencoder`)."""
    try:
        encoder = model.get_submodule(row.source) if row.source else model
    except AttributeError:
        raise ConfigError(f"{source}: classify.models.{name}: the pretrained {model.registry_name} "
                          f"has no submodule {row.source!r}") from None
    if not isinstance(encoder, DiscreteAutoencoder):
        raise ConfigError(f"{source}: classify.models.{name}: {row.source!r} is not a discrete autoencoder")
    return encoder


def _make_head(cc, in_features: int, n_classes: int, trains_encoder: bool, seed: int = 0, head=None):
    """A freshly initialised head (from ``seed``; ``head``: the row's head config, default ``cc.head``); when the
    encoder trains (and ``standardize``), batch statistics follow the features as they move."""
    head = head or cc.head
    seed_everything(seed)
    return MLPHead(in_features, n_classes, head.hidden, head.dropout, batch_norm=head.standardize and trains_encoder)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def selected_on(per_fraction: list[list], val_images: int) -> str | None:
    """The split the reported evaluation point was selected on, read from what ran: ``"val"`` when there was a
    validation split (``val_images`` > 0) and every run's selected epoch (``best_epoch``) is an evaluated epoch at
    which its validation accuracy peaked; None otherwise (no run, no val split, or a selection val does not explain)."""
    runs = [r for fraction in per_fraction for r in fraction]
    if not runs or val_images <= 0:
        return None
    for r in runs:
        accs = [h["val_acc"] for h in r.history]
        if not any(h["epoch"] == r.best_epoch and h["val_acc"] == max(accs) for h in r.history):
            return None
    return "val"


def _row_result(row, mode: str, feature_shape: list[int], per_fraction: list[list | None], enc_params: int,
                head_params: int, row_pretrain: float, val_images: int = 0) -> dict[str, Any]:
    """A table row: mean and std over seeds at each fraction, the per-seed runs, and the confusion matrices summed
    over seeds (per-class accuracy from them). A fraction the row does not run at (``None``) is null in every
    per-fraction list."""
    def each(fn) -> list:
        return [None if runs is None else fn(runs) for runs in per_fraction]

    def mean(key: str) -> list[float | None]:
        return each(lambda runs: _mean_std([getattr(r, key) for r in runs])[0])

    def summed(key: str) -> list:
        return each(lambda runs: np.sum([getattr(r, key) for r in runs], axis=0).tolist())

    def accuracy(confusions: list) -> list:
        return [None if c is None else per_class_accuracy(torch.as_tensor(c)).tolist() for c in confusions]

    confusion, final_confusion = summed("test_confusion"), summed("final_test_confusion")
    return {
        "source": "pixels" if row is None or mode == "cnn" else (row.source or "<model>"),
        "mode": mode,
        "finetune": mode == "finetune",
        "feature_shape": feature_shape,
        "test_acc": mean("test_acc"),
        "test_acc_std": each(lambda runs: _mean_std([r.test_acc for r in runs])[1]),
        "seeds": each(len),
        "selected_on": selected_on([runs for runs in per_fraction if runs is not None], val_images),
        "best_on_test": mean("best_test_acc"),
        "final_test_acc": mean("final_test_acc"),
        "val_acc": mean("val_acc"),
        "best_epoch": each(lambda runs: [r.best_epoch for r in runs]),
        "epochs": each(lambda runs: runs[0].epochs),
        "steps": each(lambda runs: runs[0].steps),
        "train_images": each(lambda runs: runs[0].train_images),
        "seed_test_acc": each(lambda runs: [r.test_acc for r in runs]),
        "per_class": accuracy(confusion),
        "final_per_class": accuracy(final_confusion),
        "confusion": confusion,
        "final_confusion": final_confusion,
        "classifier_s": each(lambda runs: sum(r.train_s for r in runs)),
        "runs": each(lambda runs: [{k: v for k, v in r.as_dict().items() if k not in ("history",)} for r in runs]),
        "history": each(lambda runs: [r.history for r in runs]),
        "params": enc_params + head_params,
        "encoder_params": enc_params,
        "head_params": head_params,
        "pretrain_s": row_pretrain,
    }


def _labeled_data(config, model):
    data_cfg = config.classify.data or config.data
    if data_cfg.name == "folder" and data_cfg.labels is None:  # classification needs labels: the class sub-folders

        data_cfg = replace(data_cfg, labels="folders")
    data = load_data(data_cfg)
    if data.lazy:
        raise DataError(f"{data_cfg.path or data_cfg.name}: classification reads its images into memory; set "
                        "data.lazy: false (or a larger data.memory_limit_mb)")
    if data.val is None:
        raise ConfigError(f"{config.source}: classification needs a validation split: set data.val_fraction (e.g. 0.1)")
    for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
        if split.labels is None:
            raise DataError(f"the {name} split of {data_cfg.path or data_cfg.name} has no labels")
        if tuple(split.shape) != tuple(model.image_shape):
            raise DataError(
                f"the labeled images are {tuple(split.shape)} but the pretrained model expects {tuple(model.image_shape)}; "
                "set data.image_size / data.channels to match"
            )
    return data


def run_label_fractions(
    config,
    out_dir: str | Path,
    fractions: list[float] | None = None,
    pretrained: str | None = None,
    overwrite: bool = False,
    log=print,
    on_row=None,
) -> dict[str, Any]:
    """Pretrain (or reuse) and classify with every label fraction; writes ``results.json`` and ``report.md``.

    Args:
        config: a :class:`~hiervq.train.RunConfig` (its ``classify`` section, or the defaults).
        out_dir: output folder (``OUT/pretrain`` holds the pretraining run unless ``pretrained`` is given).
        fractions: overrides ``classify.fractions``.
        pretrained: a finished run (or saved model) directory to use instead of pretraining.
        overwrite: redo the classification when ``OUT/results.json`` exists (the pretraining run is kept).
        on_row: called with the result so far (the same dict, ``models`` growing) after each row, e.g. to write a
            benchmark's JSON as rows arrive.
    """
    t_start = time.perf_counter()
    if config.classify is None:
        config = config.with_sections(classify=ClassifyConfig())
        config.source = "<defaults>"
    cc = config.classify
    fractions = sorted({float(f) for f in (fractions or cc.fractions)}, reverse=True)
    if any(not 0.0 < f <= 1.0 for f in fractions):
        raise ConfigError(f"--fractions must be in (0, 1], got {fractions}")
    out_dir = Path(out_dir)
    if (out_dir / CLASSIFY_RESULT).is_file() and not overwrite:
        raise HierVQError(f"{out_dir} already holds {CLASSIFY_RESULT}; pass --overwrite to classify again "
                          "(a finished pretraining run there is reused)")
    since = time.time_ns()  # what this call writes into out_dir goes into its manifest (train.rundir)
    mark_output_dir(out_dir)

    run_dir, pretrain_wall = pretrain(config, out_dir, pretrained, log)
    device = torch.device("cpu")
    model = load(run_dir)
    phases = phase_seconds(run_dir)
    data = _labeled_data(config, model)
    classes = data.train.class_names or [str(c) for c in range(data.train.num_classes)]
    n_classes = len(classes)
    y = {"train": data.train.labels, "val": data.val.labels, "test": data.test.labels}
    row_configs = cc.rows()
    repeats = {f: max([cc.repetitions(f)] + [cc.repetitions(f, row) for row in row_configs.values()]) for f in fractions}
    subsets = {(f, r): torch.as_tensor(label_subset(y["train"].numpy(), f, cc.subset_seed + r))
               for f in fractions for r in range(repeats[f])}
    log(f"labeled data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images, "
        f"{n_classes} classes; subsets {', '.join(f'{_pct(f)}: {len(subsets[f, 0])} x {repeats[f]}' for f in fractions)}")
    summary = RunDir(run_dir).read_summary() if RunDir(run_dir).is_finished() else {}
    result = {
        "fractions": fractions,
        "selected_on": None,
        "class_names": classes,
        "data": {"train": len(data.train), "val": len(data.val), "test": len(data.test),
                 "image_shape": list(data.train.shape), "subset_sizes": [len(subsets[f, 0]) for f in fractions]},
        "pretrain": {"run": str(run_dir), "model": model.registry_name, "params": model.num_parameters(),
                     "train_s": summary.get("train_s"), "wall_s": pretrain_wall, "phases": phases,
                     "test_mse": summary.get("mse"), "test_psnr": summary.get("psnr")},
        "classify": to_dict(cc),
        "models": {},
        "wall_s": None,
    }

    rows: dict[str, dict[str, Any]] = result["models"]
    images = {k: getattr(data, k).images for k in y}
    sources = list(row_configs.items()) + ([(PIXELS, None)] if cc.pixels_baseline else [])
    for name, row in sources:
        mode = "pixels" if row is None else row.mode
        head_cfg = cc.head if row is None else row.head_config(cc.head, f"{config.source}: classify.models.{name}.head")
        if row is None:
            encoder, inputs, feature_shape, enc_params, row_pretrain = None, images, list(data.train.shape), 0, 0.0
        elif mode == "cnn":  # the supervised reference: a plain CNN on the labeled pixels only
            encoder, inputs, feature_shape, row_pretrain = None, images, list(data.train.shape), 0.0
            enc_params = 0
        else:
            encoder = _row_encoder(model, row, name, config.source)
            enc_params = encoder.num_parameters()
            row_pretrain = 0.0 if mode == "scratch" else pretrain_seconds(phases, row.source)
            if mode == "frozen":
                t0 = time.perf_counter()
                inputs = {k: extract_features(encoder, v, cc.feature_batch_size, device) for k, v in images.items()}
                log(f"{name}: features {tuple(inputs['train'].shape[1:])} of {len(y)} splits in {time.perf_counter() - t0:.0f}s")
            else:
                inputs = images
            with torch.no_grad():
                feature_shape = list(encoder.eval().features(data.train.batch(slice(0, 1))[0]).shape[1:])
        in_features = int(torch.tensor(feature_shape).prod())
        trains_encoder = mode in ("finetune", "scratch")
        per_fraction: list[list | None] = []
        head = None
        for f in fractions:
            if row is not None and not row.runs_at(f):
                per_fraction.append(None)
                continue
            runs = []
            for r in range(cc.repetitions(f, row)):
                idx = subsets[f, r]
                net_encoder = None
                if mode == "cnn":
                    seed_everything(cc.seed + r)
                    net = head = ConvClassifier(data.train.shape[0], n_classes, row.widths)
                elif mode == "scratch":  # the same architecture, freshly initialised: no pretrained weight
                    seed_everything(cc.seed + r + 1_000_003)
                    fresh = type(model)(copy.deepcopy(model.config))
                    net_encoder = fresh.get_submodule(row.source) if row.source else fresh
                elif mode == "finetune":
                    net_encoder = copy.deepcopy(encoder)
                if mode != "cnn":
                    net = head = _make_head(cc, in_features, n_classes, trains_encoder, seed=cc.seed + r, head=head_cfg)
                if net_encoder is not None:
                    net = FeatureClassifier(net_encoder, head, finetune=True, quantize=head_cfg.quantize,
                                            train_codebooks=mode == "scratch" or head_cfg.train_codebooks)
                if head_cfg.standardize and mode != "cnn":  # the training inputs' statistics as the head starts (no labels)
                    head.set_standardization(inputs["train"] if net_encoder is None else
                                             extract_features(net_encoder, inputs["train"], cc.feature_batch_size))
                log(f"{name} with {_pct(f)} of the labels ({len(idx)} images, seed {r + 1}/{cc.repetitions(f, row)})")
                res = fit_classifier(
                    net, (inputs["train"][idx], y["train"][idx]), (inputs["val"], y["val"]),
                    (inputs["test"], y["test"]), head_cfg, n_classes, seed=cc.seed + r, device=device, log=log,
                )
                log(f"{name} {_pct(f)} seed {r + 1}: test acc {res.test_acc:.4f} at epoch {res.best_epoch} "
                    f"(val {res.val_acc:.4f}); final {res.final_test_acc:.4f}; best on test {res.best_test_acc:.4f}")
                runs.append(res)
            per_fraction.append(runs)
        head_params = sum(p.numel() for p in head.parameters()) if head is not None else 0
        rows[name] = _row_result(row, mode, feature_shape, per_fraction, enc_params, head_params, row_pretrain,
                                 val_images=len(data.val))
        # "val" only when every row's selection happened on the validation split (see selected_on)
        result["selected_on"] = "val" if all(r["selected_on"] == "val" for r in rows.values()) else None
        result["wall_s"] = round(time.perf_counter() - t_start, 2)
        if on_row is not None:
            on_row(result)
    write_json(out_dir / CLASSIFY_RESULT, result)
    write_classify_report(out_dir, result)
    log(format_table(result))
    log(f"-> {out_dir / CLASSIFY_RESULT}, {out_dir / REPORT} ({result['wall_s']:.0f}s)")
    record_written(out_dir, since)
    return result


def format_table(result: dict[str, Any], key: str = "test_acc") -> str:
    """Markdown table of accuracies (%) per row and fraction (mean ± std over seeds where there are several)."""
    fr = result["fractions"]
    lines = ["| model | " + " | ".join(_pct(f) for f in fr) + " |", "|---" * (len(fr) + 1) + "|"]
    for name, row in result["models"].items():
        cells = []
        for i, a in enumerate(row[key]):
            if a is None:  # the row does not run at this fraction
                cells.append("-")
                continue
            seeds = row.get("seeds", [1] * len(fr))[i]
            std = row.get(f"{key}_std", [0.0] * len(fr))[i] if key == "test_acc" else None
            cells.append(f"{100 * a:.1f}" + (f" ± {100 * std:.1f} ({seeds})" if seeds > 1 and std is not None else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_classify_report(out_dir: Path, result: dict[str, Any]) -> None:
    """``report.md`` and ``confusion_<pct>.png`` of a label-fraction experiment."""
    classes = result["class_names"]
    names = list(result["models"])
    parts = [
        "# Classification with scarce labels\n",
        f"Labeled data: {result['data']['train']} train / {result['data']['val']} val / {result['data']['test']} test "
        f"images {tuple(result['data']['image_shape'])}, {len(classes)} classes ({', '.join(classes)}). Label subsets "
        "(stratified, at least one image per class, nested, the same for every row): "
        + ", ".join(f"{_pct(f)} = {n}" for f, n in zip(result["fractions"], result["data"]["subset_sizes"])) + ".\n",
        "## Test accuracy (%), epoch selected on the validation split\n",
        "Mean ± std over seeds (their number in brackets) where a fraction has several.\n",
        format_table(result, "test_acc"),
        "\n## Test accuracy (%), best epoch on the test split (the published protocol: optimistic)\n",
        format_table(result, "best_on_test"),
        "\n## Test accuracy (%) at the final epoch\n",
        format_table(result, "final_test_acc"),
        "\n## Validation accuracy (%) at the selected epoch\n",
        format_table(result, "val_acc"),
        "\n## Models\n",
        "| model | features | parameters (encoder + head) | pretraining (s) | head |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        shape = "x".join(str(s) for s in row["feature_shape"])
        mode = {"pixels": "on raw pixels", "cnn": "a plain CNN on the pixels (the whole network)",
                "finetune": "fine-tuned with the pretrained encoder",
                "scratch": "with the same encoder trained from scratch", "frozen": "on frozen features"}[row["mode"]]
        parts.append(f"| {name} | {row['source']}: {shape} | {row['params']:,} ({row['encoder_params']:,} + "
                     f"{row['head_params']:,}) | {row['pretrain_s']:.0f} | {mode} |")
    pre = result["pretrain"]
    parts.append(f"\nPretrained model `{pre['model']}` ({pre['params']:,} parameters) from `{pre['run']}`: training "
                 f"{pre['train_s']} s" + (f" (wall {pre['wall_s']:.0f} s here)" if pre["wall_s"] else " (reused)")
                 + "; per phase: " + ", ".join(f"{k} {v:.0f} s" for k, v in pre["phases"].items())
                 + (f"; test reconstruction PSNR {pre['test_psnr']:.2f} dB" if pre.get("test_psnr") else "") + ".\n")
    for i, f in enumerate(result["fractions"]):
        png = f"confusion_{f * 100:g}.png"
        ran = [n for n in names if result["models"][n]["confusion"][i] is not None]
        if not ran:  # every row skips this fraction
            parts.append(f"## {_pct(f)} of the labels\n\nNo row runs at this fraction.\n")
            continue
        plot_confusions([np.array(result["models"][n]["confusion"][i]) for n in ran],
                        [f"{n}: {100 * result['models'][n]['test_acc'][i]:.1f}%" for n in ran], classes,
                        out_dir / png, suptitle=f"test confusion, {_pct(f)} of the labels (val-selected epoch)")
        parts += [f"## {_pct(f)} of the labels\n", "Per-class test accuracy (%), val-selected epoch:\n",
                  "| model | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for n in ran:
            parts.append(f"| {n} | " + " | ".join(f"{100 * a:.1f}" for a in result["models"][n]["per_class"][i]) + " |")
        parts.append(f"\n![confusion matrices]({png})\n")
    parts.append(f"Whole experiment: {result['wall_s']:.0f} s wall.\n")
    atomic_write_bytes(out_dir / REPORT, "\n".join(parts).encode())
