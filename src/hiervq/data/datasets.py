"""Datasets as in-memory uint8 tensors, the data config, the embedded default and seeded splits."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .batches import AugmentConfig
from .lazy import ArraySource, ConcatSource, FolderSource, LazyImageSet, MemorySource, centre_crop, count_classes
from .readers import (
    Split,
    check_labels,
    check_sizes,
    folder_files,
    folder_mode,
    image_header,
    npz_array,
    npz_memmap,
    npz_shape,
    open_npz,
    read_cifar10_batches,
    read_image,
    read_mnist,
    read_npz,
)
from .transforms import fit_images

logger = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "cifar10", "npz", "folder")


@dataclass
class DataConfig:
    """Which images to use and how to shape them.

    Attributes:
        name: ``digits`` (embedded: the 1,797 handwritten digits scikit-learn ships, no files needed), ``mnist`` (folder
            of idx files), ``cifar10`` (python batches folder, or an .npz), ``npz`` (MedMNIST layout),
            ``folder`` (PNG/JPEG/..., read recursively; top-level ``train/``, ``val/``, ``test/`` sub-folders are its
            splits).
        path: file or folder (relative paths are relative to the working directory).
        image_size: side the images are brought to (``None`` keeps them); see ``fit``.
        fit: ``resize`` (antialiased bilinear) or ``pad`` (centred zero padding, e.g. MNIST 28 -> 32).
        channels: convert to 1 (luminance) or 3 channels; ``None`` keeps the file's (a folder: the channels most of
            its images have, one warning counting the converted others).
        labels: ``folders``: a ``folder``'s images are labelled by their class sub-folder (the first folder below
            the folder or its ``train/``, ``val/``, ``test/``; sorted names); ``None`` (the default): unlabelled,
            sub-folders are only read for their images.
        crop: train on random ``crop`` x ``crop`` crops (drawn from ``seed``, the epoch and the image, like
            ``augment``) of the images at their size (``image_size``, or their own when ``None``); evaluation
            sees whole images when all of them share one size, else their centre crops. ``None``: off.
        classes: keep only these labels (relabelled 0..n-1 in the given order).
        test_fraction: the stratified, seeded fraction of train that becomes the test split when the data has none
            (a folder without ``test/``).
        val_fraction: the stratified, seeded fraction of train held out as the validation split when the data has
            none (0: no validation split). At least one image and never all of train: under 20 training images,
            exactly one; under 2, none.
        train_limit, test_limit: use at most this many images (seeded random subset), for quick runs.
        seed: seed of the validation split and the limits.
        lazy: ``false`` reads every image into memory (one uint8 tensor; batches are cut from it); ``true`` reads
            images when a batch needs them (a ``folder``, or an ``npz``/``cifar10`` .npz whose image arrays are
            stored uncompressed, as ``np.savez`` writes them, which are memory-mapped); ``auto`` (the default) is
            ``true`` for those when their decoded images would take more than ``memory_limit_mb``.
        memory_limit_mb: the size of the decoded images (all splits, uint8 at ``image_size``) above which ``lazy:
            auto`` reads lazily.
        workers: worker processes that read, decode and augment training batches ahead of the training step
            (torch's ``DataLoader``; 0 = in the training process). With in-memory data and no augmentation they
            have little to do.
        augment: random flips, 90-degree rotations and crops of the training images (:class:`AugmentConfig`),
            drawn from ``seed``, the epoch and the image, so a resumed run sees the same images.
    """

    name: str = "digits"
    path: str | None = None
    image_size: int | None = 32
    fit: str = "resize"
    channels: int | None = None
    labels: str | None = None
    crop: int | None = None
    classes: list[int] | None = None
    test_fraction: float = 0.1
    val_fraction: float = 0.05
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0
    lazy: bool | str = "auto"
    memory_limit_mb: float = 2048.0
    workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def describe(self, shape: tuple[int, int, int] | None = None) -> dict:
        """What a saved model records about its data (``config.json``'s ``data``): the dataset ``name``, ``path``
        as given and ``absolute_path`` (resolved against the working directory), ``fit``, ``classes``, and the
        ``image_size`` and ``channels`` of the images the model saw (from ``shape`` (C, H, W) when given, else the
        config's)."""
        path = os.path.abspath(os.path.expanduser(self.path)) if self.path else None
        return {
            "name": self.name,
            "path": self.path,
            "absolute_path": path,
            "image_size": shape[1] if shape else self.image_size,
            "fit": self.fit,
            "channels": shape[0] if shape else self.channels,
            "classes": self.classes,
        }

    def validate(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"name must be one of {', '.join(DATASETS)}, got {self.name!r}")
        if self.name != "digits" and not self.path:
            raise ValueError(f"dataset {self.name!r} needs a path")
        if self.fit not in ("resize", "pad"):
            raise ValueError(f"fit must be resize or pad, got {self.fit!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or null, got {self.channels}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.labels not in (None, "folders"):
            raise ValueError(f"labels must be folders or null, got {self.labels!r}")
        if self.labels is not None and self.name != "folder":
            raise ValueError(f"labels: folders labels the images of a folder (name: folder), not {self.name} data")
        for key in ("image_size", "train_limit", "test_limit", "crop"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1 or null, got {value}")
        if self.lazy not in (True, False, "auto"):
            raise ValueError(f"lazy must be true, false or auto, got {self.lazy!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 0 <= self.seed < 2**63:  # torch and numpy take 64-bit seeds
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.memory_limit_mb <= 0:
            raise ValueError(f"memory_limit_mb must be > 0, got {self.memory_limit_mb}")
        self.augment.validate()
        if self.classes is not None:
            if not self.classes or min(self.classes) < 0 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be a non-empty list of distinct labels >= 0, got {self.classes}")


class ImageSet(torch.utils.data.Dataset):
    """Images held as a uint8 tensor (N, C, H, W) with optional int64 labels (N,).

    Indexing gives ``(image, label)`` with the image as float (C, H, W) in [0, 1] (label -1 when unlabeled);
    :meth:`batch` converts many at once, which is what the trainer uses.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, class_names: list[str] | None = None,
                 crop: int | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"ImageSet expects uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.crop = crop  # images are served as their centred crop x crop (``load(i, whole=True)``: whole)

    @classmethod
    def from_split(cls, split: Split, class_names: list[str] | None = None) -> ImageSet:
        array = split.images if split.images.flags.writeable else split.images.copy()
        images = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
        labels = None if split.labels is None else torch.from_numpy(split.labels.astype(np.int64))
        return cls(images, labels, class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image (as served: cropped when ``crop`` is set)."""
        c, h, w = self.images.shape[1:]
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    @property
    def num_classes(self) -> int | None:
        return count_classes(self.class_names, self.labels)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, C, H, W) float in [0, 1] and labels (B,) (or None) for ``index``."""
        x = centre_crop(self.images[index], self.crop).float().div_(255.0)
        y = None if self.labels is None else self.labels[index]
        return x, y

    def load(self, i: int, whole: bool = False) -> torch.Tensor:
        """Image ``i`` as uint8 (C, H, W) (``whole``: without the centre crop)."""
        return self.images[i] if whole or not self.crop else centre_crop(self.images[i], self.crop).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.load(i).float() / 255.0
        return x, int(self.labels[i]) if self.labels is not None else -1

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSet(self.images[index], None if self.labels is None else self.labels[index], self.class_names,
                        self.crop)


def join_sets(parts: list) -> ImageSet | LazyImageSet:
    """One image set of ``parts`` in order (in memory: concatenated; read on access: concatenated positions into
    their common source), labels kept only when every part has them."""
    labels = [p.labels for p in parts]
    joined = torch.cat(labels) if all(lb is not None for lb in labels) else None
    if all(isinstance(p, ImageSet) for p in parts):
        return ImageSet(torch.cat([p.images for p in parts]), joined, parts[0].class_names,
                        next((p.crop for p in parts if p.crop), None))
    first = parts[0]
    crop = next((p.crop for p in parts if p.crop), None)  # mixed sizes: every part is centre-cropped
    if all(isinstance(p, LazyImageSet) and p.source is first.source for p in parts):
        return LazyImageSet(first.source, np.concatenate([p.index for p in parts]), joined, first.class_names,
                            first.size, first.fit, first.channels, crop)
    # separately stored splits (an .npz's train/test arrays): one source that reads from each in turn
    source = ConcatSource([(p.source, p.index) for p in parts])
    return LazyImageSet(source, np.arange(len(source)), joined, first.class_names, first.size, first.fit,
                        first.channels, crop)


@dataclass
class DataSplits:
    """The splits a run uses: ``train``, optional ``val``, ``test`` (each an :class:`ImageSet` in memory or a
    :class:`~hiervq.data.lazy.LazyImageSet` read on access), and how training batches are served: ``workers``
    and ``augment`` (see :class:`DataConfig`; :class:`~hiervq.data.batches.BatchSource`)."""

    train: ImageSet | LazyImageSet
    test: ImageSet | LazyImageSet
    val: ImageSet | LazyImageSet | None = None
    workers: int = 0
    augment: AugmentConfig | None = None

    @property
    def lazy(self) -> bool:
        return isinstance(self.train, LazyImageSet)


# ---------------------------------------------------------------------- transforms
def stratified_split(labels: np.ndarray | None, fraction: float, seed: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of each class held out (at least one per class when possible).

    Unlabeled data (``labels=None``, size ``n``) is split uniformly at random.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        k = int(round(fraction * n))
        if fraction > 0 and n > 1:  # as for each class below: at least one held out, at least one kept
            k = min(max(k, 1), n - 1)
        return np.sort(perm[k:]), np.sort(perm[:k])
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return keep, held_out


def label_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a labeled subset with ``fraction`` of each class (rounded, at least one per class).

    Stratified and seeded: one permutation per class (from ``seed``) is drawn and its first
    ``max(1, round(fraction * n_class))`` items are kept, so the same call gives the same subset for every model
    (paired comparisons) and smaller fractions are nested in larger ones (1 % within 10 % within 50 %).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a label fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keep.append(idx[: max(1, int(round(fraction * len(idx))))])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------- the embedded default
#: the embedded digits: UCI "Optical Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0),
#: the 1,797-image test set as scikit-learn ships it (``sklearn.datasets.load_digits``), stored as uint8 pixels
#: 0..16 (``images`` (1797, 8, 8)) and labels (``labels`` (1797,)) so that the demo needs no scikit-learn;
#: written with ``np.savez_compressed(path, images=d.images.astype(np.uint8), labels=d.target.astype(np.uint8))``
#: (tests/test_usability.py checks it against scikit-learn when that is installed)
DIGITS_FILE = Path(__file__).with_name("digits.npz")


def digits_splits(size: int | None = 32) -> dict[str, Split]:
    """The embedded 1,797 handwritten digits (8x8, 0-16; see :data:`DIGITS_FILE`) as uint8 images, with a fixed
    stratified split of 1,497 train / 300 test images (seed 0). Resizing to ``size`` happens in :func:`load_data`."""
    with np.load(DIGITS_FILE) as archive:
        raw, labels = archive["images"], archive["labels"].astype(np.int64)
    images = np.round(raw.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    keep, test = stratified_split(labels, 300 / len(labels), seed=0)
    return {"train": Split(images[keep], labels[keep]), "test": Split(images[test], labels[test])}


# ---------------------------------------------------------------------- loading
def _read(config: DataConfig) -> dict:
    path = Path(os.path.expanduser(config.path)) if config.path else None
    if config.name == "digits":
        return digits_splits()
    if path is not None and not path.exists():
        where = "" if path.is_absolute() else f" (relative paths are relative to the working directory: {os.path.abspath(path)})"
        raise DataError(f"data.path {path}: no such file or directory{where}; point it at your copy with "
                        "--set data.path=...")
    if config.name == "mnist":
        return read_mnist(path)
    if config.name == "cifar10":
        return read_npz(path) if path.suffix == ".npz" else read_cifar10_batches(path)
    if config.name == "npz":
        return read_npz(path)
    return _read_folder(config, path, lazy=False)


def _read_folder(config: DataConfig, path: Path, lazy: bool | str) -> dict | None:
    """A folder's splits (:func:`~hiervq.data.readers.folder_files`): read into memory (:class:`Split`; a folder of
    mixed sizes with ``data.crop``: :class:`_Positions` into a :class:`~hiervq.data.lazy.MemorySource`), or
    (``lazy``) :class:`_Positions` into a :class:`~hiervq.data.lazy.FolderSource`; with ``lazy: auto``, None
    when the decoded images fit ``memory_limit_mb`` (the caller reads them into memory). Every file's header is
    read first: mixed sizes and crops larger than an image are refused before any pixel is decoded."""
    listing = folder_files(path, labels=config.labels == "folders")
    files = listing.files
    if listing.unused:
        logger.warning("%s: %d images outside train/, val/ and test/ are not used", path, listing.unused)
    if config.labels is None and listing.sub_folders > 1:
        logger.info("%s: the images of %d sub-folders are read as one unlabelled set (data.labels: folders makes "
                    "each sub-folder a class)", path, listing.sub_folders)
    headers = [image_header(f) for f in files]
    mixed = check_sizes(files, headers, config.crop, config.image_size)
    mode = folder_mode(files, config.channels, headers)
    size = (config.image_size,) * 2 if config.image_size else None
    if lazy == "auto":
        c = 1 if mode == "L" else 3
        mb = sum(_decoded_mb(1, c, h, w, config) for h, w, _ in headers)
        if mb <= config.memory_limit_mb:
            return None
        logger.info("data: %s holds %d images (%.3g MB decoded > data.memory_limit_mb %g): reading them on access",
                    path, len(files), mb, config.memory_limit_mb)
    if lazy:
        source = FolderSource(files, mode, size, headers)
    elif mixed:
        source = MemorySource([read_image(f, size, mode) for f in files], str(path))
    else:
        source = None
        images = np.stack([read_image(f, size, mode) for f in files])
    out: dict = {"class_names": listing.class_names}
    start = 0
    for key, (names, labels) in listing.splits.items():
        index = np.arange(start, start + len(names))
        start += len(names)
        y = None if labels is None else check_labels(np.asarray(labels, dtype=np.int64), len(names))
        out[key] = Split(images[index], y) if source is None else _Positions(source, index, y)
    return out


@dataclass
class _Positions:
    """A split read on access: positions into ``source`` (see :mod:`hiervq.data.lazy`) and their labels; what
    :class:`~hiervq.data.readers.Split` is for one read into memory (both have ``labels``, ``len`` and ``take``)."""

    source: object
    index: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)


def _take(split: Split | _Positions, idx: np.ndarray, labels: np.ndarray | None = None) -> Split | _Positions:
    """The items ``idx`` of ``split`` (with ``labels`` instead of theirs when given)."""
    if labels is None and split.labels is not None:
        labels = split.labels[idx]
    if isinstance(split, _Positions):
        return _Positions(split.source, split.index[idx], labels)
    return Split(split.images[idx], labels)


def _limit(split, limit: int | None, seed: int):
    if limit is None or limit >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:limit])
    return split.subset(idx)


def _select_classes(split: Split | _Positions, classes: list[int], where: str, hint: str = "") -> Split | _Positions:
    if split.labels is None:
        raise DataError(f"data.classes needs labeled data, but {where} has no labels{hint}")
    mask = np.isin(split.labels, classes)
    remap = {c: i for i, c in enumerate(classes)}
    labels = np.array([remap[int(v)] for v in split.labels[mask]], dtype=np.int64)
    return _take(split, np.flatnonzero(mask), labels)


# ---------------------------------------------------------------------- reading on access
def _npz_image_keys(path: Path) -> list[str]:
    archive = open_npz(path)
    return [f"{split}_images" for split in ("train", "val", "test") if f"{split}_images" in archive.files]


def _decoded_mb(n: int, channels: int, h: int, w: int, config: DataConfig) -> float:
    """MB that ``n`` decoded uint8 images take at the config's size and channels."""
    side = (config.image_size, config.image_size) if config.image_size else (h, w)
    return n * (config.channels or channels) * side[0] * side[1] / 2**20


def _read_lazy(config: DataConfig, path: Path | None) -> dict | None:
    """The splits as :class:`_Positions` when ``config`` reads lazily (``data.lazy``), else None."""
    npz = path is not None and (config.name == "npz" or (config.name == "cifar10" and path.suffix == ".npz"))
    if config.lazy is False or not ((config.name == "folder" and path is not None) or npz):
        if config.lazy is True:
            where = f" at {path}" if path is not None else ""
            raise DataError(f"data.lazy: true reads a folder of images or an .npz on access; {config.name} "
                            f"data{where} is read into memory (set data.lazy: auto or false)")
        return None
    if config.name == "folder":
        return _read_folder(config, path, config.lazy)
    keys = _npz_image_keys(path)
    maps = {key: npz_memmap(path, key) for key in keys}
    compressed = [key for key, array in maps.items() if array is None]
    why = (f"{path}: {', '.join(compressed)} {'is' if len(compressed) == 1 else 'are'} compressed "
           "(np.savez_compressed), so it cannot be memory-mapped; re-save it with np.savez to read it on access")
    if compressed and config.lazy is True:
        raise DataError(why + " (or set data.lazy: false)")
    if config.lazy == "auto":
        size = 0.0
        for key in keys:
            shape = maps[key].shape if maps[key] is not None else npz_shape(path, key)
            c = shape[3] if len(shape) == 4 else 1
            size += _decoded_mb(shape[0], c, shape[1], shape[2], config) if len(shape) >= 3 else 0.0
        if size <= config.memory_limit_mb:
            return None
        if compressed:
            logger.warning("%s (%.3g MB decoded > data.memory_limit_mb %g); reading it into memory", why, size,
                           config.memory_limit_mb)
            return None
        logger.info("data: %s holds %.3g MB of decoded images (> data.memory_limit_mb %g): memory-mapped, read on "
                    "access", path, size, config.memory_limit_mb)
    archive = open_npz(path)
    out: dict = {}
    for key in keys:
        split = key[: -len("_images")]
        source = ArraySource(path, key)
        labels = None
        if f"{split}_labels" in archive.files:
            try:
                labels = check_labels(npz_array(archive, f"{split}_labels", path), len(source))
            except DataError as exc:
                raise DataError(f"{path}: {split}_labels: {exc}") from None
        out[split] = _Positions(source, np.arange(len(source)), labels)
    for split in ("train", "val", "test"):
        if f"{split}_labels" in archive.files and split not in out:
            raise DataError(f"{path}: {split}_labels without {split}_images")
    if "train" not in out:
        raise DataError(f"{path}: no train_images array (found: {', '.join(sorted(archive.files)) or 'nothing'})")
    if "class_names" in archive.files:
        out["class_names"] = [str(c) for c in npz_array(archive, "class_names", path).reshape(-1)]
    return out


def load_data(config: DataConfig) -> DataSplits:
    """Read, filter, split and shape a dataset as :class:`DataSplits`: uint8 tensors in memory, or (``data.lazy``)
    image sets read on access (:class:`~hiervq.data.lazy.LazyImageSet`) with the same splits, order and pixels.

    When the source has no test split (e.g. a folder without ``test/``), ``data.test_fraction`` (10 %) of train
    (stratified, seeded) becomes test; then, when it has no val split, :func:`val_split` carves ``data.val_fraction``
    (5 %) of the rest as val. With ``data.crop``, the training set serves centre crops (its random crops are drawn
    by the batch source: ``DataSplits.augment.size``) and val/test serve whole images when they share one size.
    """
    path = Path(os.path.expanduser(config.path)) if config.path else None
    raw = None
    if path is None or path.exists():  # (a missing path: _read says so)
        raw = _read_lazy(config, path)
    if raw is None:
        raw = _read(config)
    names = raw.pop("class_names", None)
    if config.classes is not None:
        for key in list(raw):
            hint = " (a folder's class sub-folders are labels with data.labels: folders)" if config.name == "folder" else ""
            raw[key] = _select_classes(raw[key], config.classes, f"the {key} split", hint)
        if names is not None:
            if max(config.classes) >= len(names):
                raise DataError(f"data.classes {config.classes}: {config.path or config.name} has {len(names)} classes")
            names = [names[c] for c in config.classes]
    if "test" not in raw:
        keep, test = stratified_split(raw["train"].labels, config.test_fraction, config.seed, n=len(raw["train"]))
        tr = raw["train"]
        raw["train"], raw["test"] = _take(tr, keep), _take(tr, test)
    if "val" not in raw and config.val_fraction > 0:
        held = val_split(raw["train"].labels, config.val_fraction, config.seed, len(raw["train"]))
        if held is None:
            if len(raw["train"]):  # (none at all: refused below)
                logger.warning("%s: %d training image: too few for a validation split (data.val_fraction)",
                               config.path or config.name, len(raw["train"]))
        else:
            tr = raw["train"]
            raw["train"], raw["val"] = _take(tr, held[0]), _take(tr, held[1])
    if config.crop is not None:
        _check_crop(raw, config)
    eval_crop = None
    if config.crop is not None:
        sizes = [_sizes(raw[k]) for k in raw if k != "train"]
        if None in sizes or len(set(sizes)) != 1:
            eval_crop = config.crop  # the evaluation images differ in size: their centre crops

    def make(split: Split | _Positions, limit: int | None = None, seed: int = 0,
             crop: int | None = None) -> ImageSet | LazyImageSet:
        if isinstance(split, _Positions):
            labels = None if split.labels is None else torch.from_numpy(split.labels.astype(np.int64))
            lazy = LazyImageSet(split.source, split.index, labels, names, config.image_size, config.fit,
                                config.channels, crop)
            return _limit(lazy, limit, seed)
        s = _limit(ImageSet.from_split(split, names), limit, seed)
        s.images = fit_images(s.images, config.image_size, config.fit, config.channels)
        s.crop = crop
        return s

    source = config.path or config.name
    for key, split in raw.items():  # before any training step: an empty test split used to fail after an epoch
        if len(split) == 0:
            why = f" after data.classes {config.classes}" if config.classes is not None else ""
            raise DataError(f"{source}: the {key} split has no images{why}")
    train = make(raw["train"], config.train_limit, config.seed, config.crop)
    test = make(raw["test"], config.test_limit, config.seed + 1, eval_crop)
    val = make(raw["val"], crop=eval_crop) if "val" in raw else None
    augment = replace(config.augment, size=config.crop) if config.crop is not None else config.augment
    return DataSplits(train=train, test=test, val=val, workers=config.workers, augment=augment)


def val_split(labels: np.ndarray | None, fraction: float, seed: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices (keep, val) of the validation split carved from ``n`` training images when the data has none:
    :func:`stratified_split` (seeded; round(``fraction`` x n) images, at least one per class of 2 or more images),
    but exactly one image (seeded, any class) under 20 images, and None (no split) under 2."""
    if n < 2:
        return None
    if n < 20:
        one = int(np.random.default_rng(seed).integers(n))
        return np.setdiff1d(np.arange(n), [one]), np.array([one], dtype=np.int64)
    keep, held = stratified_split(labels, fraction, seed, n=n)
    if len(held) == 0:  # every class a single image: one of them
        return val_split(None, fraction, seed, n)
    return keep, held


def _sizes(split: Split | _Positions) -> tuple | None:
    """The one (h, w) of a split's images as read (None: several, or not known without decoding)."""
    if isinstance(split, Split):
        return tuple(split.images.shape[1:3])
    source = split.source
    if isinstance(source, MemorySource):
        shapes = {source.arrays[int(j)].shape[:2] for j in split.index}
        return shapes.pop() if len(shapes) == 1 else None
    if isinstance(source, FolderSource):
        if source.size is not None:
            return tuple(source.size)
        if source.headers is None:
            return None
        shapes = {source.headers[int(j)][:2] for j in split.index}
        return shapes.pop() if len(shapes) == 1 else None
    if isinstance(source, ArraySource):
        return tuple(source.array.shape[1:3])
    return None


def _check_crop(raw: dict, config: DataConfig) -> None:
    """``data.crop`` no larger than any image (at ``image_size`` when set); a folder's files were checked already."""
    if config.image_size is not None:
        if config.crop > config.image_size:
            raise DataError(f"data.crop {config.crop} is larger than data.image_size {config.image_size}")
        return
    for key, split in raw.items():
        size = _sizes(split) if not (isinstance(split, _Positions) and isinstance(split.source, (FolderSource, MemorySource))) else None
        if size is not None and min(size) < config.crop:
            raise DataError(f"{config.path or config.name}: the {key} images are {size[1]}x{size[0]} pixels, smaller "
                            f"than data.crop {config.crop}")


def first_test_images(config: DataConfig, n: int) -> ImageSet:
    """The first ``n`` images of the test split in the reader's order (not a random subset), brought to size like
    :func:`load_data` does; only those ``n`` are resized when the source has its own test split. For quick checks of
    a trained model against numbers measured on the same images (a shipped tokenizer's card: :mod:`hiervq.zoo`)."""
    path = Path(os.path.expanduser(config.path)) if config.path else None
    if config.name == "folder":
        raw = {}  # its splits are decided by load_data
    elif config.name in ("npz", "cifar10") and path is not None and path.suffix == ".npz" and path.is_file():
        raw = read_npz(path, splits=("test",))  # the training arrays are never decompressed
    else:
        raw = _read(config)
    if "test" not in raw or config.classes is not None:  # a split or filter of its own: the whole load_data path
        test = load_data(replace(config, train_limit=1, test_limit=None, lazy=False)).test
        labels = None if test.labels is None else test.labels[:n]
        if isinstance(test, ImageSet):
            return ImageSet(test.images[:n], labels, test.class_names, test.crop)
        return ImageSet(torch.stack([test.load(i) for i in range(min(n, len(test)))]), labels, test.class_names)
    split = raw["test"]
    if len(split) == 0:
        raise DataError(f"{config.path or config.name}: the test split has no images")
    head = Split(split.images[:n], None if split.labels is None else split.labels[:n])
    images = ImageSet.from_split(head, raw.get("class_names"))
    images.images = fit_images(images.images, config.image_size, config.fit, config.channels)
    return images
