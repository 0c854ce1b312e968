"""The classifier as a task of the one training engine (fitted by :func:`hiervq.train.fit_classifier`); it
imports nothing from :mod:`hiervq.train`."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import confusion_matrix
from ..tasks import PhaseConfig, Task, TrainConfig
from .mlp import ClassifierConfig, FeatureClassifier, as_inputs, dihedral_augment, predict


class ClassifierTask(Task):
    """Cross-entropy on the logits of ``model`` (inputs -> logits) over ``train`` = (inputs (N, ...), labels (N,)).

    One phase of ``max(epochs, ceil(min_steps / ceil(N / batch_size)))`` epochs; batches in the order of one
    generator seeded with ``seed`` (which also draws the dihedral augmentations of image inputs), the trailing
    batch kept unless it holds a single image (batch statistics need two); AdamW, a fine-tuned encoder's parameters
    in their own group at ``encoder_lr``, at a constant learning rate or (``schedule: cosine``) every group annealed
    to 0 by torch's ``CosineAnnealingLR`` over ``epochs * ceil(N / batch_size)`` steps, stepped after every
    optimiser step. Evaluated on ``val`` and ``test``
    ``evals`` times, evenly spaced in epochs (the last always); the best point is selected on ``val``.
    """

    def __init__(self, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], config: ClassifierConfig, num_classes: int, seed: int = 0,
                 device: str | torch.device = "cpu", log=None) -> None:
        self.model, self.val, self.test, self.config = model, val, test, config
        self.x_train, self.y_train = train
        self.n = len(self.x_train)
        if self.n == 0:
            raise ValueError("no training examples")
        self.num_classes = num_classes
        self.device = torch.device(device)
        self._log = log
        self.epochs = max(config.epochs, math.ceil(config.min_steps / self.steps_per_epoch()))
        self.eval_every = max(1, self.epochs // config.evals)
        self.augment = config.augment and self.x_train.dim() == 4
        self.generator = torch.Generator().manual_seed(seed)
        self.best_key: tuple | None = None
        self.best: dict[str, Any] = {}
        self.last_confusion: torch.Tensor | None = None

    def train_config(self) -> TrainConfig:
        """The engine's settings: AdamW with the head's betas and weight decay; a constant learning rate, or torch's
        CosineAnnealingLR over the run (``schedule: cosine``)."""
        cfg = self.config
        schedule = "cosine_annealing" if cfg.schedule == "cosine" else "constant"
        return TrainConfig(epochs=self.epochs, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                           optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, betas=list(cfg.betas),
                           schedule=schedule, warmup_steps=0, grad_clip=cfg.grad_clip, eval_every=self.eval_every,
                           device=str(self.device), progress=False)

    def phases(self) -> list[PhaseConfig]:
        return [PhaseConfig("all", self.epochs)]

    def module(self) -> nn.Module:
        return self.model

    def parameters(self, phase) -> list[dict]:
        """The head's parameters, and a fine-tuned encoder's in a group of their own at ``encoder_lr``."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        encoder = ({id(p) for p in self.model.encoder.parameters() if p.requires_grad}
                   if isinstance(self.model, FeatureClassifier) else set())
        groups = [{"params": [p for p in params if id(p) not in encoder]}]
        if encoder:
            groups.append({"params": [p for p in params if id(p) in encoder],
                           "lr": self.config.encoder_lr or self.config.lr})
        return groups

    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.config.batch_size)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(self.n, generator=self.generator)
        # a trailing batch of one image is skipped: batch statistics need two
        return [idx for idx in order.split(self.config.batch_size) if not len(idx) < 2 < self.n]

    def loss(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = as_inputs(self.x_train[idx])
        x = (dihedral_augment(x, self.generator) if self.augment else x).to(self.device)
        loss = F.cross_entropy(self.model(x), self.y_train[idx].to(self.device))
        return loss, {"loss_sum": float(loss.detach()) * len(idx)}

    def train_stats(self, sums: dict[str, float], count: int) -> dict[str, float]:
        return {"loss": sums.get("loss_sum", 0.0) / self.n}

    def _evaluate(self, split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float, torch.Tensor]:
        logits = predict(self.model, split[0], self.config.eval_batch_size, self.device)
        loss = float(F.cross_entropy(logits, split[1]))
        pred = logits.argmax(1)
        return float((pred == split[1]).double().mean()), loss, confusion_matrix(pred, split[1], self.num_classes)

    def evaluate(self) -> dict[str, Any]:
        val_acc, val_loss, _ = self._evaluate(self.val)
        test_acc, _, self.last_confusion = self._evaluate(self.test)
        return {"val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc}

    def record(self, record: dict[str, Any], evaluated: bool) -> dict[str, Any] | None:
        """Only evaluated epochs are recorded; the best one so far (validation accuracy, then loss, then the
        earliest) is kept with its test confusion matrix."""
        if not evaluated:
            return None
        epoch = record["epoch"]
        out = {"epoch": epoch, "train_loss": record["train"]["loss"], "val_acc": record["val_acc"],
               "val_loss": record["val_loss"], "test_acc": record["test_acc"]}
        key = (out["val_acc"], -out["val_loss"])
        if self.best_key is None or key > self.best_key:
            self.best_key = key
            self.best = {"epoch": epoch, "val_acc": out["val_acc"], "test_acc": out["test_acc"],
                         "confusion": self.last_confusion}
        return out

    def log_epoch(self, record: dict[str, Any]) -> None:
        epoch, epochs = record["epoch"], self.epochs
        if self._log and (epoch == epochs or epoch % max(self.eval_every, epochs // 5) == 0):
            self._log(f"  epoch {epoch}/{epochs}: train loss {record['train_loss']:.4f}, val acc {record['val_acc']:.4f}, "
                      f"test acc {record['test_acc']:.4f}")

    def log(self, message: str) -> None:
        if self._log:
            self._log(message)
