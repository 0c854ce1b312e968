"""A training run end to end: run directory, data, model, Trainer, final evaluation, saved model and report.

Run directory layout::

    RUN/config.yaml          resolved configuration
    RUN/metrics.jsonl        one line per epoch (train averages, test evaluation)
    RUN/checkpoints/last.pt  written atomically after every epoch; ``--resume RUN`` continues from it
    RUN/model/               config.json + model.safetensors (``hiervq.load(RUN)``)
    RUN/summary.json         final test metrics; RUN/report.md with reconstructions/curves/usage PNGs
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DataSplits, load_data
from ..errors import DataError, HierVQError
from ..models.base import DiscreteAutoencoder
from ..pretrained import atomic_write_bytes
from .checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint
from .config import RunConfig, config_from_dict, dump_config, read_yaml_mapping
from .distributed import DistInfo, barrier, cleanup, setup
from .report import make_summary, write_json, write_report
from .trainer import Callback, Trainer

CONFIG_FILE = "config.yaml"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False, what: str = "run directory") -> Path:
    """Create ``run_dir``; refuse to reuse a non-empty one unless resuming or explicitly overwriting.

    ``what`` names the directory in the error messages (e.g. "prior run directory").
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / CHECKPOINT_DIR / LAST).is_file():
            raise HierVQError(f"{run_dir}: nothing to resume (no {CHECKPOINT_DIR}/{LAST})")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise HierVQError(
                f"{what} {run_dir} already exists; pass --resume to continue it, --overwrite to replace it, "
                "or --out to choose another"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved :class:`RunConfig` a run directory was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise HierVQError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return config_from_dict(read_yaml_mapping(path), str(path))


def build_for_data(config: RunConfig, data: DataSplits) -> DiscreteAutoencoder:
    """Build the configured model, taking channels and image size from the data unless the config sets them."""
    c, h, w = data.train.shape
    if h != w:
        raise DataError(f"images are {h}x{w}; set data.image_size to make them square")
    model = config.build_model(in_channels=c, image_size=h)
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
    """
    dist: DistInfo = setup(config.train.device)
    try:
        run_dir = Path(run_dir)
        if dist.is_main:
            prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
            if not resume:
                atomic_write_bytes(run_dir / CONFIG_FILE, dump_config(config).encode())
        barrier(dist)
        seed_everything(config.seed)
        data = data or load_data(config.data)
        model = build_for_data(config, data)
        if dist.is_main:
            print(f"model {config.model_name}: {model.num_parameters():,} parameters; {model.budget()}", flush=True)
            print(f"data {config.data.name}: {len(data.train)} train / {len(data.test)} test images {data.train.shape}", flush=True)
        state = load_checkpoint(run_dir / CHECKPOINT_DIR / LAST) if resume else None
        trainer = Trainer(config.train, run_dir, seed=config.seed, dist=dist, callbacks=callbacks)
        try:
            history = trainer.fit(model, data, resume=state)
        except RuntimeError as exc:
            if state is not None and "state_dict" in str(exc):
                raise HierVQError(f"{run_dir}: checkpoint does not match the model config ({str(exc).splitlines()[0]})") from None
            raise
        summary: dict[str, Any] = {}
        if dist.is_main:
            summary = finish_run(run_dir, model, data, trainer, history)
        barrier(dist)
        return summary
    finally:
        cleanup(dist)


def finish_run(run_dir: Path, model: DiscreteAutoencoder, data: DataSplits, trainer: Trainer, history: list[dict]) -> dict:
    """Final full test evaluation, ``summary.json``, the saved model and the report."""
    final = trainer.evaluate(model, data.test, with_counts=True)
    counts = final.pop("counts")
    summary = make_summary(model, final, history, trainer.train_seconds)
    model.save_pretrained(run_dir / "model")
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, model, data.test, summary, history, counts, title=f"hiervq run {run_dir.name}")
    trainer.log(
        f"done: test MSE {summary['mse']:.3e}, PSNR {summary['psnr']:.2f} dB, "
        f"{summary['bits_per_image']:.0f} bits/image -> {run_dir}"
    )
    return summary


def evaluate_run(run_dir: str | Path, config: RunConfig | None = None, split: str = "test") -> dict[str, Any]:
    """Evaluate a finished run's saved model on a split of its data (or of ``config.data``)."""
    from ..pretrained import load

    config = config or read_run_config(run_dir)
    model = load(run_dir, device=os.environ.get("HIERVQ_DEVICE", "cpu"))
    data = load_data(config.data)
    dataset = {"test": data.test, "train": data.train, "val": data.val}.get(split)
    if dataset is None:
        raise HierVQError(f"the data has no {split} split")
    if dataset.shape[0] != model.config.in_channels:
        raise DataError(f"the data has {dataset.shape[0]}-channel images, the model expects {model.config.in_channels}")
    trainer = Trainer(config.train, None, seed=config.seed)
    result = trainer.evaluate(model, dataset)
    result["split"] = split
    result["bits_per_image"] = model.budget().bits_per_image
    return result
