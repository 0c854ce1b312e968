"""A training run end to end: run directory, data, model, Trainer, final evaluation, saved model and report.

The run directory's layout is :class:`hiervq.layout.RunDir` (config.yaml, metrics.jsonl, checkpoints/last.pt,
model/, summary.json, report.md and its PNGs, tensorboard/ when asked for, the marker ``.hiervq-run``); the process
writing it holds the lock ``.RUN.lock`` beside it (see :mod:`hiervq.train.rundir`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DataConfig, DataSplits, ImageSet, first_test_images, join_sets, load_data
from ..data.readers import list_images, read_image
from ..errors import ConfigError, DataError, HierVQError
from ..extras import require
from ..io import atomic_write_bytes
from ..layout import RunDir
from ..models.base import DiscreteAutoencoder
from ..pretrained import load, load_state, read_meta, resolve_model_dir, save_pretrained
from ..zoo import resolve
from .checkpoint import load_checkpoint
from .config import RunConfig, TrainConfig, config_from_dict, dump_config, read_yaml_mapping
from .distributed import DistInfo, barrier, cleanup, describe_processes, env_device, setup
from .report import make_summary, write_report
from .rundir import RunSession
from .tensorboard import TensorBoardLogger
from .trainer import Callback, Trainer

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_epochs(config: RunConfig, state: dict, run_dir: str | Path) -> None:
    """Refuse to continue a run whose checkpoint has done more epochs than ``config`` asks for in all (e.g.
    ``--resume --set train.epochs=1`` after 2 epochs): its config.yaml would then lie about the model."""
    history = state.get("history") or []
    done = int(history[-1].get("epoch", len(history))) if history and isinstance(history[-1], dict) else 0
    total = sum(p.epochs for p in config.train.phase_list())
    if done > total:
        raise ConfigError(f"{run_dir}: the run has done {done} epochs, more than the {total} its config now asks for; "
                          f"set train.epochs to at least {done}, or start a new run")


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved :class:`RunConfig` a run directory was trained with."""
    path = RunDir(run_dir).config
    if not path.is_file():
        raise HierVQError(f"{run_dir}: not a run directory (no {RunDir.CONFIG})")
    return config_from_dict(read_yaml_mapping(path), str(path))


def model_run_config(ref: str | os.PathLike) -> RunConfig:
    """The :class:`RunConfig` of any model reference (what ``eval``, ``prior`` and the codec need of it): a run
    directory's ``config.yaml``; for a ``save_pretrained`` folder or a tokenizer name (:mod:`hiervq.zoo`), a config
    whose data section is the one its ``config.json`` recorded (the recorded ``path`` when it exists from here,
    else its ``absolute_path``; ``--data`` or ``--set data.path=...`` point it elsewhere)."""
    folder = resolve(ref)
    if RunDir(folder).config.is_file():
        return read_run_config(folder)
    meta = read_meta(folder)
    recorded = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    data = {k: recorded[k] for k in ("name", "path", "image_size", "fit", "channels", "classes")
            if recorded.get(k) is not None}
    path, absolute = recorded.get("path"), recorded.get("absolute_path")
    if isinstance(path, str) and not Path(path).exists() and isinstance(absolute, str) and Path(absolute).exists():
        data["path"] = absolute
    where = f"{resolve_model_dir(folder) / 'config.json'} (data)"
    try:
        return config_from_dict({"data": data} if data else {}, where)
    except ConfigError:
        return config_from_dict({}, where)  # a model that recorded no usable data: --data names it


def build_for_data(config: RunConfig, data: DataSplits) -> DiscreteAutoencoder:
    """Build the configured model, taking channels and image size from the data unless the config sets them."""
    c, h, w = data.train.shape
    if h != w:
        raise DataError(f"images are {h}x{w}; set data.image_size to make them square")
    model = config.build_model(in_channels=c, image_size=h)
    unknown = [p.name for p in config.train.phase_list() if p.name not in model.phases()]
    if unknown:
        raise ConfigError(f"{config.source}: train.phases: {unknown[0]!r} is not a phase of {config.model_name} "
                          f"(known: {', '.join(model.phases())})")
    if model.config.in_channels != c:
        raise DataError(
            f"the data has {c}-channel images but model.in_channels is {model.config.in_channels}; "
            f"set data.channels: {model.config.in_channels} to convert them"
        )
    return model


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Callback] | tuple = (),
    data: DataSplits | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue it) and write the summary, model and report.

    Under torchrun every rank calls this; only rank 0 writes files. Returns the summary (on every rank).
    With ``overwrite``, an existing run is replaced only once the config, data and model are validated
    (:func:`~hiervq.train.rundir.start_run_dir`).
    """
    dist: DistInfo = setup(config.train.device)
    board = None
    with contextlib.ExitStack() as stack:
        stack.callback(cleanup, dist)
        run_dir = Path(run_dir)
        run = RunDir(run_dir)
        session = RunSession(run_dir, resume=resume, overwrite=overwrite) if dist.is_main else None
        if config.train.tensorboard and dist.is_main:
            require("tensorboard", "train.tensorboard: true")  # before anything is written
        if session is not None:
            session.check()  # refuse before reading the data
        seed_everything(config.seed)
        data = data or load_data(config.data)
        model = build_for_data(config, data)  # validated before anything is written, even the lock file
        if config.train.batch_size > len(data.train):
            raise ConfigError(f"{config.source}: train.batch_size {config.train.batch_size} is larger than the "
                              f"{len(data.train)} training images; lower it")
        if session is not None:
            stack.enter_context(session)  # one writer per run, for the whole run (under torchrun: rank 0)
        state = load_checkpoint(run.checkpoint) if resume and run.has_checkpoint() else None
        if state is not None:
            load_state(model, state["model"], str(run.checkpoint))  # a mismatch names the parameters and shapes
            check_epochs(config, state, run_dir)
        if session is not None:
            if not resume:  # validated: only now replace an old run (a typo must not destroy it)
                # the old run waits aside until the new one holds its first checkpoint (or comes back)
                session.start({RunDir.CONFIG: dump_config(config).encode()})
            else:
                session.resume()
                # config.yaml is always the config that runs (e.g. after --resume --set train.epochs=3)
                text = dump_config(config).encode()
                if not run.config.is_file() or run.config.read_bytes() != text:
                    atomic_write_bytes(run.config, text)
                if state is None:  # stopped before its first checkpoint: start it again
                    run.write_metrics([])
                    logger.info("%s: no checkpoint yet; starting the run from the beginning", run_dir)
        barrier(dist)
        if dist.is_main:
            logger.info(f"model {config.model_name}: {model.num_parameters():,} parameters; {model.budget()}")
            val = f" / {len(data.val)} val" if data.val is not None else " (no val split: per-epoch numbers on test)"
            logger.info(f"data {config.data.name}: {len(data.train)} train{val} / {len(data.test)} test images "
                        f"{data.train.shape}")
            if dist.enabled:
                logger.info(describe_processes(dist, config.train.batch_size))
        callbacks = list(callbacks)
        if session is not None:
            callbacks.insert(0, lambda _trainer, _record: session.checkpointed())  # after every epoch's checkpoint
        if config.train.tensorboard and dist.is_main:
            shown = data.val if data.val is not None else data.test  # never test images while training, given val
            board = TensorBoardLogger(run_dir, shown.batch(slice(0, 16))[0],
                                      resume_step=int(state["step"]) if state is not None else None,
                                      every=config.train.log_every)
            stack.callback(board.close)
            callbacks.append(board)
        trainer = Trainer(config.train, run_dir, seed=config.seed, dist=dist, callbacks=callbacks)
        history = trainer.fit(model, data, resume=state)
        summary: dict[str, Any] = {}
        if dist.is_main:
            summary = finish_run(run_dir, model, data, trainer, history, config.data)
            session.checkpointed()  # a run of 0 epochs has no checkpoint: it stands once finished
        barrier(dist)
        return summary


def finish_run(run_dir: Path, model: DiscreteAutoencoder, data: DataSplits, trainer: Trainer, history: list[dict],
               data_config: DataConfig | None = None) -> dict:
    """The final model (the best epoch on val with ``train.keep: best``, else the last), its one evaluation on the
    test split, ``summary.json`` (test metrics at the top, ``"val"`` and ``"test"`` blocks, ``"selected_on"``), the
    saved model (with ``data_config`` described in its config.json) and the report."""
    best = getattr(trainer.task, "best", None)
    selected = {"selected_on": "last", "selected_epoch": history[-1]["epoch"] if history else 0}
    if data.val is not None:
        if best is not None:
            if best["epoch"] != selected["selected_epoch"]:  # the last epoch's weights are in the model already
                load_state(model, best["state"], "the best epoch's weights")
            selected = {"selected_on": "val", "selected_epoch": best["epoch"]}
        val = trainer.evaluate(model, data.val, reuse=True)  # the last epoch's pass, if it saw all and was kept
    # without a val split, the last epoch's evaluation was on test: reused if it saw all the images
    final = trainer.evaluate(model, data.test, with_counts=True, reuse=True)
    counts = final.pop("counts")
    summary = make_summary(model, final, history, trainer.train_seconds)
    summary.update(selected)
    summary["test"] = {k: final[k] for k in SPLIT_KEYS}
    if data.val is not None:
        summary["val"] = {k: val[k] for k in SPLIT_KEYS}
        summary["val_images"] = val["images"]
    summary["train_images"] = len(data.train)
    if history and history[-1].get("stopped"):
        summary["stopped"] = history[-1]["stopped"]  # train.time_limit or train.plateau ended the run
    run = RunDir(run_dir)
    save_pretrained(model, run.model, data=data_config.describe(data.train.shape) if data_config else None)
    run.write_summary(summary)
    write_report(run_dir, model, data.test, summary, history, counts, title=f"hiervq run {run_dir.name}")
    on = f" (epoch {selected['selected_epoch']}, selected on val MSE {summary['val']['mse']:.3e})" \
        if selected["selected_on"] == "val" else ""
    trainer.log(
        f"done: test MSE {summary['mse']:.3e}, PSNR {summary['psnr']:.2f} dB, "
        f"{summary['bits_per_image']:.0f} bits/image{on} -> {run_dir}"
    )
    return summary


#: the metrics of the ``"val"`` and ``"test"`` blocks of summary.json
SPLIT_KEYS = ("mse", "mse_std", "psnr", "psnr_std", "ssim", "ms_ssim", "images")


def native_groups(folder: str | Path, channels: int) -> list[ImageSet]:
    """Every image file under ``folder`` at its own size, converted to ``channels``, grouped by size (one
    :class:`~hiervq.data.ImageSet` per size): what ``hiervq eval --data FOLDER`` evaluates."""
    files = list_images(Path(folder), recursive=True)
    if not files:
        raise DataError(f"{folder}: no images found")
    by_size: dict[tuple[int, int], list[np.ndarray]] = {}
    for f in files:
        arr = read_image(f, mode="L" if channels == 1 else "RGB")
        by_size.setdefault(arr.shape[:2], []).append(arr)
    return [ImageSet(torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()) for arrs in by_size.values()]


def evaluate_run(run_dir: str | Path, config: RunConfig | None = None, split: str = "test",
                 metrics: tuple | list = (), native_folder: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a finished run's saved model on a split of its data (or of ``config.data``); ``split="all"``
    evaluates every image the data holds (train, val and test together). ``metrics``: perceptual metrics to add
    (:mod:`hiervq.metrics.perceptual`). ``native_folder``: evaluate every image of that folder at its own size
    instead (a fully convolutional model; a fixed-size one refuses, naming both sizes)."""
    config = config or model_run_config(run_dir)
    model = load(run_dir, device=env_device())
    if native_folder is not None:
        groups = native_groups(native_folder, model.config.in_channels)
        for group in groups:
            model.coded_size(*group.shape[1:])  # a fixed-size model refuses here, naming both sizes
        result = Trainer(config.train, None, seed=config.seed).evaluate_groups(model, groups, metrics)
        result["split"] = "all"
        result["sizes"] = sorted({f"{g.shape[1]}x{g.shape[2]}" for g in groups})
        with torch.no_grad():  # the real grids of each size: bits per image averaged over the images
            bits = [model.bits_of(model.codes_to_list(model.encode(model.pad_images(g.batch(slice(0, 1))[0].float()
                                                                                 .div(255).to(env_device()))))) * len(g)
                    for g in groups]
        result["bits_per_image"] = sum(bits) / sum(len(g) for g in groups)
        return result
    data = load_data(config.data)
    if split == "all":
        parts = [s for s in (data.train, data.val, data.test) if s is not None]
        dataset = join_sets(parts)
    else:
        dataset = {"test": data.test, "train": data.train, "val": data.val}.get(split)
    if dataset is None:
        raise HierVQError(f"{config.data.path or config.data.name}: no {split} split (choose another --split)")
    if dataset.shape[0] != model.config.in_channels:
        raise DataError(f"{config.data.path or config.data.name}: {dataset.shape[0]}-channel images, the model "
                        f"expects {model.config.in_channels} (set data.channels: {model.config.in_channels} to convert)")
    trainer = Trainer(config.train, None, seed=config.seed)
    result = trainer.evaluate(model, dataset, metrics=metrics)
    result["split"] = split
    result["bits_per_image"] = model.budget().bits_per_image
    return result


def evaluate_first(model: DiscreteAutoencoder, data: DataConfig, n: int) -> dict[str, Any]:
    """MSE/PSNR/SSIM/MS-SSIM (as :meth:`Trainer.evaluate` reports them) of ``model`` on the first ``n`` images of
    the test split of ``data``, in the order its reader gives them (not a random subset): the quick check of a
    shipped tokenizer against the numbers of its card (:mod:`hiervq.zoo`)."""
    subset = first_test_images(data, n)
    result = Trainer(TrainConfig(device="cpu"), None).evaluate(model, subset)
    result["images"] = len(subset)
    return result
