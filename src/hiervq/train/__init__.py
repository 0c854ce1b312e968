"""Training: configs, the Trainer, checkpoints, torchrun/DDP set-up, runs and their reports."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PhaseConfig, RunConfig, TrainConfig, apply_overrides, config_from_dict, dump_config, load_config
from .heads import fit_classifier
from .run import evaluate_run, read_run_config, train_run
from .trainer import Trainer, lr_factor, make_optimizer

__all__ = [
    "PhaseConfig",
    "RunConfig",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "config_from_dict",
    "dump_config",
    "evaluate_run",
    "fit_classifier",
    "load_checkpoint",
    "load_config",
    "lr_factor",
    "make_optimizer",
    "read_run_config",
    "save_checkpoint",
    "train_run",
]
