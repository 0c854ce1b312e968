"""Training checkpoints: written atomically (temporary file, fsync, rename), read without arbitrary pickle."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes
from ..layout import RunDir


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """Where a run (autoencoder or prior) keeps the checkpoint that ``--resume`` continues: ``RUN/checkpoints/last.pt``
    (:attr:`RunDir.checkpoint <hiervq.layout.RunDir.checkpoint>`)."""
    return RunDir(run_dir).checkpoint


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a checkpoint that ``--resume`` can continue (:meth:`hiervq.layout.RunDir.has_checkpoint`)."""
    return RunDir(run_dir).has_checkpoint()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started? it writes one per epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a hiervq training checkpoint")
    return state
