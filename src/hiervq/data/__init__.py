"""Dataset readers, the embedded default, splits and transforms (no model imports)."""

from .datasets import (
    DATASETS,
    DataConfig,
    DataSplits,
    ImageSet,
    digits_splits,
    first_test_images,
    fit_images,
    label_subset,
    load_data,
    stratified_split,
)
from .readers import (
    Split,
    read_cifar10_batches,
    read_idx,
    read_image,
    read_image_folder,
    read_mnist,
    read_npz,
)

__all__ = [
    "DATASETS",
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
