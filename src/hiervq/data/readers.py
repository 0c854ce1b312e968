"""Readers for image dataset files. Each returns uint8 numpy arrays (N, H, W, C) and int64 labels (N,).

Formats: MNIST idx (.gz or raw), CIFAR-10 python batches, MedMNIST-layout .npz archives, folders of
PNG/JPEG images (one sub-folder per class, or flat for unlabeled data). Readers only read local files.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Split:
    """Images (N, H, W, C) uint8 and labels (N,) int64 (``None`` for unlabeled data)."""

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if self.images.ndim != 4:
            raise DataError(f"images must be (N, H, W) or (N, H, W, C), got shape {self.images.shape}")
        if self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (0-255), got {self.images.dtype}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
            if len(self.labels) != len(self.images):
                raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------- MNIST idx
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX array (big-endian header, unsigned bytes) from a ``.gz`` or raw file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(buf) < 4:
        raise DataError(f"{path}: corrupt IDX file (too short)")
    zero, dtype_code, ndim = buf[0] << 8 | buf[1], buf[2], buf[3]
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(buf) - header != expected:
        raise DataError(f"{path}: corrupt IDX file ({len(buf) - header} data bytes, header says {expected})")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no {stem}[.gz] file (expected the four MNIST idx files)")


def read_mnist(root: str | os.PathLike) -> dict[str, Split]:
    """MNIST (or Fashion-MNIST) from the four idx files in ``root``: {"train", "test"} splits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (MNIST expects a folder with the idx files)")
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
        out[split] = Split(images, labels)
    return out


# ---------------------------------------------------------------------- CIFAR-10 python batches
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain containers (CIFAR batches need nothing else)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: corrupt CIFAR-10 batch ({exc})") from None


def read_cifar10_batches(root: str | os.PathLike) -> dict[str, Split]:
    """CIFAR-10 from the official python batches (``data_batch_1..5``, ``test_batch``) in ``root``."""
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (CIFAR-10 expects the python batch files)")
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, files in names.items():
        xs, ys = [], []
        for name in files:
            if not (root / name).is_file():
                raise DataError(f"{root}: missing CIFAR-10 batch {name}")
            batch = _read_batch(root / name)
            data = np.asarray(batch.get(b"data"))
            if data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{root / name}: expected (N, 3072) pixel rows, got {data.shape}")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch.get(b"labels")))
        out[split] = Split(np.ascontiguousarray(np.concatenate(xs)).astype(np.uint8), np.concatenate(ys))
    meta = root / "batches.meta"
    if meta.is_file():
        names_ = _read_batch(meta).get(b"label_names")
        if names_:
            out["class_names"] = [n.decode() for n in names_]  # type: ignore[assignment]
    return out


# ---------------------------------------------------------------------- MedMNIST-layout npz
def read_npz(path: str | os.PathLike) -> dict[str, Split]:
    """An .npz archive with ``train_images``/``train_labels``, optional ``val_*``, ``test_*``, ``class_names``.

    Images are uint8 (N, H, W) or (N, H, W, C). Returns splits by name, plus ``class_names`` when present.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: corrupt .npz archive ({exc})") from None
    out: dict = {}
    for split in ("train", "val", "test"):
        if f"{split}_images" not in keys:
            continue
        try:
            images = archive[f"{split}_images"]
            labels = archive[f"{split}_labels"] if f"{split}_labels" in keys else None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: corrupt array {split}_images ({exc})") from None
        try:
            out[split] = Split(images, labels)
        except DataError as exc:
            raise DataError(f"{path}: {split}: {exc}") from None
    if "train" not in out:
        raise DataError(f"{path}: no train_images array (found: {', '.join(sorted(keys)) or 'nothing'})")
    if "class_names" in keys:
        out["class_names"] = [str(c) for c in archive["class_names"]]
    return out


# ---------------------------------------------------------------------- image folders
def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None, mode: str | None = None) -> np.ndarray:
    """One image file as uint8 (H, W, C); ``mode`` "L" or "RGB" converts, ``size`` (h, w) resizes (bicubic)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if mode is not None:
                img = img.convert(mode)
            elif img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BICUBIC)
            arr = np.array(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({exc})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(
    root: str | os.PathLike, size: tuple[int, int] | None = None, mode: str | None = None
) -> tuple[Split, list[str] | None]:
    """A folder of images: one sub-folder per class (labels by sorted folder name) or flat (unlabeled).

    All images must share one size unless ``size`` (h, w) is given. Returns the split and the class names.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_dirs:
        files, labels = [], []
        for label, d in enumerate(class_dirs):
            found = list_images(d)
            files += found
            labels += [label] * len(found)
        names: list[str] | None = [d.name for d in class_dirs]
    else:
        files, labels, names = list_images(root), None, None
    if not files:
        raise DataError(f"{root}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    if mode is None:  # one mode for the whole folder: grayscale only if the first image is
        mode = "L" if read_image(files[0]).shape[2] == 1 else "RGB"
    arrays = [read_image(f, size, mode) for f in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"{root}: images have different shapes {sorted(shapes)[:3]}; set data.image_size to resize them"
        )
    return Split(np.stack(arrays), None if labels is None else np.asarray(labels)), names
