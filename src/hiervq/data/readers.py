"""Readers for image dataset files. Each returns uint8 numpy arrays (N, H, W, C) and int64 labels (N,).

Formats: MNIST idx (.gz or raw), CIFAR-10 python batches, MedMNIST-layout .npz archives, folders of
PNG/JPEG images (read recursively; ``train/``, ``val/``, ``test/`` sub-folders are splits, class sub-folders
labels only when asked). Readers only read local files.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class SplitError(DataError):
    """A :class:`Split` that is not valid; ``part`` is "images" or "labels" (readers name the key or file)."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part


#: channel counts the models, conversions (``data.channels``) and reports handle
CHANNELS = (1, 3)


def check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """``labels`` as int64 (N,) after checking they are class indices: integer-valued, finite, >= 0, one per
    image (an (N, 1) column is accepted). Raises :class:`SplitError` ("labels") saying what is wrong."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iuf" and labels.dtype != np.bool_:
        raise SplitError("labels", f"labels must be integer class indices, got {labels.dtype} values")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise SplitError("labels", f"labels must be one class index per image (N,), got shape {labels.shape}")
    if len(labels) != n:
        raise SplitError("labels", f"{n} images but {len(labels)} labels")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise SplitError("labels", f"labels hold {int((~np.isfinite(labels)).sum())} NaN/infinite values")
        if (labels != np.round(labels)).any():
            bad = labels[labels != np.round(labels)][0]
            raise SplitError("labels", f"labels must be integer class indices, got {bad!r}")
    if len(labels) and labels.min() < 0:
        raise SplitError("labels", f"labels must be >= 0, got {labels.min()!r}")
    return labels.astype(np.int64)


@dataclass
class Split:
    """Images (N, H, W, C) uint8 with C = 1 or 3, and labels (N,) int64 (``None`` for unlabeled data)."""

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if self.images.ndim != 4:
            raise SplitError("images", f"images must be (N, H, W) or (N, H, W, C), got shape {self.images.shape}")
        if self.images.dtype != np.uint8:
            raise SplitError("images", f"images must be uint8 (0-255), got {self.images.dtype}")
        if self.images.shape[3] not in CHANNELS:
            raise SplitError(
                "images", f"images have {self.images.shape[3]} channels (shape {self.images.shape}); hiervq handles "
                "1 (grayscale) or 3 (RGB), as the last axis"
            )
        if self.labels is not None:
            self.labels = check_labels(self.labels, len(self.images))

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
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (it ends before the compressed data does)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
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
        try:
            out[split] = Split(images, labels)
        except DataError as exc:
            raise DataError(f"{root}: {split}: {exc}") from None
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
            batch = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - a garbled pickle fails in many ways; none of them is ours
        raise DataError(f"{path}: corrupt CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    return batch


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
            if data.dtype != np.uint8:
                raise DataError(f"{root / name}: pixels must be uint8, got {data.dtype}")
            labels = np.asarray(batch.get(b"labels"))
            try:
                labels = check_labels(labels, len(data))
            except DataError as exc:
                raise DataError(f"{root / name}: {exc}") from None
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels)
        out[split] = Split(np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys))
    meta = root / "batches.meta"
    if meta.is_file():
        names_ = _read_batch(meta).get(b"label_names")
        if names_:
            out["class_names"] = [n.decode() for n in names_]  # type: ignore[assignment]
    return out


# ---------------------------------------------------------------------- MedMNIST-layout npz
def open_npz(path: str | os.PathLike, what: str = ".npz archive") -> np.lib.npyio.NpzFile:
    """Open the .npz archive ``path`` (no pickle); one that is missing, not a zip or corrupt is a
    :class:`DataError` naming the file. Read its arrays with :func:`npz_array`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a {what}")
    try:
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a {what} (an .npz is a zip of .npy arrays, as numpy.savez writes it)")
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: corrupt {what} ({exc})") from None


def npz_array(archive: np.lib.npyio.NpzFile, key: str, path: str | os.PathLike) -> np.ndarray:
    """The array ``key`` of an archive from :func:`open_npz`; a truncated, CRC-broken or pickled (object) member
    is a :class:`DataError` naming the file and the key."""
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path}: {key} holds Python objects, which hiervq does not load (save plain arrays)") from None
        raise DataError(f"{path}: {key} is corrupt ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise DataError(f"{path}: {key} is corrupt ({type(exc).__name__}: {exc})") from None


def read_npz(path: str | os.PathLike, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Split]:
    """An .npz archive with ``train_images``/``train_labels``, optional ``val_*``, ``test_*``, ``class_names``.

    Images are uint8 (N, H, W) or (N, H, W, C). Returns splits by name, plus ``class_names`` when present;
    ``splits`` reads only those (e.g. ``("test",)``, without decompressing the others).
    """
    path = Path(path)
    archive = open_npz(path)
    keys = set(archive.files)
    out: dict = {}
    for split in splits:
        if f"{split}_images" not in keys:
            if f"{split}_labels" in keys:
                raise DataError(f"{path}: {split}_labels without {split}_images")
            continue
        images = npz_array(archive, f"{split}_images", path)
        labels = npz_array(archive, f"{split}_labels", path) if f"{split}_labels" in keys else None
        try:
            out[split] = Split(images, labels)
        except SplitError as exc:
            raise DataError(f"{path}: {split}_{exc.part}: {exc}") from None
    if "train" in splits and "train" not in out:
        raise DataError(f"{path}: no train_images array (found: {', '.join(sorted(keys)) or 'nothing'})")
    if "class_names" in keys:
        out["class_names"] = [str(c) for c in npz_array(archive, "class_names", path).reshape(-1)]
    return out


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the .npy header at ``f``'s position (format 1.0 or 2.0), leaving ``f`` at
    the first byte of the data."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(f)


def npz_shape(path: str | os.PathLike, key: str) -> tuple[int, ...]:
    """The shape of the array ``key`` of an .npz archive, from its header alone (compressed or not)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
            return tuple(_npy_header(f)[0])
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the header of {key} ({exc})") from None


def npz_memmap(path: str | os.PathLike, key: str) -> np.ndarray | None:
    """The array ``key`` of the .npz archive ``path`` memory-mapped read-only, without reading its data; None when
    the member is compressed (``np.savez_compressed``): only members stored as they are (``np.savez``) sit in the
    file as plain bytes. (``np.load(mmap_mode="r")`` maps .npy files only; for an .npz it reads every member.)"""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)  # the local file header: signature, ..., name length, extra length
            if local[:4] != b"PK\x03\x04":
                raise DataError(f"{path}: {key} is corrupt (bad local zip header)")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            shape, fortran, dtype = _npy_header(f)
            offset = f.tell()
    except DataError:
        raise
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        raise DataError(f"{path}: cannot map {key} ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: {key} holds Python objects, which hiervq does not load (save plain arrays)")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def npz_check_crc(path: str | os.PathLike, key: str, chunk: int = 1 << 24) -> None:
    """Check the CRC-32 of the stored member ``key`` of an .npz archive as reading it whole would (the in-memory
    reader's check), streaming it in ``chunk`` bytes, so a memory-mapped array is not read with damaged bytes."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{key}.npy")
            with archive.open(info) as f:  # zipfile checks the CRC once the member's last byte is read
                while f.read(chunk):
                    pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: {key} is corrupt ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------- image folders
#: Pillow modes of one-band images with more than 8 bits (16-bit PNG/TIFF): scaled to 0-255, not clipped
WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: modes read as one channel (grayscale); every other mode is read as RGB
GRAY_MODES = ("1", "L", "LA", "La", *WIDE_GRAY_MODES)


def _to_8bit(img):
    """A 16-bit grayscale image as 8-bit "L", scaled (65535 -> 255) rather than clipped as Pillow's convert does."""
    arr = np.asarray(img)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ValueError(f"{img.mode} pixel values outside 0-65535 ({arr.min()}..{arr.max()})")
    return Image.fromarray(np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8), "L")


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None, mode: str | None = None) -> np.ndarray:
    """One image file as uint8 (H, W, C) with C = 1 (grayscale files) or 3 (all others); ``mode`` "L" or "RGB"
    converts, ``size`` (h, w) resizes (bicubic). 16-bit grayscale is scaled to 8 bits; float images and
    images over Pillow's decompression-bomb limit are refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not an image")
    with _open_image(path) as img:
        img.load()
        if img.mode in WIDE_GRAY_MODES:
            img = _to_8bit(img)
        if mode is None:
            mode = "L" if img.mode in GRAY_MODES else "RGB"
        if img.mode != mode:
            img = img.convert(mode)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BICUBIC)
        arr = np.array(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _visible(name: str) -> bool:
    return not name.startswith(".")


def list_images(root: Path, recursive: bool = False) -> list[Path]:
    """The image files of ``root`` (``recursive``: of every visible sub-folder too, symbolic links to folders not
    followed), sorted by their path below ``root`` (folder by folder)."""
    return list_files(root, IMAGE_SUFFIXES, recursive)


def list_files(root: Path, suffixes, recursive: bool = False) -> list[Path]:
    """The visible files of ``root`` whose suffix (lower-cased) is one of ``suffixes`` (``recursive``: of every
    visible sub-folder too, symbolic links to folders not followed), sorted by their path below ``root``."""
    if not recursive:
        return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes and _visible(p.name))
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if _visible(d)]
        for name in files:
            path = Path(folder) / name
            if _visible(name) and path.suffix.lower() in suffixes and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


#: top-level sub-folders of an image folder read as its splits
FOLDER_SPLITS = ("train", "val", "test")


@dataclass
class FolderListing:
    """The image files of a folder by split (``splits``: name -> (files, labels or None), in reading order),
    the class names (``labels: folders``) and how many images outside ``train/``, ``val/``, ``test/`` are unused."""

    splits: dict
    class_names: list[str] | None
    unused: int = 0
    sub_folders: int = 0

    @property
    def files(self) -> list[Path]:
        return [f for files, _ in self.splits.values() for f in files]


def folder_files(root: str | os.PathLike, labels: bool = False) -> FolderListing:
    """The image files of a folder, read recursively, by split. Top-level ``train/``, ``val/``, ``test/`` folders
    are the splits (``train/`` is required then; other images beside them are not used); otherwise every image
    is ``train``. ``labels``: each image's class is the first sub-folder below its split's folder (sorted names
    over all splits); an image outside a class sub-folder is an error. Lists names only: no image is opened."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    present = [s for s in FOLDER_SPLITS if (root / s).is_dir()]
    if present and "train" not in present:
        raise DataError(f"{root}: has {', '.join(s + '/' for s in present)} but no train/ folder (a folder with "
                        "split sub-folders needs train/; rename it, or move the images up)")
    roots = {s: root / s for s in present} if present else {"train": root}
    unused = 0
    if present:
        unused = sum(1 for p in list_images(root, recursive=True) if p.relative_to(root).parts[0] not in present)
    listed = {s: list_images(d, recursive=True) for s, d in roots.items()}
    names: list[str] | None = None
    if labels:
        classes = set()
        for s, files in listed.items():
            for f in files:
                parts = f.relative_to(roots[s]).parts
                if len(parts) < 2:
                    raise DataError(f"{f}: data.labels: folders reads each image's class from its sub-folder, but this "
                                    f"image is not in a class sub-folder of {roots[s]}")
                classes.add(parts[0])
        names = sorted(classes)
    index = {n: i for i, n in enumerate(names or [])}
    splits = {}
    for s, files in listed.items():
        y = [index[f.relative_to(roots[s]).parts[0]] for f in files] if labels else None
        splits[s] = (files, y)
    if not splits["train"][0]:
        where = f"{root / 'train'}" if present else str(root)
        raise DataError(f"{where}: no images found, sub-folders included ({', '.join(IMAGE_SUFFIXES)})")
    sub = {f.relative_to(roots["train"]).parts[0] for f in splits["train"][0] if len(f.relative_to(roots["train"]).parts) > 1}
    return FolderListing(splits, names, unused, len(sub))


@contextlib.contextmanager
def _open_image(path: Path):
    """An image file opened by Pillow, refused with one :class:`DataError` naming it when it is a decompression
    bomb, 32-bit float, corrupt or unreadable (also for what the block does with it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.mode == "F":
                    raise DataError(f"{path}: 32-bit float images are not supported; save it as 8- or 16-bit")
                yield img
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: image too large to read safely ({str(exc).split(' could be')[0]})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({exc})") from None


def image_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels as :func:`read_image` reads it) of an image file, from its header (nothing decoded)."""
    with _open_image(Path(path)) as img:
        w, h = img.size
        return h, w, 1 if img.mode in GRAY_MODES else 3


def folder_mode(files: list[Path], channels: int | None = None, headers: list | None = None) -> str:
    """One Pillow mode for a whole folder: "L" or "RGB" as ``channels`` (1 or 3) says, else the channels most of
    its images have (a tie: "RGB"). The images of the other kind are converted when read: one warning counts them.
    ``headers``: the files' :func:`image_header` when already read."""
    if channels is not None:
        return "L" if channels == 1 else "RGB"
    headers = headers if headers is not None else [image_header(f) for f in files]
    gray = sum(1 for h in headers if h[2] == 1)
    mode = "L" if gray > len(headers) - gray else "RGB"
    converted = gray if mode == "RGB" else len(headers) - gray
    if converted:
        first = next(f for f, h in zip(files, headers) if (h[2] == 1) == (mode == "RGB"))
        kind = "grayscale" if mode == "RGB" else "colour"
        logger.warning("%s: %d of %d images are %s (e.g. %s) and are converted to %s like the others; set "
                       "data.channels to choose", Path(files[0]).parent, converted, len(headers), kind, first,
                       "RGB" if mode == "RGB" else "grayscale")
    return mode


def check_sizes(files: list[Path], headers: list, crop: int | None, image_size: int | None) -> bool:
    """Refuse what cannot be stacked or cropped, before reading any pixels: images of different sizes without
    ``image_size`` or ``crop`` (naming a file and its size against the first's), a ``crop`` larger than an image
    (naming the smallest). Returns whether the sizes are mixed (only possible with ``crop`` and no ``image_size``)."""
    if image_size is not None:
        if crop is not None and crop > image_size:
            raise DataError(f"data.crop {crop} is larger than data.image_size {image_size}")
        return False
    sizes = [(h, w) for h, w, _ in headers]
    if crop is not None and sizes:
        k = min(range(len(sizes)), key=lambda i: min(sizes[i]))
        if min(sizes[k]) < crop:
            h, w = sizes[k]
            raise DataError(f"{files[k]} is {w}x{h} pixels, smaller than data.crop {crop}; lower data.crop or set "
                            "data.image_size")
    mixed = len(set(sizes)) > 1
    if mixed and crop is None:
        other = next(i for i, s in enumerate(sizes) if s != sizes[0])
        (h0, w0), (h1, w1) = sizes[0], sizes[other]
        raise DataError(f"{files[other]} is {w1}x{h1} pixels but {files[0]} is {w0}x{h0}: images of different sizes "
                        "need data.image_size (to resize them) or data.crop (to train on crops)")
    return mixed


def read_image_folder(
    root: str | os.PathLike, size: tuple[int, int] | None = None, mode: str | None = None, labels: bool = False
) -> tuple[Split, list[str] | None]:
    """Every image of a folder, sub-folders included (its ``train/``, ``val/``, ``test/`` in that order), labelled
    by class sub-folder when ``labels`` (see :func:`folder_files`).

    All images must share one size unless ``size`` (h, w) is given. Returns the split and the class names.
    """
    listing = folder_files(root, labels)
    files = listing.files
    headers = [image_header(f) for f in files]
    if mode is None:
        mode = folder_mode(files, headers=headers)
    if size is None:
        check_sizes(files, headers, None, None)
    arrays = [read_image(f, size, mode) for f in files]
    ys = [y for _, y in listing.splits.values()]
    label_array = np.asarray([v for y in ys for v in y]) if labels else None
    return Split(np.stack(arrays), label_array), listing.class_names
