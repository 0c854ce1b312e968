"""Fitting a classifier head (:mod:`hiervq.classify`) with the one training engine: the classify package defines
the task (:class:`hiervq.classify.task.ClassifierTask`) and knows nothing of training; this is where the two meet."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from ..classify.mlp import ClassifierConfig, ClassifierResult
from ..classify.task import ClassifierTask
from ..metrics import per_class_accuracy
from ..tasks import DistInfo
from .trainer import Trainer


def fit_classifier(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    config: ClassifierConfig,
    num_classes: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> ClassifierResult:
    """Train ``model`` (inputs -> logits) with cross-entropy on ``train`` = (inputs (N, ...), labels (N,)).

    Inputs are features (float) or images (uint8, converted to [0, 1] per batch; augmented when
    ``config.augment``). The model is evaluated on ``val`` and ``test`` ``config.evals`` times, evenly spaced in
    epochs; the point is selected on ``val`` only (``best_test_acc`` is the optimistic best point on test, reported
    apart). Batches and augmentations are drawn from ``seed``. A :class:`FeatureClassifier` that fine-tunes gets
    ``config.encoder_lr`` for its encoder. The loop is the one engine's (:class:`hiervq.classify.task.ClassifierTask`
    fitted by :meth:`hiervq.train.Trainer.fit_task`).
    """

    task = ClassifierTask(model, train, val, test, config, num_classes, seed, device, log)
    t0 = time.perf_counter()
    trainer = Trainer(task.train_config(), dist=DistInfo(device=task.device))
    history = trainer.fit_task(task)
    best, test_conf, final = task.best, task.last_confusion, history[-1]
    return ClassifierResult(
        best_epoch=best["epoch"],
        epochs=task.epochs,
        steps=trainer.step,
        val_acc=best["val_acc"],
        test_acc=best["test_acc"],
        final_val_acc=final["val_acc"],
        final_test_acc=final["test_acc"],
        best_test_acc=max(r["test_acc"] for r in history),
        per_class=per_class_accuracy(best["confusion"]).tolist(),
        final_per_class=per_class_accuracy(test_conf).tolist(),
        test_confusion=best["confusion"].tolist(),
        final_test_confusion=test_conf.tolist(),
        train_images=task.n,
        params=sum(p.numel() for p in model.parameters()),
        train_s=round(time.perf_counter() - t0, 3),
        history=history,
    )
