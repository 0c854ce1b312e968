"""What the one training loop (:meth:`hiervq.train.Trainer.fit_task`) fits: the :class:`Task` protocol, and the
one optimiser/schedule factory every task uses.

A task says what to optimise and how to measure it; the Trainer owns everything else: phases, the optimiser and
its schedule, backward/clipping/divergence checks, the progress bar, evaluation timing, ``metrics.jsonl``, atomic
checkpoints and exact resume, DDP bookkeeping and callbacks. Tasks: the autoencoder
(:class:`hiervq.train.trainer.AutoencoderTask`), a prior over codes (:class:`hiervq.priors.run.PriorTask`) and a
classifier head, frozen or fine-tuned (:class:`hiervq.classify.mlp.ClassifierTask`).

This module imports nothing above torch, so tasks in lower layers can subclass :class:`Task`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def make_optimizer(config, params: Sequence, lr: float) -> torch.optim.Optimizer:
    """Adam or AdamW (``config.optimizer``, AdamW where the config has no such key) over ``params`` (parameters,
    or parameter groups that may set their own ``lr``) with the config's betas and weight decay."""
    cls = torch.optim.AdamW if getattr(config, "optimizer", "adamw") == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def lr_factor(step: int, total: int, schedule: str, warmup: int, min_ratio: float, decay_steps: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a phase of ``total`` steps."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        t = min(step / max(total, 1), 1.0)
        return warm * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))
    if schedule == "exponential":
        return warm * math.exp(-step / decay_steps)
    return warm


def make_scheduler(optimizer: torch.optim.Optimizer, config, total: int,
                   schedule: str) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step schedule of a phase of ``total`` optimiser steps: ``cosine`` (with warm-up, down to
    ``min_lr_ratio``), ``exponential`` (lr * exp(-step / decay_steps)) or ``constant`` (a ``LambdaLR`` of
    :func:`lr_factor`); or ``cosine_annealing``: torch's own ``CosineAnnealingLR`` with ``T_max = total``, every
    group's learning rate to 0 over the phase, no warm-up (the classifier's ``schedule: cosine``)."""
    if schedule == "cosine_annealing":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total, schedule, config.warmup_steps, config.min_lr_ratio, config.decay_steps),
    )


class Task:
    """One thing to fit. Subclasses define :meth:`module`, :meth:`batches` and :meth:`loss`; the rest has defaults
    for a single-phase task that trains every parameter of :meth:`module`.

    The Trainer calls, per phase: :meth:`parameters`; per epoch: :meth:`train_mode`, :meth:`batches`, then per
    batch :meth:`loss` (and :meth:`postfix` for the progress bar), then :meth:`train_stats`, :meth:`evaluate` when
    an evaluation is due, :meth:`record` and :meth:`log_epoch`; :meth:`end_phase` after the phase; :meth:`end_fit`
    at the end.
    """

    #: evaluate every this many epochs (and at the last epoch of every phase)
    eval_every: int = 1
    #: what continues a diverged run (``{run_dir}`` is filled in), or None
    resume_command: str | None = None
    #: extra entries of the checkpoint (e.g. what the prior was fitted to)
    checkpoint_extra: dict[str, Any] = {}

    def phases(self) -> list:
        """The phases (``name``, ``epochs``, ``lr``, ``schedule``; see :class:`hiervq.train.PhaseConfig`)."""
        raise NotImplementedError

    def module(self) -> nn.Module:
        """The module whose state is trained and checkpointed."""
        raise NotImplementedError

    def parameters(self, phase) -> list:
        """What the phase optimises: parameters, or parameter groups (dicts, optionally with their own ``lr``)."""
        return [p for p in self.module().parameters() if p.requires_grad]

    def steps_per_epoch(self) -> int:
        return len(self.batches(0))

    def train_mode(self) -> None:
        self.module().train()

    def batches(self, epoch: int):
        """The batches of ``epoch`` (0-based over all phases), in order: a list or a sized iterable (e.g. an epoch
        of a :class:`hiervq.data.BatchSource`); drawing them must be reproducible."""
        raise NotImplementedError

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on ``batch`` and the values to average over the epoch."""
        raise NotImplementedError

    def postfix(self, values: dict[str, float]) -> dict[str, str] | None:
        """What the progress bar shows after a batch (None: nothing)."""
        return None

    def train_stats(self, sums: dict[str, float], count: int) -> dict[str, Any]:
        """The epoch's training statistics from the sums of :meth:`loss`'s values over ``count`` batches."""
        return {k: v / max(count, 1) for k, v in sums.items()}

    def evaluate(self) -> dict[str, Any]:
        """Entries of the epoch's record from an evaluation (e.g. ``{"test": {...}}``)."""
        return {}

    def record(self, record: dict[str, Any], evaluated: bool) -> dict[str, Any] | None:
        """The history/metrics record of an epoch from the Trainer's (``epoch``, ``phase``, ``phase_epoch``,
        ``step``, ``lr``, ``train_s``, ``train`` and the evaluation's entries); None records nothing."""
        return record

    def log_epoch(self, record: dict[str, Any]) -> None:
        pass

    def describe_resume(self, phase, epoch: int) -> str:
        return f"resuming at phase {phase.name}, epoch {epoch}"

    def log(self, message: str) -> None:
        logger.info(message)

    def progress_label(self, phase) -> str:
        return phase.name

    def end_phase(self) -> None:
        pass

    def end_fit(self) -> None:
        """After the fit, finished or not (e.g. stop data-loading worker processes)."""
