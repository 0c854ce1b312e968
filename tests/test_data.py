"""Dataset readers on tiny files written by the tests, and on ../shared/data when it is present."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from hiervq.data import (
    DataConfig,
    fit_images,
    load_data,
    read_cifar10_batches,
    read_idx,
    read_image_folder,
    read_mnist,
    read_npz,
    stratified_split,
)
from hiervq.errors import DataError

from .conftest import shared_file


def write_idx(path, array, gz=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_idx_and_mnist_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    splits = read_mnist(tmp_path)
    assert splits["train"].images.shape == (6, 28, 28, 1) and splits["test"].labels.shape == (4,)
    raw = tmp_path / "raw.idx"
    write_idx(raw, np.arange(12).reshape(3, 4), gz=False)
    assert read_idx(raw).tolist() == np.arange(12).reshape(3, 4).tolist()


def test_corrupt_idx_is_named(tmp_path):
    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="corrupt IDX"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    with pytest.raises(DataError, match="no such directory"):
        read_mnist(tmp_path / "missing")


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 2)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog"]}))
    splits = read_cifar10_batches(tmp_path)
    assert splits["train"].images.shape == (15, 32, 32, 3) and len(splits["test"]) == 2
    assert splits["class_names"] == ["cat", "dog"]
    # the channel-major rows are turned into (H, W, C) images
    first = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"][0]
    assert splits["train"].images[0, 0, 1].tolist() == [first[1], first[1024 + 1], first[2048 + 1]]


def test_cifar10_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing"):
        read_cifar10_batches(tmp_path)


def test_npz_medmnist_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8),
        train_labels=np.arange(10) % 3,
        val_images=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
        val_labels=np.arange(4) % 3,
        test_images=rng.integers(0, 256, (5, 8, 8), dtype=np.uint8),
        test_labels=np.arange(5) % 3,
        class_names=np.array(["a", "b", "c"]),
    )
    splits = read_npz(path)
    assert splits["train"].images.shape == (10, 8, 8, 3)
    assert splits["test"].images.shape == (5, 8, 8, 1)
    assert splits["class_names"] == ["a", "b", "c"]
    data = load_data(DataConfig(name="npz", path=str(path), image_size=16, classes=[2, 0]))
    assert data.val is not None and data.train.shape == (3, 16, 16)
    assert set(data.train.labels.tolist()) <= {0, 1} and data.train.class_names == ["c", "a"]


def test_npz_errors(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a .npz archive"):
        read_npz(path)
    np.savez(tmp_path / "empty.npz", something=np.zeros(3))
    with pytest.raises(DataError, match="no train_images"):
        read_npz(tmp_path / "empty.npz")
    np.savez(tmp_path / "float.npz", train_images=np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(DataError, match="uint8"):
        read_npz(tmp_path / "float.npz")


def make_folder(root, classes=("cat", "dog"), n=3, size=(10, 12), mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        d = root / c if c else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(d / f"{i}.png")


def test_image_folders_labeled_and_flat(tmp_path):
    make_folder(tmp_path / "labeled")
    split, names = read_image_folder(tmp_path / "labeled", labels=True)
    assert names == ["cat", "dog"] and split.images.shape == (6, 10, 12, 3)
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    make_folder(tmp_path / "flat", classes=("",), n=4, mode="L")
    split, names = read_image_folder(tmp_path / "flat")
    assert names is None and split.labels is None and split.images.shape == (4, 10, 12, 1)
    data = load_data(DataConfig(name="folder", path=str(tmp_path / "flat"), image_size=8))
    assert (len(data.train), len(data.val), len(data.test)) == (2, 1, 1) and data.test.labels is None


def test_corrupt_image_is_named(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: corrupt or unreadable image"):
        read_image_folder(tmp_path)


def test_fit_images_pad_resize_and_channels():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    padded = fit_images(x, 32, "pad")
    assert padded.shape == (2, 1, 32, 32) and torch.equal(padded[:, :, 2:30, 2:30], x)
    assert padded[:, :, :2].sum() == 0
    assert fit_images(x, 16).shape == (2, 1, 16, 16)
    rgb = fit_images(x, None, channels=3)
    assert rgb.shape == (2, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])
    assert fit_images(rgb, None, channels=1).shape == (2, 1, 28, 28)
    with pytest.raises(DataError, match="cannot pad"):
        fit_images(x, 16, "pad")


def test_stratified_split_keeps_every_class():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 2)
    keep, held = stratified_split(labels, 0.1, seed=3)
    assert len(set(keep) & set(held)) == 0 and len(keep) + len(held) == len(labels)
    assert set(labels[held]) == {0, 1, 2} and set(labels[keep]) == {0, 1, 2}
    again = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(again[1], held)


def test_embedded_digits():
    data = load_data(DataConfig())
    assert len(data.train) + len(data.val) == 1497 and len(data.test) == 300
    assert len(data.val) == 76 and sorted(set(data.val.labels.tolist())) == list(range(10))  # 5 %, stratified
    assert data.train.shape == (1, 32, 32)
    x, y = data.train.batch(slice(0, 4))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.shape == (4,)
    assert data.train.num_classes == 10


def test_shared_mnist():
    root = shared_file("mnist")
    splits = read_mnist(root)
    assert splits["train"].images.shape == (60000, 28, 28, 1)
    assert splits["train"].labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert splits["test"].labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_shared_cifar10_npz():
    splits = read_npz(shared_file("cifar10", "cifar10.npz"))
    assert splits["train"].images.shape == (50000, 32, 32, 3)
    assert splits["test"].labels[:4].tolist() == [1, 5, 2, 3]
    assert splits["class_names"][0] == "airplane"


def test_shared_pbc_five_white_cell_classes():
    path = shared_file("pbc", "pbc_32.npz")
    data = load_data(DataConfig(name="npz", path=str(path), image_size=32, classes=[0, 1, 4, 5, 6]))
    assert data.train.class_names == ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert len(data.test) == 244 + 623 + 243 + 284 + 666
