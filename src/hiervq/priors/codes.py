"""Codes of a dataset under a trained autoencoder, extracted once and cached to an ``.npz`` file.

A :class:`CodeSet` holds, for N images, the arrays ``model.codes_to_list(model.encode(x))`` (one per level for
hierarchical models, e.g. [(N, 8, 8), (N, 4, 4)] bottom first; one (N, L) sequence for a sequence model) and
the labels (N,) when the data has them. The cache file stores the train and test splits together with a key
(a hash of the model weights and the data config), so a stale cache is recomputed rather than silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import ImageSet
from ..data.readers import open_npz
from ..errors import DataError
from ..io import atomic_write_bytes
from ..layout import MODEL_WEIGHTS, RunDir

logger = logging.getLogger(__name__)

CODES_FILE = RunDir.CODES  # a run's cache (kept for compatibility; the layout is RunDir's)


@dataclass
class CodeSet:
    """Codes of N images: ``codes`` is a list of int64 tensors (N, ...) as ``codes_to_list`` gives them,
    ``labels`` (N,) int64 or ``None``, ``class_names`` when the data names its classes."""

    codes: list[torch.Tensor]
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return self.codes[0].shape[0]

    @property
    def num_classes(self) -> int | None:
        if self.class_names:
            return len(self.class_names)
        return None if self.labels is None else int(self.labels.max()) + 1

    def batch(self, index: torch.Tensor | slice) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The codes of every level for ``index`` and their labels (or ``None``)."""
        return [c[index] for c in self.codes], None if self.labels is None else self.labels[index]


@torch.no_grad()
def extract_codes(
    model, images: ImageSet, batch_size: int = 256, device: str | torch.device = "cpu", log=None
) -> CodeSet:
    """Encode every image of ``images`` with ``model`` (eval mode) into a :class:`CodeSet` on the CPU."""
    model.eval()
    per_batch: list[list[torch.Tensor]] = []
    t0, n = time.perf_counter(), len(images)
    for start in range(0, n, batch_size):
        x, _ = images.batch(slice(start, min(start + batch_size, n)))
        codes = model.codes_to_list(model.encode(x.to(device)))
        per_batch.append([c.to("cpu", torch.long) for c in codes])
    codes = [torch.cat([b[i] for b in per_batch]) for i in range(len(per_batch[0]))]
    if log:
        log(f"encoded {n} images in {time.perf_counter() - t0:.1f}s")
    return CodeSet(codes, images.labels, images.class_names)


def cache_key(model_dir: str | os.PathLike, data: dict) -> str:
    """A hash of the saved model weights and the data config: what the cached codes depend on."""
    h = hashlib.sha256()
    weights = Path(model_dir) / MODEL_WEIGHTS
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _small_int(a: torch.Tensor) -> np.ndarray:
    top = int(a.max()) if a.numel() else 0
    dtype = np.uint8 if top < 256 else np.int16 if top < 32768 else np.int32
    return a.numpy().astype(dtype)


def save_codes(path: str | os.PathLike, splits: dict[str, CodeSet], key: str) -> None:
    """Write code sets (e.g. ``{"train": ..., "test": ...}``) to one ``.npz`` atomically."""
    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    for name, cs in splits.items():
        for i, c in enumerate(cs.codes):
            arrays[f"{name}_codes{i}"] = _small_int(c)
        if cs.labels is not None:
            arrays[f"{name}_labels"] = cs.labels.numpy().astype(np.int64)
        if cs.class_names:
            arrays[f"{name}_class_names"] = np.array(cs.class_names)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_codes(path: str | os.PathLike) -> tuple[str, dict[str, CodeSet]]:
    """Read a file written by :func:`save_codes`: (key, code sets by split name)."""
    try:
        archive = open_npz(path, "codes cache")
        files = set(archive.files)
        key = str(archive["key"])
        splits: dict[str, CodeSet] = {}
        for name in sorted({f.split("_codes")[0] for f in files if "_codes" in f}):
            count = sum(1 for f in files if f.startswith(f"{name}_codes"))
            codes = [torch.from_numpy(archive[f"{name}_codes{i}"].astype(np.int64)) for i in range(count)]
            labels = torch.from_numpy(archive[f"{name}_labels"]) if f"{name}_labels" in files else None
            names = [str(s) for s in archive[f"{name}_class_names"]] if f"{name}_class_names" in files else None
            splits[name] = CodeSet(codes, labels, names)
    except DataError as exc:
        raise DataError(f"{exc}; delete it to recompute") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt codes cache ({exc}); delete it to recompute") from None
    return key, splits


def cached_codes(
    path: str | os.PathLike,
    key: str,
    model,
    images: dict[str, ImageSet] | None = None,
    load_images=None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    log=None,
) -> dict[str, CodeSet]:
    """The code sets at ``path`` if its key matches ``key``; otherwise encode the images and write the cache.

    ``images`` maps split names to :class:`ImageSet` s; or pass ``load_images()`` returning that mapping, so the
    data is only read when the cache is missing or stale.
    """
    log = log or logger.info
    path = Path(path)
    if path.is_file():
        found, splits = load_codes(path)
        if found == key:
            log(f"codes: using the cache {path}")
            return splits
        log(f"codes: {path} was made from another model or data; recomputing")
    if images is None:
        images = load_images()
    model = model.to(device)
    splits = {name: extract_codes(model, s, batch_size, device, log) for name, s in images.items()}
    save_codes(path, splits, key)
    log(f"codes: cached to {path}")
    return splits
