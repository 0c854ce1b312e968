"""The one optimiser/schedule factory every task of the training loop (:meth:`hiervq.train.Trainer.fit_task`)
uses; the :class:`~hiervq.tasks.Task` protocol itself lives below the engine, in :mod:`hiervq.tasks`.

A task says what to optimise and how to measure it; the Trainer owns everything else: phases, the optimiser and
its schedule, backward/clipping/divergence checks, the progress bar, evaluation timing, ``metrics.jsonl``, atomic
checkpoints and exact resume, DDP bookkeeping and callbacks. Tasks: the autoencoder
(:class:`hiervq.train.trainer.AutoencoderTask`), a prior over codes (:class:`hiervq.priors.task.PriorTask`) and a
classifier head, frozen or fine-tuned (:class:`hiervq.classify.mlp.ClassifierTask`).

"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


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
