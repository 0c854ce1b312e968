"""What every layer that trains something shares, below the engine: the :class:`Task` protocol, the training
settings (:class:`TrainConfig`, :class:`PhaseConfig`) and the registry of optional run-config sections, and the
device choice (:class:`DistInfo`, :func:`resolve_device`, :func:`env_device`).

A domain package (``models``, ``priors``, ``classify``) defines its own Task here-against and never imports
:mod:`hiervq.train`; the one engine (:class:`hiervq.train.Trainer`) fits any Task, and the one run lifecycle
(:mod:`hiervq.train.run`) writes it into a run directory. This module depends on torch and :mod:`hiervq.errors`
only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw")
#: the largest batch size accepted (train.batch_size, train.eval_batch_size): larger ones only fail in the allocator
MAX_BATCH = 2**20
#: seeds are in [0, MAX_SEED) (torch and numpy take 64-bit seeds)
MAX_SEED = 2**63
SCHEDULES = ("cosine", "exponential", "constant")
KEEP = ("best", "last")


@dataclass
class PhaseConfig:
    """One training phase: a phase name the model knows (see ``DiscreteAutoencoder.phases``), its epochs,
    and optionally its own learning rate and schedule."""

    name: str = "all"
    epochs: int = 1
    lr: float | None = None
    schedule: str | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    ``epochs`` is used when ``phases`` is not given (one phase, ``all``). Schedules: ``cosine`` (from ``lr``
    to ``lr * min_lr_ratio`` over the phase, after ``warmup_steps`` of linear warm-up), ``exponential``
    (``lr * exp(-step / decay_steps)``, decayed every optimiser step of the phase: PQ-VAE's exp(-step / 25000) is
    ``schedule: exponential`` with ``decay_steps: 25000``) or ``constant``.
    ``tensorboard``: also log the scalars of ``metrics.jsonl`` and the test reconstruction grid to
    ``RUN/tensorboard/`` (autoencoder runs; needs the ``tensorboard`` extra; :mod:`hiervq.train.tensorboard`),
    and the training loss of every ``log_every``-th optimiser step (``train_step/loss``, ...).

    ``keep``: which weights the run's final model holds when the data has a validation split: ``best`` (the
    epoch of the last phase with the lowest val MSE; the default) or ``last``. Per-epoch numbers are on val; the test split is evaluated
    once, at the end (``summary.json``: ``"val"``, ``"test"``, ``"selected_on"``).

    ``amp``: bf16 autocast (CPU or GPU); the vector, FSQ and LFQ quantizers compute in float32 inside it (see
    docs/performance.md for what it costs in precision and gains in speed). ``compile``: ``torch.compile`` the model's convolution stacks for the training
    forward (:func:`hiervq.nn.compile_stacks`; a few minutes of compilation at the start of every process, then
    faster steps; same results up to float rounding).

    ``time_limit``: seconds of training (``train_s``: optimiser steps, evaluation excluded) after which the run
    ends: the epoch in which the limit is reached is finished, evaluated and is the run's last (so a run may pass
    the limit by up to one epoch). Schedules keep the length the epochs give them (set ``epochs`` to what the limit
    should cut, and prefer ``constant`` or ``exponential`` schedules, which do not depend on the run's length).
    ``plateau``: end a phase once its validation MSE (test without a val split) has improved by less than this
    fraction over the last quarter of the phase's evaluated epochs (at least 4): with ``0.02``, when the best MSE
    of the phase's last quarter of evaluations is not 2 % below the best before it. The epoch a run or phase
    stopped at carries ``"stopped": "time_limit"`` or ``"plateau"`` in ``metrics.jsonl``; a resumed run that has
    reached its limit trains no further.
    """

    epochs: int = 10
    phases: list[PhaseConfig] | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_steps: float = 25000.0
    grad_clip: float | None = 1.0
    eval_every: int = 1
    eval_limit: int | None = None
    amp: bool = False
    compile: bool = False
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = False
    log_every: int = 50
    keep: str = "best"
    time_limit: float | None = None
    plateau: float | None = None

    def validate(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        schedules = [self.schedule] + [p.schedule for p in self.phases or [] if p.schedule]
        for s in schedules:
            if s not in SCHEDULES:
                raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {s!r}")
        checks = [
            ("epochs", self.epochs, self.epochs >= 0, ">= 0"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1, ">= 1"),
            ("batch_size", self.batch_size, self.batch_size <= MAX_BATCH, f"<= {MAX_BATCH}"),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size <= MAX_BATCH, f"<= {MAX_BATCH}"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0"),
            ("min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("decay_steps", self.decay_steps, self.decay_steps > 0, "> 0"),
            ("grad_clip", self.grad_clip, self.grad_clip is None or self.grad_clip >= 0, ">= 0 or null (0: off)"),
            ("eval_every", self.eval_every, self.eval_every >= 1, ">= 1"),
            ("log_every", self.log_every, self.log_every >= 1, ">= 1"),
            ("eval_limit", self.eval_limit, self.eval_limit is None or self.eval_limit >= 1, ">= 1 or null"),
            ("time_limit", self.time_limit, self.time_limit is None or self.time_limit > 0, "> 0 (seconds) or null"),
            ("plateau", self.plateau, self.plateau is None or 0 < self.plateau < 1, "in (0, 1) or null"),
        ]
        for i, p in enumerate(self.phases or []):
            checks.append((f"phases.{i}.epochs", p.epochs, p.epochs >= 0, ">= 0"))
            checks.append((f"phases.{i}.lr", p.lr, p.lr is None or p.lr > 0, "> 0 or null"))
        for key, value, ok, rule in checks:
            if not ok:
                raise ValueError(f"{key} must be {rule}, got {value}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if not all(0.0 <= b < 1.0 for b in self.betas):  # NaN fails too
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        check_device_name(self.device)
        if self.decay_steps <= 0 or self.warmup_steps < 0:
            raise ValueError(f"decay_steps must be > 0 and warmup_steps >= 0, got {self.decay_steps}, {self.warmup_steps}")

    def phase_list(self) -> list[PhaseConfig]:
        return list(self.phases) if self.phases else [PhaseConfig("all", self.epochs)]


def check_device_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is ``auto`` or a device torch knows (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``, ...); whether it is present is checked when the run starts
    (:func:`hiervq.train.distributed.resolve_device`)."""
    if name == "auto":
        return

    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or another torch device, got {name!r}") from None


def check_seed(key: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` (the config key ``key``) is a seed torch and numpy take: [0, 2**63)."""
    if not 0 <= value < MAX_SEED:
        raise ValueError(f"{key} must be in [0, 2**63), got {value}")


SECTIONS: dict[str, type] = {}  # optional run-config section name -> its dataclass, registered by its consumer
#: the fields of :class:`hiervq.train.config.RunConfig` (never a section's name)
RESERVED_SECTIONS = frozenset({"seed", "data", "model", "train", "source", "sections"})


def register_section(name: str):
    """Class decorator: the dataclass of an optional run-config section ``name:`` (``compare``, ``priors``, ...).

    The recipe that reads the section owns its dataclass and registers it here (``hiervq.experiments.config``,
    ``hiervq.priors.config``, ``hiervq.classify.config``; ``import hiervq`` imports them), so the train layer
    knows the names but none of the types. :func:`config_from_dict` validates a registered section with
    :func:`hiervq.schema.from_dict` (an unknown key names the key and the file); an unregistered top-level key is
    an error like any unknown key."""
    if name in RESERVED_SECTIONS:
        raise ValueError(f"{name!r} is a RunConfig field, not an optional section")

    def deco(cls: type) -> type:
        SECTIONS[name] = cls
        return cls

    return deco



# ---------------------------------------------------------------------- devices
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


#: the environment variable that names the device of the commands without a config of their own (eval, code
#: extraction, sampling); ``cpu`` when unset
DEVICE_ENV = "HIERVQ_DEVICE"


def env_device() -> str:
    """The device named by ``$HIERVQ_DEVICE`` (default ``cpu``)."""
    return os.environ.get(DEVICE_ENV, "cpu")


def resolve_device(name: str, local_rank: int = 0, key: str = "train.device") -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else ``cpu``; anything else as given, when this
    machine has it (else a :class:`~hiervq.errors.ConfigError` naming the config ``key``)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}: {name!r} is not a device (auto, cpu, cuda, cuda:N, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {name!r}, but no CUDA GPU is visible here; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: {name!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{key}: {name!r}, but MPS is not available here; use auto or cpu")
    elif device.type != "cpu":  # xpu, ...: when torch has the backend and says it is available
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if not callable(available) or not available():
            raise ConfigError(f"{key}: {name!r} is not available here (auto, cpu, cuda, cuda:N or mps)")
    return device



# ---------------------------------------------------------------------- the Task protocol
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

    def monitored(self, record: dict[str, Any]) -> float | None:
        """The number ``train.plateau`` watches in an epoch's record (lower is better), or None where the epoch
        was not evaluated or the task watches nothing (the default)."""
        return None

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
