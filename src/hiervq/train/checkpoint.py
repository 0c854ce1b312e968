"""Training checkpoints: written atomically (temporary file, fsync, rename), read without arbitrary pickle."""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes
from ..layout import RunDir
from ..pretrained import _describe, nonfinite_tensors


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
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code is unpickled) and check what
    resuming reads from it: ``model`` (finite tensors by name), ``step``, ``history`` and the rest. Every problem is a
    :class:`CheckpointError` naming ``path`` (torch's advice to load a refused file with ``weights_only=False``,
    which would run whatever code the file holds, is never passed on)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started? it writes one per epoch)")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: corrupt checkpoint (empty file)")
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol of a file it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if detail.startswith("Unsupported global"):
            raise CheckpointError(f"{path}: refused: it names Python code ({detail.split(':', 1)[-1].strip()[:80]}), "
                                  "which loading would run; hiervq never writes such a checkpoint") from None
        raise CheckpointError(f"{path}: corrupt checkpoint (the safe unpickler refused it: {detail})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or _first_line(exc)})") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on damaged files (IndexError, ...)
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a hiervq training checkpoint")
    problem = _problem(state)
    if problem:
        raise CheckpointError(f"{path}: not a hiervq training checkpoint ({problem})")

    bad = nonfinite_tensors(state["model"])
    if bad:  # hiervq never saves such a checkpoint (training stops first): damaged, or not ours
        raise CheckpointError(f"{path}: non-finite (NaN/inf) weights in {_describe(bad)}; refusing to resume from it "
                              "(start the run again, or restore a good copy of the file)")
    return state


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, without any advice to load the file with ``weights_only=False``."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return "refused to unpickle it" if "weights_only" in text else text[:200]


def _unpickler_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused (e.g. "Unsupported operand 103"), without its advice to load the
    file with ``weights_only=False``."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        lines = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        if lines and "weights_only" not in lines[0]:
            return lines[0][:200]
    return _first_line(exc)


def _problem(state: dict) -> str:
    """What is wrong with the structure of a checkpoint dict (empty when nothing is)."""
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        return f"model is {type(model).__name__}, not a mapping of parameter names to tensors"
    for key, kinds in (("step", (int,)), ("history", (list,))):
        if key not in state:
            return f"{key} is missing"
        if not isinstance(state[key], kinds) or isinstance(state[key], bool):
            return f"{key} is {type(state[key]).__name__}"
    if not all(isinstance(r, dict) for r in state["history"]):
        return "history holds something other than records"
    if "phase_epoch" not in state and "epoch" not in state:
        return "phase_epoch is missing"
    for key in ("phase_index", "phase_epoch", "epoch"):
        if key in state and (not isinstance(state[key], int) or isinstance(state[key], bool) or state[key] < 0):
            return f"{key} is {state[key]!r}"[:120]
    if not isinstance(state.get("rng"), torch.Tensor) or state["rng"].dtype != torch.uint8:
        return "rng is missing or not a byte tensor"
    for key in ("optimizer", "scheduler"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            return f"{key} is {type(state[key]).__name__}"
    return ""
