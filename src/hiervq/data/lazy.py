"""Image sets read on access: a folder of image files, or the uint8 arrays of an .npz memory-mapped.

A :class:`LazyImageSet` holds file names (or a memory map) and an index into them, never decoded pixels: an image
is read, brought to the run's size (:func:`hiervq.data.fit_images`, the same ``fit`` and ``channels`` as the
in-memory reader, so both give the same uint8 pixels) and dropped again on every access. It answers what an
:class:`~hiervq.data.ImageSet` answers (``len``, ``shape``, ``labels``, ``batch``, ``subset``, ``load``), so
evaluation, reports and code extraction take either; training reads it through
:class:`~hiervq.data.batches.BatchSource` (a ``DataLoader`` with worker processes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .readers import CHANNELS, npz_check_crc, npz_memmap, read_image
from .transforms import fit_images


def count_classes(class_names, labels) -> int | None:
    """The number of classes of an image set: its class names, else the largest label + 1, else None (unlabelled)."""
    if class_names:
        return len(class_names)
    return None if labels is None else int(labels.max()) + 1


class FolderSource:
    """Image files read with Pillow (:func:`~hiervq.data.readers.read_image`: one ``mode`` for the folder, resized
    to ``size`` (h, w) when given, exactly as :func:`~hiervq.data.readers.read_image_folder` reads them)."""

    def __init__(self, files: list[Path], mode: str, size: tuple[int, int] | None,
                 headers: list[tuple[int, int, int]] | None = None) -> None:
        self.files = [str(f) for f in files]
        self.mode = mode
        self.size = size
        self.headers = headers  # (h, w, channels) of each file, from its header (readers.image_header)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, j: int) -> np.ndarray:
        """Image ``j`` as uint8 (H, W, C)."""
        return read_image(self.files[j], self.size, self.mode)

    def where(self) -> str:
        return str(Path(self.files[0]).parent) if self.files else "folder"


class MemorySource:
    """Decoded images of different sizes held in memory (a list of uint8 (H, W, C) arrays): what a folder of mixed
    sizes read with ``data.lazy: false`` and ``data.crop`` becomes, since one tensor cannot hold them."""

    def __init__(self, arrays: list[np.ndarray], where: str) -> None:
        self.arrays = arrays
        self._where = where

    def __len__(self) -> int:
        return len(self.arrays)

    def read(self, j: int) -> np.ndarray:
        return self.arrays[j]

    def where(self) -> str:
        return self._where


def centre_crop(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """The centred ``size`` x ``size`` crop of ``image`` (..., H, W) (``image`` itself when ``size`` is None)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


class ArraySource:
    """The rows of a uint8 (N, H, W[, C]) array stored uncompressed in an .npz, memory-mapped (reopened after
    pickling, so a worker process started with ``spawn`` maps the file too instead of receiving a copy)."""

    def __init__(self, path: str | os.PathLike, key: str, verify: bool = True) -> None:
        self.path = str(path)
        self.key = key
        self._array: np.ndarray | None = None
        array = self.array
        if verify:  # once, here: the in-memory reader refuses a member whose CRC is broken, so this one does too
            npz_check_crc(path, key)
        if array.dtype != np.uint8:
            raise DataError(f"{path}: {key} must be uint8 (0-255), got {array.dtype}")
        if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in CHANNELS):
            raise DataError(f"{path}: {key} must be (N, H, W) or (N, H, W, C) with C = 1 or 3, got {array.shape}")

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            array = npz_memmap(self.path, self.key)
            if array is None:
                raise DataError(f"{self.path}: {self.key} is compressed and cannot be memory-mapped")
            self._array = array
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __len__(self) -> int:
        return self.array.shape[0]

    def read(self, j: int) -> np.ndarray:
        image = np.array(self.array[j])  # a copy: the map itself stays untouched
        return image[..., None] if image.ndim == 2 else image

    def where(self) -> str:
        return f"{self.path}:{self.key}"


class ConcatSource:
    """Positions of several sources read as one: ``parts`` are (source, positions) pairs, in order."""

    def __init__(self, parts: list[tuple[object, np.ndarray]]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(index) for _, index in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, j: int) -> np.ndarray:
        k = int(np.searchsorted(self.offsets, j, side="right")) - 1
        source, index = self.parts[k]
        return source.read(int(index[j - self.offsets[k]]))

    def where(self) -> str:
        return " + ".join(source.where() for source, _ in self.parts)


class LazyImageSet(torch.utils.data.Dataset):
    """Images read on access from ``source`` (a :class:`FolderSource` or :class:`ArraySource`) at positions
    ``index``, with optional int64 labels (N,), brought to ``size`` x ``size`` (``fit``) and ``channels`` one by
    one, then centre-cropped to ``crop`` x ``crop`` when given. Indexing gives ``(image, label)`` as
    :class:`~hiervq.data.ImageSet` does; :meth:`load` gives uint8."""

    def __init__(self, source, index: np.ndarray, labels: torch.Tensor | None = None,
                 class_names: list[str] | None = None, size: int | None = None, fit: str = "resize",
                 channels: int | None = None, crop: int | None = None) -> None:
        self.source = source
        self.index = np.asarray(index, dtype=np.int64)
        self.labels = labels
        self.class_names = class_names
        self.size, self.fit, self.channels = size, fit, channels
        self.crop = crop
        self._shape: tuple[int, int, int] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def load(self, i: int, whole: bool = False) -> torch.Tensor:
        """Image ``i`` as uint8 (C, H, W), decoded now (nothing is kept); ``whole``: without the centre crop."""

        raw = self.source.read(int(self.index[i]))
        image = torch.from_numpy(np.ascontiguousarray(raw)).permute(2, 0, 1)[None]
        image = fit_images(image, self.size, self.fit, self.channels)[0]
        return (image if whole else centre_crop(image, self.crop)).contiguous()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image (from the first; every image is brought to one size when ``size`` is set)."""
        if self._shape is None:
            if not len(self):
                raise DataError(f"{self.source.where()}: no images")
            self._shape = tuple(self.load(0).shape)
        return self._shape

    @property
    def num_classes(self) -> int | None:
        return count_classes(self.class_names, self.labels)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, C, H, W) float in [0, 1] and labels (B,) (or None) for ``index``, decoded now."""
        positions = np.arange(len(self))[index.numpy() if isinstance(index, torch.Tensor) else index]
        images = [self.load(int(i)) for i in np.atleast_1d(positions)]
        shapes = {tuple(t.shape) for t in images}
        if len(shapes) > 1:
            raise DataError(f"{self.source.where()}: images have different shapes {sorted(shapes)[:3]}; set "
                            "data.image_size to resize them or data.crop to crop them")
        x = torch.stack(images).float().div_(255.0)
        y = None if self.labels is None else self.labels[torch.as_tensor(positions, dtype=torch.long)]
        return x, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.load(i).float() / 255.0, int(self.labels[i]) if self.labels is not None else -1

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> LazyImageSet:
        index = np.asarray(index, dtype=np.int64)
        labels = None if self.labels is None else self.labels[torch.from_numpy(index)]
        return LazyImageSet(self.source, self.index[index], labels, self.class_names, self.size, self.fit,
                            self.channels, self.crop)
