"""Loading the priors of a model and sampling images level by level (``hiervq sample``, the codec's priors);
imports nothing from :mod:`hiervq.train`."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import HierVQError
from ..layout import RunDir
from ..pretrained import load, read_meta, resolve_model_dir
from ..tasks import env_device
from ..zoo import resolve
from .codes import cache_key
from .kinds import prior_kind_for


@dataclass
class Samples:
    """Sampled images (N, C, H, W) on [0, 1], their labels (N,) or ``None``, the grid's row length, the
    sampling time (all levels and the decoder) and samples per second."""

    images: torch.Tensor
    labels: torch.Tensor | None
    nrow: int
    seconds: float
    samples_per_s: float
    codes: list[torch.Tensor]
    row_labels: list[str] | None = None  # class-conditional: the class name of every row of the grid


def find_priors(ae_run: str | os.PathLike) -> list[Path]:
    """The prior run directories under ``AE_RUN/priors/`` (what ``hiervq sample`` uses without ``--priors``)."""
    return [prior.path for prior in RunDir(ae_run).find_priors()]


def load_priors(ae_run: str | os.PathLike, prior_dirs: list[str | os.PathLike], model) -> tuple[dict[int, Any], dict]:
    """Load prior run directories for ``model``: ({level: prior}, metadata of the first class-conditional one)."""
    key = cache_key(resolve_model_dir(ae_run), {})
    priors: dict[int, Any] = {}
    class_meta: dict = {}
    for d in prior_dirs:
        meta = read_meta(d).get("extra") or {}
        if "level" not in meta:
            raise HierVQError(f"{d}: not a prior run (no level in its model metadata)")
        if meta.get("autoencoder_key") not in (None, key):
            raise HierVQError(f"{d}: this prior was trained on the codes of another autoencoder ({meta.get('autoencoder')})")
        level = int(meta["level"])
        if level in priors:
            raise HierVQError(f"two priors for level {level} (the second is {d})")
        priors[level] = load(d)
        if meta.get("class_conditional") and not class_meta:
            class_meta = meta
    return priors, class_meta


def class_index(text: str | int, meta: dict) -> int:
    """A class given as an index or a name (from the prior's class names)."""
    names = meta.get("class_names") or []
    num = meta.get("num_classes") or len(names)
    try:
        index = int(text)
    except (TypeError, ValueError):
        if text not in names:
            raise HierVQError(f"unknown class {text!r} (classes: {', '.join(names) or f'0..{num - 1}'})") from None
        index = names.index(text)
    if not 0 <= index < num:
        raise HierVQError(f"class {index} is out of range (the priors know {num} classes: 0..{num - 1})")
    return index


def check_sampling(temperature: float, seed: int) -> None:
    """``--temperature`` must be a finite number > 0 and ``--seed`` in [0, 2**63) (torch's generator seeds)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise HierVQError(f"--temperature must be a finite number > 0, got {temperature}")
    if not 0 <= seed < 2**63:
        raise HierVQError(f"--seed must be in [0, 2**63), got {seed}")


def sample_run(
    ae_run: str | os.PathLike,
    prior_dirs: list[str | os.PathLike] | None = None,
    n: int = 64,
    class_label: str | int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Samples:
    """Sample ``n`` images level by level (top first) with the priors and decode them.

    Class-conditional priors without ``class_label`` give one row per class of ``ceil(n / classes)`` images.
    """
    if n < 1:
        raise HierVQError(f"-n must be >= 1, got {n}")
    check_sampling(temperature, seed)
    ae_run = resolve(ae_run)  # a run directory, or a shipped tokenizer with priors by name
    device = torch.device(device or env_device())
    model = load(ae_run, device=device)
    kind = prior_kind_for(model)
    dirs = list(prior_dirs or find_priors(ae_run))
    if not dirs:
        raise HierVQError(f"no priors given and none under {RunDir(ae_run).priors}; train them with `hiervq prior`")
    priors, meta = load_priors(ae_run, dirs, model)
    priors = {lv: p.to(device) for lv, p in priors.items()}
    labels, nrow = None, min(8, n)
    if meta:
        if class_label is not None:
            labels = torch.full((n,), class_index(class_label, meta), dtype=torch.long)
        else:
            classes = int(meta["num_classes"])
            nrow = math.ceil(n / classes)
            labels = torch.arange(classes).repeat_interleave(nrow)
        n = len(labels)
        labels = labels.to(device)
    elif class_label is not None:
        raise HierVQError("--class needs class-conditional priors (train them with --class-conditional)")
    generator = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        codes = kind.sample(model, priors, n, labels, temperature, generator)
        images = model.decode(model.codes_from_list(codes)).clamp(0, 1).cpu()
    seconds = time.perf_counter() - t0
    row_labels = None
    if labels is not None:
        names = list(meta.get("class_names") or [])
        per_row = labels.cpu()[::nrow].tolist()
        row_labels = [names[c] if c < len(names) else f"class {c}" for c in per_row]
    return Samples(images, None if labels is None else labels.cpu(), nrow, seconds, n / seconds, [c.cpu() for c in codes],
                   row_labels)


__all__ = ["Samples", "check_sampling", "class_index", "find_priors", "load_priors", "sample_run"]
