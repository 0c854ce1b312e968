"""A prior over one level's codes as a task of the one training engine (fitted by
:func:`hiervq.train.priors.fit_prior`), and its evaluation in nats per image; imports nothing from
:mod:`hiervq.train`."""

from __future__ import annotations

import logging
import math

import torch

from ..tasks import PhaseConfig, Task, TrainConfig, resolve_device
from .codes import CodeSet
from .kinds import PriorKind

logger = logging.getLogger(__name__)

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate_prior(
    prior, kind: PriorKind, level: int, codes: CodeSet, batch_size: int = 256, limit: int | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """Mean negative log-likelihood in nats per image of ``level``'s codes over (the first ``limit`` of) ``codes``."""
    was_training = prior.training
    prior.eval()
    n = len(codes) if limit is None else min(limit, len(codes))
    total = 0.0
    for start in range(0, n, batch_size):
        batch, labels = codes.batch(slice(start, min(start + batch_size, n)))
        batch = [c.to(device) for c in batch]
        labels = None if labels is None else labels.to(device)
        total += float(kind.nll(prior, batch, labels, level).sum())
    prior.train(was_training)
    return total / max(n, 1)


class PriorTask(Task):
    """A prior over one level's codes: cross-entropy in nats per code on ``train``'s codes (batches of
    ``min(batch_size, N)``, seeded ``seed + epoch``, the last incomplete one dropped); bits per code and per image
    per epoch on ``val`` (the weights of the epoch with the fewest val bits kept in :attr:`best` with
    ``train.keep: best``), or on ``test`` when there is no validation split (nothing selected then)."""

    def __init__(self, prior, kind: PriorKind, level: int, train: CodeSet, test: CodeSet, config: TrainConfig,
                 codes_per_image: int, seed: int = 0, log=None, checkpoint_extra: dict | None = None,
                 val: CodeSet | None = None) -> None:
        self.prior, self.kind, self.level = prior, kind, level
        self.train, self.test, self.val, self.config = train, test, val, config
        #: the best epoch on val so far: {"epoch", "bits_per_image", "state"} (the prior's tensors on the CPU)
        self.best: dict | None = None
        self._extra = dict(checkpoint_extra or {})
        self.codes_per_image = codes_per_image
        self.seed = seed
        self.eval_every = config.eval_every
        self._log = log or logger.info
        self.device = resolve_device(config.device)
        self.batch_size = min(config.batch_size, len(train))
        self.epochs_done = 0

    def phases(self) -> list[PhaseConfig]:
        return [PhaseConfig("all", self.config.epochs)]

    def module(self):
        return self.prior

    def steps_per_epoch(self) -> int:
        return len(self.train) // self.batch_size

    def batches(self, epoch: int) -> list[torch.Tensor]:
        bs = self.batch_size
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(self.seed + epoch))
        return list(order[: self.steps_per_epoch() * bs].split(bs))

    def loss(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        codes, labels = self.train.batch(index)
        codes = [c.to(self.device) for c in codes]
        labels = None if labels is None else labels.to(self.device)
        loss = self.kind.nll(self.prior, codes, labels, self.level).mean() / self.codes_per_image
        return loss, {"nats": float(loss.detach())}

    def postfix(self, values: dict[str, float]) -> dict[str, str]:
        return {"bits_per_code": f"{values['nats'] / LN2:.3f}"}

    def train_stats(self, sums: dict[str, float], count: int) -> dict[str, float]:
        return {"bits_per_code": sums.get("nats", 0.0) / max(count, 1) / LN2}

    @property
    def checkpoint_extra(self) -> dict:
        return {**self._extra, **({"best": self.best} if self.best is not None else {})}

    def evaluate(self) -> dict:
        cfg = self.config
        split, codes = ("val", self.val) if self.val is not None else ("test", self.test)
        per_image = evaluate_prior(self.prior, self.kind, self.level, codes, cfg.eval_batch_size, cfg.eval_limit,
                                   self.device) / LN2
        if split == "val" and cfg.keep == "best" and (self.best is None or per_image < self.best["bits_per_image"]):
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.prior.state_dict().items()}
            self.best = {"epoch": self.epochs_done + 1, "bits_per_image": per_image, "state": state}
        return {split: {"bits_per_code": per_image / self.codes_per_image, "bits_per_image": per_image}}

    def record(self, record: dict, evaluated: bool) -> dict:
        self.epochs_done = record["epoch"]
        return {k: v for k, v in record.items() if k not in ("phase", "phase_epoch")}

    def log_epoch(self, record: dict) -> None:
        msg = f"prior level {self.level} epoch {record['epoch']}: train {record['train']['bits_per_code']:.4f} bits/code"
        for split in ("val", "test"):
            if split in record:
                msg += (f", {split} {record[split]['bits_per_code']:.4f} bits/code "
                        f"({record[split]['bits_per_image']:.1f} bits/image)")
        self._log(msg + f" ({record['train_s']:.0f}s)")

    def describe_resume(self, phase, epoch: int) -> str:
        return f"prior level {self.level}: resuming after epoch {epoch} of {self.config.epochs}"

    def log(self, message: str) -> None:
        self._log(message)

    def progress_label(self, phase) -> str:
        return f"prior level {self.level}"
