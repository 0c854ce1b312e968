"""Saving and loading models without pickle: a config JSON plus safetensors weights, and a name registry.

Any ``nn.Module`` whose class has a dataclass ``Config``, takes it as its only constructor argument and is
registered with :func:`register` can be written with :func:`save_pretrained` and read back with :func:`load`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ._version import __version__
from .errors import CheckpointError, ConfigError
from .io import atomic_write_bytes, umask  # noqa: F401 - re-exported: hiervq.pretrained.atomic_write_bytes
from .layout import MODEL_CONFIG, MODEL_WEIGHTS, RunDir
from .schema import from_dict, to_dict
from .zoo import find, resolve

CONFIG_FILE = MODEL_CONFIG
WEIGHTS_FILE = MODEL_WEIGHTS
FORMAT_VERSION = 1

REGISTRY: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type)


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a module class buildable by ``name`` from configs and saved directories."""

    def wrap(cls: M) -> M:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {REGISTRY[name].__name__}")
        REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def _registered(name: str, where: str) -> type[nn.Module]:
    if name not in REGISTRY:
        raise ConfigError(f"{where}: unknown model name {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def parse_config(name: str, params: dict[str, Any], where: str = "model") -> Any:
    """The registered module ``name``'s dataclass ``Config`` from a plain dict, validated; errors name ``where``."""
    return from_dict(_registered(name, where).Config, params, where)


def build(name: str, config: dict[str, Any] | Any, where: str = "model") -> nn.Module:
    """Instantiate the registered module ``name`` from a config dict (parsed and validated by :func:`parse_config`)
    or a config dataclass (used as it is)."""
    cls = _registered(name, where)
    if isinstance(config, dict):
        config = parse_config(name, config, where)
    return cls(config)


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state`` (a state dict, possibly nested) holding NaN or inf."""
    bad = []
    for key, value in state.items():
        if isinstance(value, dict):
            bad += [f"{key}.{k}" for k in nonfinite_tensors(value)]
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(str(key))
    return bad


def _describe(names: list[str]) -> str:
    return f"{', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}"


def versions() -> dict[str, str]:
    """The versions recorded in every saved model's ``config.json``: ``hiervq_version``, ``torch_version``."""
    return {"hiervq_version": __version__, "torch_version": torch.__version__}


#: the attribute :func:`load` sets on the module it returns: what its ``config.json`` and weights file held
#: (``path``, ``data``, ``extra``, ``dtypes``: the stored dtype of each tensor stored in another dtype than the
#: module's), so that :func:`save_pretrained` of a loaded model keeps them
SOURCE_ATTR = "pretrained_source"


def save_pretrained(module: nn.Module, directory: str | os.PathLike, extra: dict | None = None,
                    data: dict | None = None, keep_source: bool = True) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for a registered module; returns the directory.

    ``config.json`` holds ``format``, ``model`` (the registry name), ``config``, the versions of hiervq and torch
    that wrote it (:func:`versions`), ``data`` when given (what the model was trained on and how the images were
    brought to size: :meth:`hiervq.data.DataConfig.describe`) and ``extra`` (free metadata, e.g. a prior's level).
    Directories written before the versions and ``data`` were recorded load all the same.

    A module returned by :func:`load` remembers what it was loaded from (:data:`SOURCE_ATTR`); with
    ``keep_source`` (the default) its ``data`` and ``extra`` are written again unless given here, and the tensors
    stored in a lower precision (a shipped tokenizer's float16) are stored so again, so a loaded model saves as it
    was; ``keep_source=False`` writes the module as it is (float32, no metadata but what is given). Only
    ``config.json`` and the weights are written: a tokenizer's card and priors are copied, with the rest of its
    folder, by :func:`export`.

    Each file is written atomically, weights first, so an interrupted save never leaves a config that points
    at half-written weights.
    """
    name = getattr(type(module), "registry_name", None)
    if name is None:
        raise TypeError(f"{type(module).__name__} is not registered with hiervq.pretrained.register")
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    source = getattr(module, SOURCE_ATTR, None) if keep_source else None
    if isinstance(source, dict):
        data = data if data is not None else source.get("data")
        extra = extra if extra is not None else source.get("extra")
        for key, dtype in (source.get("dtypes") or {}).items():
            stored = getattr(torch, dtype, None)
            if key in state and isinstance(stored, torch.dtype) and state[key].is_floating_point():
                state[key] = state[key].to(stored)
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"{directory}: refusing to save non-finite (NaN/inf) weights in {_describe(bad)}")
    atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
    meta = {"format": FORMAT_VERSION, "model": name, "config": to_dict(module.config), **versions()}
    if data is not None:
        meta["data"] = data
    if extra:
        meta["extra"] = extra
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return directory


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The directory holding ``config.json`` + weights: ``path`` itself, or ``path/model`` for a run directory;
    a path that does not exist may be a tokenizer name (shipped or in ``$HIERVQ_MODELS``: :mod:`hiervq.zoo`)."""
    given = os.fspath(path)
    path = resolve(path)
    for candidate in (path, RunDir(path).model):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    shadowed = (f"; this folder hides the tokenizer {given!r} (a path wins over a name): run from another directory"
                if find(given) is not None else "")
    raise CheckpointError(
        f"{path}: not a saved model (no {CONFIG_FILE} here or in {RunDir(path).model}); "
        f"is the run finished? an unfinished run can be resumed with `hiervq train --resume`{shadowed}"
    )


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state)`` with a one-line error naming what does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
    if wrong:
        problems.append(f"shape {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    if problems:
        raise CheckpointError(f"{source} does not match the model config: {'; '.join(problems)}")
    module.load_state_dict(state)


def read_meta(directory: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a saved model directory (or run directory)."""
    directory = resolve_model_dir(directory)
    path = directory / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt config file ({exc})") from None
    except OSError as exc:  # unreadable (permissions), a folder, ...
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt config file (nested too deeply)") from None
    if not isinstance(meta, dict) or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path}: not a hiervq model config")
    if not isinstance(meta["model"], str):
        raise CheckpointError(f"{path}: 'model' must be a model name (known: {', '.join(sorted(REGISTRY))}), "
                              f"got {type(meta['model']).__name__}")
    for key in ("config", "data", "extra"):
        if not isinstance(meta.get(key, {}), dict) and not (key != "config" and meta.get(key) is None):
            raise CheckpointError(f"{path}: '{key}' must be a mapping, got {type(meta[key]).__name__}")
    return meta


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a saved model (any registered kind) from its directory or run directory, or a tokenizer by name
    (``hiervq.load("mnist-vqvae-512")``: :mod:`hiervq.zoo`), in eval mode. Weights stored in a lower precision
    (the shipped tokenizers' float16) are cast to the model's float32 parameters; what the folder held (its data
    and extra metadata, the stored dtypes) is kept on the module as :data:`SOURCE_ATTR`, so that
    :func:`save_pretrained` writes it back the same way.

    No pickle is involved: the architecture comes from ``config.json``, the weights from safetensors.
    """
    directory = resolve_model_dir(path)
    meta = read_meta(directory)
    where = str(directory / CONFIG_FILE)
    params = meta["config"]
    migrate = getattr(_registered(meta["model"], where), "migrate_config", None)  # older saved configs
    module = build(meta["model"], migrate(params) if migrate and isinstance(params, dict) else params, where=where)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt weights file ({exc})") from None
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"{weights}: non-finite (NaN/inf) weights in {_describe(bad)}; the training diverged, "
                              "retrain it (e.g. with a lower train.lr)")
    load_state(module, state, str(weights))
    own = module.state_dict()
    setattr(module, SOURCE_ATTR, {
        "path": str(directory), "data": meta.get("data"), "extra": meta.get("extra"),
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()
                   if k in own and v.dtype != own[k].dtype},
    })
    return module.to(device).eval()


def export(spec: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Copy a tokenizer (a name, or a saved model folder) with everything in its folder, byte for byte: weights in
    their stored dtype, ``config.json`` with its data and extra metadata, the card and ``priors/``; e.g. to edit a
    shipped one or put it under ``$HIERVQ_MODELS``. ``directory`` must not exist yet (or be empty); the copy is
    made beside it and renamed into place, so a failed export leaves nothing. Returns ``directory``.

    (``save_pretrained(hiervq.load(NAME), dir)`` writes the model alone: ``config.json`` with the same metadata and
    the weights in their stored dtype, but no card and no priors.)"""
    source = resolve_model_dir(spec)
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"{target}: already exists; export into a new folder")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise CheckpointError(f"{target}: inside {source}; export elsewhere")
    tmp = target.parent / f".{target.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".*"))  # not locks nor a swap's halves
        if target.exists():
            target.rmdir()
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


