"""Your images as they are (issues 26 and 27): folders read recursively with train/val/test sub-folders as splits
and labels only when asked (``data.labels: folders``), mixed channels converted with one warning, mixed sizes
refused up front or cropped (``data.crop``), a validation split for every run, both .npz readers checking the same,
and a worker's DataError as one line."""

from __future__ import annotations

import gzip
import logging
import pickle
import struct

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hiervq.cli import main
from hiervq.data import BatchSource, DataConfig, load_data
from hiervq.errors import DataError

from .conftest import TINY_RUN

pytestmark = pytest.mark.usefixtures("one_thread")


def png(path, size=(8, 8), mode="RGB", seed=0):
    """A random PNG of ``size`` (h, w) in ``mode`` at ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if mode == "RGB" else size
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def count(data) -> int:
    return sum(len(s) for s in (data.train, data.val, data.test) if s is not None)


# ---------------------------------------------------------------------- folders
def test_a_flat_folder_with_one_sub_folder_trains_on_all_its_images(tmp_path):
    """D8: 40 images plus a sub-folder of 8 used to train on the 8 only, as one class, without a word."""
    for i in range(40):
        png(tmp_path / "f" / f"a{i:02d}.png", seed=i)
    for i in range(8):
        png(tmp_path / "f" / "more" / f"b{i}.png", seed=100 + i)
    for lazy in (False, True):
        data = load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=8, lazy=lazy))
        assert count(data) == 48 and data.train.labels is None and data.train.class_names is None
        assert (len(data.train), len(data.val), len(data.test)) == (41, 2, 5)  # test 10 %, then val 5 % of the rest


def test_train_val_test_sub_folders_are_the_splits_and_classes_need_labels_folders(tmp_path):
    """`train/<class>/`, `val/<class>/`, `test/<class>/` used to give "no images found"; classes may nest folders."""
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for c in ("cat", "dog"):
            for i in range(n):
                png(tmp_path / "f" / split / c / ("deep" if i % 2 else "") / f"{c}{i}.png", seed=i)
    png(tmp_path / "f" / "test" / "zebra" / "z.png")  # a class seen in test only keeps its own label
    png(tmp_path / "f" / "notes" / "x.png")  # outside the splits: not used (a warning)
    cfg = dict(name="folder", path=str(tmp_path / "f"), image_size=8)
    plain = load_data(DataConfig(**cfg))
    assert (len(plain.train), len(plain.val), len(plain.test)) == (12, 4, 7) and plain.train.labels is None
    for lazy in (False, True):
        data = load_data(DataConfig(**cfg, labels="folders", lazy=lazy))
        assert data.train.class_names == ["cat", "dog", "zebra"]
        assert data.train.labels.tolist() == [0] * 6 + [1] * 6
        assert data.val.labels.tolist() == [0, 0, 1, 1] and data.test.labels.tolist() == [0] * 3 + [1] * 3 + [2]
    # only a val/ folder: test is carved from train (data.test_fraction), no val carved
    (tmp_path / "g" / "train").mkdir(parents=True)
    for i in range(30):
        png(tmp_path / "g" / "train" / f"{i}.png", seed=i)
        png(tmp_path / "g" / "val" / f"{i}.png", seed=i) if i < 3 else None
    data = load_data(DataConfig(name="folder", path=str(tmp_path / "g"), image_size=8, test_fraction=0.2))
    assert (len(data.train), len(data.val), len(data.test)) == (24, 3, 6)


def test_folder_split_and_label_errors(tmp_path):
    png(tmp_path / "a" / "test" / "x.png")
    with pytest.raises(DataError, match="has test/ but no train/"):
        load_data(DataConfig(name="folder", path=str(tmp_path / "a")))
    png(tmp_path / "b" / "loose.png")
    png(tmp_path / "b" / "cat" / "c.png")
    with pytest.raises(DataError, match="loose.png: data.labels: folders .* not in a class sub-folder"):
        load_data(DataConfig(name="folder", path=str(tmp_path / "b"), labels="folders"))
    with pytest.raises(DataError, match="data.labels: folders"):  # data.classes on an unlabelled folder: the hint
        load_data(DataConfig(name="folder", path=str(tmp_path / "b"), classes=[0]))
    with pytest.raises(ValueError, match="labels: folders labels the images of a folder"):
        DataConfig(name="digits", labels="folders").validate()
    with pytest.raises(ValueError, match="labels must be folders or null"):
        DataConfig(name="folder", path="x", labels="yes").validate()
    (tmp_path / "c" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found, sub-folders included"):
        load_data(DataConfig(name="folder", path=str(tmp_path / "c")))


def test_a_grayscale_first_image_no_longer_makes_the_set_grayscale(tmp_path, caplog):
    """D9: one grayscale image then 39 RGB: all RGB, one warning that counts the converted image."""
    png(tmp_path / "f" / "a00.png", mode="L")
    for i in range(1, 40):
        png(tmp_path / "f" / f"a{i:02d}.png", seed=i)
    for lazy in (False, True):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            data = load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=8, lazy=lazy))
        assert data.train.shape == (3, 8, 8)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "1 of 40 images are grayscale" in warnings[0] and "a00.png" in warnings[0]
    # data.channels decides, without a warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        data = load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=8, channels=1))
    assert data.train.shape == (1, 8, 8) and not caplog.records


@pytest.mark.parametrize("lazy", [False, True])
def test_mixed_sizes_without_image_size_are_refused_up_front_naming_a_file(tmp_path, lazy):
    png(tmp_path / "f" / "a.png", (20, 30))
    png(tmp_path / "f" / "b.png", (24, 16))
    with pytest.raises(DataError, match=r"b.png is 16x24 pixels but .*a.png is 30x20: images of different sizes"):
        load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=None, lazy=lazy))


# ---------------------------------------------------------------------- data.crop
def test_crop_trains_on_random_crops_of_mixed_sizes_and_evaluates_centre_crops(tmp_path):
    for i in range(24):
        png(tmp_path / "f" / f"{i:02d}.png", (20 + i % 3, 18 + 2 * (i % 4)), seed=i)
    cfg = dict(name="folder", path=str(tmp_path / "f"), image_size=None, crop=12, seed=1)
    memory, lazy = load_data(DataConfig(**cfg, lazy=False)), load_data(DataConfig(**cfg, lazy=True))
    for data in (memory, lazy):
        assert data.train.shape == (3, 12, 12) and data.augment.size == 12
        assert data.test.crop == 12 and data.test.batch(slice(None))[0].shape[1:] == (3, 12, 12)  # centre crops
    whole = memory.train.load(0, whole=True)
    top, left = (whole.shape[1] - 12) // 2, (whole.shape[2] - 12) // 2
    assert torch.equal(memory.train.load(0), whole[:, top:top + 12, left:left + 12])
    # random crops: the same for both readers, any workers, and a resumed epoch; another epoch, other crops
    reference = [torch.cat([x for x, _ in BatchSource(memory.train, 4, seed=3, augment=memory.augment).epoch(e)])
                 for e in (0, 1)]
    assert reference[0].shape[1:] == (3, 12, 12)
    for workers in (0, 2):
        source = BatchSource(lazy.train, 4, seed=3, workers=workers, augment=lazy.augment)
        assert torch.equal(torch.cat([x for x, _ in source.epoch(1)]), reference[1])
        source.close()
    order = BatchSource(memory.train, 4, seed=3).order(0)[0]
    centre = memory.train.batch(order)[0]
    assert not torch.equal(reference[0][:4], centre)
    # images of one size: evaluation sees them whole
    for i in range(12):
        png(tmp_path / "g" / f"{i}.png", (16, 20), seed=i)
    same = load_data(DataConfig(name="folder", path=str(tmp_path / "g"), image_size=None, crop=8))
    assert same.train.shape == (3, 8, 8) and same.test.shape == (3, 16, 20) and same.test.crop is None


def test_crop_is_checked_against_the_smallest_image(tmp_path):
    png(tmp_path / "f" / "big.png", (40, 40))
    png(tmp_path / "f" / "small.png", (10, 30))
    with pytest.raises(DataError, match=r"small.png is 30x10 pixels, smaller than data.crop 16"):
        load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=None, crop=16))
    with pytest.raises(DataError, match="data.crop 40 is larger than data.image_size 32"):
        load_data(DataConfig(name="digits", crop=40))
    with pytest.raises(ValueError, match="crop must be >= 1"):
        DataConfig(crop=0).validate()
    data = load_data(DataConfig(name="digits", crop=24))  # one size: train crops, whole evaluation images
    assert data.train.shape == (1, 24, 24) and data.test.shape == (1, 32, 32) and data.val.shape == (1, 32, 32)


def test_the_cli_trains_a_folder_of_mixed_sizes_with_crop(tmp_path, capsys):
    for i in range(20):
        png(tmp_path / "f" / f"{i:02d}.png", (20 + 4 * (i % 2), 24), mode="L", seed=i)
    cfg = {**TINY_RUN, "data": {"name": "folder", "path": str(tmp_path / "f"), "image_size": None, "crop": 16}}
    cfg["train"] = {**TINY_RUN["train"], "epochs": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------- validation split by default
def test_every_dataset_gets_a_validation_split_by_default(tmp_path):
    rng = np.random.default_rng(0)
    # npz without val: 5 %, stratified
    np.savez(tmp_path / "d.npz", train_images=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
             train_labels=np.arange(200) % 4, test_images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8))
    data = load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz"), image_size=8))
    assert (len(data.train), len(data.val)) == (192, 8) and len(np.unique(data.val.labels)) == 4
    # the same split every time (fixed seed), none with val_fraction: 0
    again = load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz"), image_size=8))
    assert torch.equal(data.val.images, again.val.images)
    assert load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz"), image_size=8, val_fraction=0)).val is None
    # MNIST idx files
    for prefix, n in (("train", 40), ("t10k", 4)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            with gzip.open(tmp_path / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + array.astype(np.uint8).tobytes())
    data = load_data(DataConfig(name="mnist", path=str(tmp_path)))
    assert len(data.train) + len(data.val) == 40 and len(data.val) == 10  # one per class (stratified, >= 1 each)
    # CIFAR-10 python batches
    (tmp_path / "c").mkdir()
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 2)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": [0, 1] * (n // 2)}
        (tmp_path / "c" / name).write_bytes(pickle.dumps(batch))
    data = load_data(DataConfig(name="cifar10", path=str(tmp_path / "c")))
    assert len(data.train) + len(data.val) == 20 and len(data.val) == 2


def test_tiny_training_sets_hold_out_one_image_or_none(tmp_path, caplog):
    for n in (1, 2, 3, 19):
        np.savez(tmp_path / f"{n}.npz", train_images=np.zeros((n, 8, 8), np.uint8),
                 test_images=np.zeros((2, 8, 8), np.uint8))
    with caplog.at_level(logging.WARNING):
        assert load_data(DataConfig(name="npz", path=str(tmp_path / "1.npz"), image_size=8)).val is None
    assert "too few for a validation split" in caplog.text
    for n in (2, 3, 19):
        data = load_data(DataConfig(name="npz", path=str(tmp_path / f"{n}.npz"), image_size=8))
        assert (len(data.train), len(data.val)) == (n - 1, 1)


# ---------------------------------------------------------------------- both .npz readers check the same
def test_a_lazy_npz_with_a_broken_crc_is_refused_like_the_in_memory_one(tmp_path):
    """D10: the memory-mapped reader trained on the damaged pixels of a member whose CRC is broken."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", train_images=rng.integers(0, 256, (40, 10, 10), dtype=np.uint8),
             test_images=rng.integers(0, 256, (8, 10, 10), dtype=np.uint8))
    data = bytearray((tmp_path / "d.npz").read_bytes())
    data[300] ^= 0xFF  # inside train_images' stored bytes
    (tmp_path / "d.npz").write_bytes(bytes(data))
    for lazy in (False, True):
        with pytest.raises(DataError, match="d.npz: train_images is corrupt"):
            load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz"), image_size=None, lazy=lazy))


# ---------------------------------------------------------------------- a worker's error
def test_a_corrupt_image_read_by_a_worker_is_one_line_exit_2(tmp_path, capsys):
    """D13: a lazy folder with a corrupt image in the middle and 2 workers printed the worker's traceback."""
    for i in range(32):
        png(tmp_path / "f" / "train" / f"{i:02d}.png", (16, 16), mode="L", seed=i)
    for i in range(4):
        png(tmp_path / "f" / "test" / f"{i:02d}.png", (16, 16), mode="L", seed=i)
    good = (tmp_path / "f" / "train" / "12.png").read_bytes()
    (tmp_path / "f" / "train" / "12.png").write_bytes(good[: len(good) // 2])  # the header reads, the pixels do not
    cfg = {**TINY_RUN, "data": {"name": "folder", "path": str(tmp_path / "f"), "image_size": 16, "lazy": True,
                                "workers": 2, "val_fraction": 0}}
    cfg["train"] = {**TINY_RUN["train"], "epochs": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hiervq: error: ") and "12.png: corrupt or unreadable image" in last, err
    assert "Traceback" not in err and "DataLoader worker" not in err, err
