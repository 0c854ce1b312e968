"""Dataset readers, the embedded default, splits and transforms (no model imports)."""

from .batches import AugmentConfig, BatchSource, augment_image, epoch_order, image_seed
from .datasets import (
    DATASETS,
    DataConfig,
    DataSplits,
    ImageSet,
    digits_splits,
    first_test_images,
    join_sets,
    label_subset,
    load_data,
    stratified_split,
)
from .lazy import ArraySource, FolderSource, LazyImageSet
from .readers import (
    Split,
    npz_memmap,
    read_cifar10_batches,
    read_idx,
    read_image,
    read_image_folder,
    read_mnist,
    read_npz,
)
from .transforms import fit_images

__all__ = [
    "ArraySource",
    "AugmentConfig",
    "BatchSource",
    "DATASETS",
    "FolderSource",
    "LazyImageSet",
    "augment_image",
    "epoch_order",
    "image_seed",
    "join_sets",
    "npz_memmap",
    "DataConfig",
    "DataSplits",
    "ImageSet",
    "Split",
    "digits_splits",
    "first_test_images",
    "fit_images",
    "label_subset",
    "load_data",
    "read_cifar10_batches",
    "read_idx",
    "read_image",
    "read_image_folder",
    "read_mnist",
    "read_npz",
    "stratified_split",
]
