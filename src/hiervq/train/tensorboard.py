"""Optional TensorBoard logging of a run (``train.tensorboard: true``; the ``tensorboard`` extra).

:class:`TensorBoardLogger` is a Trainer callback (rank 0 only): after every epoch it writes the same scalars as that
epoch's ``metrics.jsonl`` line (every number in the record, tagged by its path: ``train/loss``,
``test/psnr``, ``test/ssim``, ``train/perplexity/0``, ``test/levels/0/used_fraction``, ...; x-axis: the optimiser
step) and, after every evaluation, the reconstruction grid of the first 16 test images (originals above their
reconstructions) to ``RUN/tensorboard/``; every ``train.log_every`` optimiser steps, the step's training numbers
(``train_step/loss``, ``train_step/psnr`` and the loss terms, of rank 0's batch). A resumed run drops what was logged after its checkpoint
(``purge_step``), so the curves have no duplicates. View with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..extras import require
from ..layout import RunDir
from ..metrics.plots import image_grid


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number of a metrics record (``step``, the x-axis, excepted)."""
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        tag = f"{prefix}{key}"
        if isinstance(value, bool) or tag == "step":
            continue
        if isinstance(value, (int, float)):
            yield tag, float(value)
        elif isinstance(value, (dict, list, tuple)):
            yield from scalars(value, f"{tag}/")


class TensorBoardLogger:
    """Trainer callback writing a run's scalars and reconstruction grids to ``run_dir/tensorboard``
    (:attr:`RunDir.tensorboard <hiervq.layout.RunDir.tensorboard>`)."""

    def __init__(self, run_dir: str | Path, images: torch.Tensor, resume_step: int | None = None,
                 every: int = 50) -> None:
        require("tensorboard", "train.tensorboard: true")
        from torch.utils.tensorboard import SummaryWriter  # optional dependency (the tensorboard extra)

        self.dir = RunDir(run_dir).tensorboard
        purge = None if resume_step is None else resume_step + 1  # events after the checkpoint's epoch
        self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=purge)
        self.images = images[:16]
        self.every = every

    def on_step(self, trainer, values: dict[str, float]) -> None:
        """The training numbers of every ``every``-th optimiser step (x-axis: the step)."""
        if trainer.step % self.every == 0:
            for key, value in values.items():
                self.writer.add_scalar(f"train_step/{key}", float(value), trainer.step)

    def __call__(self, trainer, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        if ("val" in record or "test" in record) and trainer.model is not None:
            self.writer.add_image("reconstructions", self._grid(trainer.model), step, dataformats="HWC")
        self.writer.flush()

    @torch.no_grad()
    def _grid(self, model) -> torch.Tensor:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        recon = model(self.images.to(device)).recon.float().clamp(0, 1).cpu()
        model.train(was_training)
        nrow = max(1, min(8, len(self.images)))
        rows = []
        for start in range(0, len(self.images), nrow):
            rows += [self.images[start : start + nrow], recon[start : start + nrow]]
        arr = image_grid(torch.cat(rows), nrow)
        if arr.shape[2] == 1:
            arr = arr.repeat(3, axis=2)
        return torch.from_numpy(arr)

    def close(self) -> None:
        self.writer.close()
