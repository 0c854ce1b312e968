"""A corpus of bad inputs (issue 14): every one ends with exit code 2, one line on stderr that names the file or
the key, no traceback, and nothing created or changed on disk.

Each case is a function ``make(t, run) -> (argv, needle)``: it writes its bad input under the scratch folder
``t`` (generated here, nothing downloaded) and returns the command line and a string the error must contain. The
shared trained run ``run`` must come out unchanged too. All failures are found before any training step.
"""

from __future__ import annotations

import copy
import gzip
import io
import pickle
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hiervq.cli import main

from .conftest import TINY_RUN

CASES: dict = {}


def registry(cases: dict):
    """The ``@case(name)`` decorator of a corpus ``cases`` (name -> make); this module's and its siblings'."""

    def case(name: str):
        def register(make):
            assert name not in cases, name
            cases[name] = make
            return make

        return register

    return case


case = registry(CASES)


# ---------------------------------------------------------------------- helpers that write bad inputs
def tiny(**sections) -> dict:
    cfg = copy.deepcopy(TINY_RUN)
    cfg["train"]["epochs"] = 1
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def write_config(t: Path, cfg, name: str = "c.yaml") -> Path:
    path = t / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return path


def set_key(cfg: dict, key: str, value) -> dict:
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return cfg


def train_on(t: Path, name: str, path: Path, *more: str) -> list:
    """``hiervq train`` of the tiny config on the dataset ``path`` of kind ``name``."""
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", f"data.name={name}",
            "--set", f"data.path={path}", *more]


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def good_arrays(n: int = 12, channels: int | None = None) -> dict:
    rng = np.random.default_rng(0)
    shape = (n, 8, 8) if channels is None else (n, 8, 8, channels)
    return {
        "train_images": rng.integers(0, 256, shape, dtype=np.uint8),
        "train_labels": np.arange(n) % 3,
        "test_images": rng.integers(0, 256, shape[:1] + shape[1:], dtype=np.uint8)[:4],
        "test_labels": np.arange(4) % 3,
    }


def write_npz(t: Path, name: str = "d.npz", **changes) -> Path:
    arrays = good_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    path = t / name
    path.write_bytes(npz_bytes(**arrays))
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A tiny PNG whose header claims side x side pixels (over Pillow's decompression-bomb limit)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    return path


def gray_png(path: Path, side: int = 16, channels: int = 1) -> Path:
    rng = np.random.default_rng(1)
    shape = (side, side) if channels == 1 else (side, side, channels)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def float_tiff(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).random((16, 16), dtype=np.float32), "F").save(path)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def mnist_folder(t: Path, **replace: bytes) -> Path:
    """The four MNIST idx files (gzipped, small) with some replaced by ``replace[stem]`` bytes."""
    root = t / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)),
        "train-labels-idx1-ubyte": idx_bytes((np.arange(10) % 3).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, 8, 8), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx_bytes((np.arange(4) % 3).astype(np.uint8)),
    }
    for stem, data in files.items():
        (root / f"{stem}.gz").write_bytes(replace.get(stem, gzip.compress(data, mtime=0)))
    return root


def cifar_folder(t: Path, **replace: bytes) -> Path:
    root = t / "cifar"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        data = replace.get(name, pickle.dumps(batch))
        if data is not None:
            (root / name).write_bytes(data)
    return root


def copy_run(run: Path, t: Path, name: str = "run") -> Path:
    """A private copy of the trained run, with the lock file a run has beside it."""
    dst = t / name
    shutil.copytree(run, dst)
    (t / f".{name}.lock").touch()
    return dst


def copy_model(run: Path, t: Path) -> Path:
    dst = t / "model"
    shutil.copytree(run / "model", dst)
    return dst


def codes_file(t: Path, run: Path, name: str = "codes.npz", **changes) -> Path:
    """A codes file as ``hiervq encode`` writes it for 3 images of the trained run, with ``changes``."""
    rng = np.random.default_rng(0)
    arrays = {
        "level0": rng.integers(0, 32, (3, 8, 8)).astype(np.int32),
        "level1": rng.integers(0, 16, (3, 4, 4)).astype(np.int32),
        "names": np.array(["a.png", "b.png", "c.png"]),
    }
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = t / name
    path.write_bytes(npz_bytes(**arrays))
    return path


# ---------------------------------------------------------------------- config files and --set
@case("yaml-not-utf8")
def _(t, run):
    path = t / "c.yaml"
    path.write_bytes(b"train: {lr: \xff\xfe}\n")
    return ["train", path, "--out", t / "out"], "c.yaml: not UTF-8"


@case("yaml-invalid")
def _(t, run):
    return ["train", write_config(t, "train: [1, 2\n"), "--out", t / "out"], "c.yaml: invalid YAML"


@case("yaml-a-list")
def _(t, run):
    return ["train", write_config(t, "- 1\n- 2\n"), "--out", t / "out"], "c.yaml: a config must be a mapping"


@case("yaml-a-scalar")
def _(t, run):
    return ["train", write_config(t, "hello\n"), "--out", t / "out"], "c.yaml"


@case("config-is-a-folder")
def _(t, run):
    (t / "cfg.yaml").mkdir()
    return ["train", t / "cfg.yaml", "--out", t / "out"], "is a folder"


@case("config-missing")
def _(t, run):
    return ["train", t / "missing.yaml", "--out", t / "out"], "missing.yaml: no such config file"


@case("config-unknown-section")
def _(t, run):
    return ["train", write_config(t, tiny(trian={"epochs": 1})), "--out", t / "out"], "'trian'"


#: (key, value, what the message must contain): each is tried in the YAML file and as --set
BAD_VALUES = [
    ("train.epochs", "abc", "train.epochs"),
    ("train.epochs", -1, "epochs must be >= 0"),
    ("train.batch_size", 0, "batch_size must be >= 1"),
    ("train.eval_batch_size", 0, "eval_batch_size"),
    ("train.lr", 0, "lr must be > 0"),
    ("train.lr", -1e-3, "lr must be > 0"),
    ("train.lr", float("nan"), "train.lr"),
    ("train.lr", float("inf"), "train.lr"),
    ("train.lr", "fast", "train.lr"),
    ("train.weight_decay", -0.1, "weight_decay"),
    ("train.warmup_steps", -5, "warmup_steps"),
    ("train.min_lr_ratio", 2, "min_lr_ratio"),
    ("train.decay_steps", 0, "decay_steps"),
    ("train.grad_clip", -1, "grad_clip"),
    ("train.eval_every", 0, "eval_every"),
    ("train.eval_limit", 0, "eval_limit"),
    ("train.optimizer", "sgd", "optimizer"),
    ("train.schedule", "linear", "schedule"),
    ("train.betas", [0.9], "betas"),
    ("train.amp", "yes", "train.amp"),
    ("train.phases", [{"name": "nope", "epochs": 1}], "'nope'"),
    ("train.epochz", 1, "'epochz'"),
    ("data.name", "imagenet", "imagenet"),
    ("data.image_size", 0, "image_size must be >= 1"),
    ("data.image_size", -3, "image_size"),
    ("data.image_size", "big", "data.image_size"),
    ("data.fit", "crop", "fit"),
    ("data.channels", 2, "channels"),
    ("data.val_fraction", 1.5, "val_fraction"),
    ("data.val_fraction", float("nan"), "data.val_fraction"),
    ("data.train_limit", 0, "train_limit"),
    ("data.test_limit", -1, "test_limit"),
    ("data.classes", [], "classes"),
    ("data.classes", [1, 1], "classes"),
    ("data.classes", [-1], "classes"),
    ("data.name", "npz", "needs a path"),
    ("data.seed", "x", "data.seed"),
    ("seed", "abc", "seed"),
    ("seed", 1.5, "seed"),
    ("model.name", "vqgan", "vqgan"),
    ("model.channels", "wide", "model.channels"),
    ("model.levels", "x", "model.levels"),
    ("model.quantizer.estimator", "magic", "estimator"),
    ("model.quantizer.ema_decay", 1.5, "ema_decay"),
    ("model.quantizer.beta", -1, "beta"),
    ("model.quantizer.init", "zeros", "init"),
    ("model.unknown_key", 1, "'unknown_key'"),
]


def _yaml_text(value) -> str:
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and value == float("inf"):
        return ".inf"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


for _key, _value, _needle in BAD_VALUES:
    _id = f"{_key}={_yaml_text(_value)}"

    def _in_file(t, run, key=_key, value=_value, needle=_needle):
        cfg = set_key(tiny(), key, value)
        return ["train", write_config(t, cfg), "--out", t / "out"], needle

    def _in_set(t, run, key=_key, value=_value, needle=_needle):
        return ["train", write_config(t, tiny()), "--out", t / "out", "--set", f"{key}={_yaml_text(value)}"], needle

    case(f"file:{_id}")(_in_file)
    case(f"set:{_id}")(_in_set)


@case("set-without-equals")
def _(t, run):
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", "trainepochs"], "expected key=value"


@case("set-empty-key-part")
def _(t, run):
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", "train..lr=1"], "empty key component"


@case("set-list-index-out-of-range")
def _(t, run):
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", "model.levels.9.dim=3"], "model.levels.9"


@case("set-under-a-scalar")
def _(t, run):
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", "seed.x=1"], "seed.x"


# ---------------------------------------------------------------------- .npz datasets
@case("npz-text-file")
def _(t, run):
    (t / "d.npz").write_text("this is not an archive\n")
    return train_on(t, "npz", t / "d.npz"), "d.npz: not a .npz archive"


@case("npz-empty-file")
def _(t, run):
    (t / "d.npz").write_bytes(b"")
    return train_on(t, "npz", t / "d.npz"), "d.npz: not a .npz archive"


@case("npz-truncated")
def _(t, run):
    data = npz_bytes(**good_arrays())
    (t / "d.npz").write_bytes(data[: len(data) // 2])
    return train_on(t, "npz", t / "d.npz"), "d.npz"


@case("npz-crc-broken")
def _(t, run):
    data = bytearray(npz_bytes(**good_arrays()))
    data[200] ^= 0xFF  # inside train_images' stored bytes
    (t / "d.npz").write_bytes(bytes(data))
    return train_on(t, "npz", t / "d.npz"), "d.npz: train_images is corrupt"


@case("npz-deflate-broken")
def _(t, run):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **good_arrays(200))
    data = bytearray(buffer.getvalue())
    for i in range(120, 400):
        data[i] ^= 0x5A
    (t / "d.npz").write_bytes(bytes(data))
    return train_on(t, "npz", t / "d.npz"), "d.npz"


@case("npz-pickled-objects")
def _(t, run):
    arrays = good_arrays()
    arrays["train_images"] = np.array([object()] * 3, dtype=object)
    (t / "d.npz").write_bytes(npz_bytes(**arrays))
    return train_on(t, "npz", t / "d.npz"), "train_images holds Python objects"


@case("npz-no-train-images")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_images=None, train_labels=None)), "no train_images"


@case("npz-float-images")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_images=np.zeros((12, 8, 8), np.float32))), "train_images"


@case("npz-images-2d")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_images=np.zeros((12, 64), np.uint8))), "train_images"


@case("npz-5-channels")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_images=np.zeros((12, 8, 8, 5), np.uint8))), "5 channels"


@case("npz-2-channels")
def _(t, run):
    return train_on(t, "npz", write_npz(t, test_images=np.zeros((4, 8, 8, 2), np.uint8))), "test_images"


@case("npz-labels-nan")
def _(t, run):
    labels = np.array([0, 1, np.nan, 2] * 3)
    return train_on(t, "npz", write_npz(t, train_labels=labels)), "d.npz: train_labels"


@case("npz-labels-fractional")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_labels=np.full(12, 0.5))), "train_labels"


@case("npz-labels-strings")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_labels=np.array(["cat"] * 12))), "train_labels"


@case("npz-labels-negative")
def _(t, run):
    return train_on(t, "npz", write_npz(t, test_labels=np.array([0, -1, 1, 2]))), "test_labels"


@case("npz-labels-count")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_labels=np.arange(11) % 3)), "train_labels"


@case("npz-labels-2d")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_labels=np.zeros((12, 3), np.int64))), "train_labels"


@case("npz-labels-without-images")
def _(t, run):
    return train_on(t, "npz", write_npz(t, val_labels=np.arange(3))), "val_labels"


@case("npz-empty-test-split")
def _(t, run):
    return train_on(t, "npz", write_npz(t, test_images=np.zeros((0, 8, 8), np.uint8),
                                         test_labels=np.zeros(0, np.int64))), "test split has no images"


@case("npz-empty-train-split")
def _(t, run):
    return train_on(t, "npz", write_npz(t, train_images=np.zeros((0, 8, 8), np.uint8),
                                         train_labels=np.zeros(0, np.int64))), "train split has no images"


@case("npz-classes-not-in-data")
def _(t, run):
    return train_on(t, "npz", write_npz(t), "--set", "data.classes=[7]"), "has no images"


@case("npz-class-names-too-few")
def _(t, run):
    return train_on(t, "npz", write_npz(t, class_names=np.array(["a", "b"])), "--set", "data.classes=[2]"), "classes"


@case("npz-path-is-a-folder")
def _(t, run):
    (t / "d.npz").mkdir()
    return train_on(t, "npz", t / "d.npz"), "d.npz: is a folder"


@case("npz-missing")
def _(t, run):
    return train_on(t, "npz", t / "nothing.npz"), "nothing.npz"


# ---------------------------------------------------------------------- MNIST idx files
@case("mnist-gz-corrupt-deflate")
def _(t, run):
    data = bytearray(gzip.compress(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()))
    for i in range(20, 60):
        data[i] ^= 0xFF
    return train_on(t, "mnist", mnist_folder(t, **{"train-images-idx3-ubyte": bytes(data)})), "train-images-idx3-ubyte.gz"


@case("mnist-gz-truncated")
def _(t, run):
    data = gzip.compress(idx_bytes(np.zeros((10, 8, 8), np.uint8)))
    root = mnist_folder(t, **{"t10k-labels-idx1-ubyte": data[: len(data) // 2]})
    return train_on(t, "mnist", root), "t10k-labels-idx1-ubyte.gz: truncated gzip"


@case("mnist-gz-not-gzip")
def _(t, run):
    root = mnist_folder(t, **{"train-labels-idx1-ubyte": b"plain text, not gzip\n"})
    return train_on(t, "mnist", root), "train-labels-idx1-ubyte.gz: corrupt gzip"


@case("mnist-idx-bad-magic")
def _(t, run):
    root = mnist_folder(t, **{"train-images-idx3-ubyte": gzip.compress(b"\x01\x02\x03\x04" + bytes(100))})
    return train_on(t, "mnist", root), "bad magic"


@case("mnist-idx-too-short")
def _(t, run):
    root = mnist_folder(t, **{"train-images-idx3-ubyte": gzip.compress(b"\x00\x00")})
    return train_on(t, "mnist", root), "too short"


@case("mnist-idx-wrong-length")
def _(t, run):
    data = idx_bytes(np.zeros((10, 8, 8), np.uint8))[:-7]
    return train_on(t, "mnist", mnist_folder(t, **{"train-images-idx3-ubyte": gzip.compress(data)})), "header says"


@case("mnist-label-count")
def _(t, run):
    data = idx_bytes(np.zeros(9, np.uint8))
    return train_on(t, "mnist", mnist_folder(t, **{"train-labels-idx1-ubyte": gzip.compress(data)})), "labels"


@case("mnist-missing-file")
def _(t, run):
    root = mnist_folder(t)
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    return train_on(t, "mnist", root), "t10k-images-idx3-ubyte"


# ---------------------------------------------------------------------- CIFAR-10 batches
class _Evil:
    def __reduce__(self):
        return (time.sleep, (0,))


@case("cifar-garbage")
def _(t, run):
    return train_on(t, "cifar10", cifar_folder(t, data_batch_1=b"\x80\x04garbage")), "data_batch_1: corrupt CIFAR-10"


@case("cifar-forbidden-class")
def _(t, run):
    return train_on(t, "cifar10", cifar_folder(t, data_batch_2=pickle.dumps(_Evil()))), "data_batch_2"


@case("cifar-not-a-dict")
def _(t, run):
    return train_on(t, "cifar10", cifar_folder(t, test_batch=pickle.dumps([1, 2, 3]))), "test_batch: not a CIFAR-10"


@case("cifar-wrong-row-length")
def _(t, run):
    batch = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    return train_on(t, "cifar10", cifar_folder(t, data_batch_3=batch)), "data_batch_3: expected (N, 3072)"


@case("cifar-labels-nan")
def _(t, run):
    batch = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.0, float("nan")]})
    return train_on(t, "cifar10", cifar_folder(t, data_batch_4=batch)), "data_batch_4"


@case("cifar-missing-batch")
def _(t, run):
    return train_on(t, "cifar10", cifar_folder(t, data_batch_5=None)), "data_batch_5"


# ---------------------------------------------------------------------- image folders
@case("folder-corrupt-png")
def _(t, run):
    (t / "imgs").mkdir()
    gray_png(t / "imgs" / "a.png")
    (t / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return train_on(t, "folder", t / "imgs"), "b.png: corrupt or unreadable"


@case("folder-empty")
def _(t, run):
    (t / "imgs").mkdir()
    return train_on(t, "folder", t / "imgs"), "no images found"


@case("folder-decompression-bomb")
def _(t, run):
    (t / "imgs").mkdir()
    bomb_png(t / "imgs" / "a.png")
    return train_on(t, "folder", t / "imgs"), "a.png: image too large"


@case("folder-float-tiff")
def _(t, run):
    (t / "imgs").mkdir()
    float_tiff(t / "imgs" / "a.tiff")
    return train_on(t, "folder", t / "imgs"), "a.tiff: 32-bit float"


def mixed_sizes(folder: Path) -> Path:
    """A folder of two grayscale PNGs of different sizes: a.png 16x16, b.png 12x12."""
    folder.mkdir()
    gray_png(folder / "a.png", 16)
    gray_png(folder / "b.png", 12)
    return folder


@case("folder-mixed-sizes")
def _(t, run):
    mixed_sizes(t / "imgs")
    return train_on(t, "folder", t / "imgs", "--set", "data.image_size=null"), "b.png is 12x12 pixels but"


@case("folder-mixed-sizes-lazy")
def _(t, run):
    mixed_sizes(t / "imgs")
    return train_on(t, "folder", t / "imgs", "--set", "data.image_size=null", "--set", "data.lazy=true"), \
        "b.png is 12x12 pixels but"


@case("folder-crop-larger-than-an-image")
def _(t, run):
    mixed_sizes(t / "imgs")
    return train_on(t, "folder", t / "imgs", "--set", "data.image_size=null", "--set", "data.crop=14"), \
        "b.png is 12x12 pixels, smaller than data.crop 14"


@case("folder-test-without-train")
def _(t, run):
    (t / "imgs" / "test").mkdir(parents=True)
    gray_png(t / "imgs" / "test" / "a.png")
    return train_on(t, "folder", t / "imgs"), "has test/ but no train/"


@case("folder-labels-image-outside-a-class")
def _(t, run):
    (t / "imgs" / "cat").mkdir(parents=True)
    gray_png(t / "imgs" / "cat" / "a.png")
    gray_png(t / "imgs" / "b.png")
    return train_on(t, "folder", t / "imgs", "--set", "data.labels=folders"), "b.png: data.labels: folders"


@case("npz-crc-broken-lazy")
def _(t, run):
    data = bytearray(npz_bytes(**good_arrays()))
    data[200] ^= 0xFF  # inside train_images' stored bytes
    (t / "d.npz").write_bytes(bytes(data))
    return train_on(t, "npz", t / "d.npz", "--set", "data.lazy=true"), "d.npz: train_images is corrupt"


# ---------------------------------------------------------------------- --out
@case("out-under-a-file")
def _(t, run):
    (t / "notes.txt").write_text("mine")
    return ["train", write_config(t, tiny()), "--out", t / "notes.txt" / "run"], "notes.txt is a file"


@case("out-is-a-file")
def _(t, run):
    (t / "notes.txt").write_text("mine")
    return ["train", write_config(t, tiny()), "--out", t / "notes.txt"], "is a file"


@case("out-exists")
def _(t, run):
    (t / "out").mkdir()
    (t / "out" / "x").write_text("mine")
    return ["train", write_config(t, tiny()), "--out", t / "out"], "already exists"


@case("out-overwrite-foreign")
def _(t, run):
    (t / "out").mkdir()
    (t / "out" / "x").write_text("mine")
    return ["train", write_config(t, tiny()), "--out", t / "out", "--overwrite"], "not a hiervq"


# ---------------------------------------------------------------------- --resume
@case("resume-not-a-run")
def _(t, run):
    (t / "r").mkdir()
    return ["train", "--resume", t / "r"], "not a run directory"


@case("resume-with-config")
def _(t, run):
    return ["train", write_config(t, tiny()), "--resume", copy_run(run, t)], "not both"


@case("resume-model-mismatch")
def _(t, run):
    r = copy_run(run, t)
    cfg = yaml.safe_load((r / "config.yaml").read_text())
    cfg["model"]["channels"] = 8
    (r / "config.yaml").write_text(yaml.safe_dump(cfg))
    return ["train", "--resume", r], "shape encoders.0.net.0.weight (8, 1, 4, 4) vs (4, 1, 4, 4)"  # vqvae2 widths: a /2 level halves its strided conv


@case("resume-set-mismatch")
def _(t, run):
    return ["train", "--resume", copy_run(run, t), "--set", "model.levels.0.codebook_size=64"], "last.pt does not match"


@case("resume-set-bad-value")
def _(t, run):
    return ["train", "--resume", copy_run(run, t), "--set", "train.lr=-1"], "--set train.lr=-1"


@case("resume-checkpoint-truncated")
def _(t, run):
    r = copy_run(run, t)
    ckpt = r / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    return ["train", "--resume", r], "last.pt: corrupt checkpoint"


@case("resume-checkpoint-garbage")
def _(t, run):
    r = copy_run(run, t)
    (r / "checkpoints" / "last.pt").write_bytes(b"garbage" * 100)
    return ["train", "--resume", r], "last.pt: corrupt checkpoint"


@case("resume-checkpoint-not-a-dict")
def _(t, run):
    r = copy_run(run, t)
    torch.save([1, 2, 3], r / "checkpoints" / "last.pt")
    return ["train", "--resume", r], "last.pt: not a hiervq training checkpoint"


@case("resume-config-not-utf8")
def _(t, run):
    r = copy_run(run, t)
    (r / "config.yaml").write_bytes(b"seed: \xff\n")
    return ["train", "--resume", r], "config.yaml: not UTF-8"


@case("resume-folder-hiervq-did-not-start")
def _(t, run):
    (t / "r").mkdir()
    (t / "r" / "config.yaml").write_text(yaml.safe_dump(tiny()))
    return ["train", "--resume", t / "r"], "nothing to resume"


# ---------------------------------------------------------------------- saved models (eval, encode, decode)
def nan_model(run: Path, t: Path) -> Path:
    from safetensors.torch import load_file, save_file

    model = copy_model(run, t)
    state = load_file(str(model / "model.safetensors"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, str(model / "model.safetensors"))
    return model


@case("encode-nan-weights")
def _(t, run):
    return ["encode", nan_model(run, t), gray_png(t / "a.png"), "-o", t / "c.npz"], "non-finite"


@case("eval-nan-weights")
def _(t, run):
    r = copy_run(run, t)
    shutil.rmtree(r / "model")
    shutil.copytree(nan_model(run, t), r / "model")
    return ["eval", r], "model.safetensors: non-finite"


@case("decode-nan-weights")
def _(t, run):
    return ["decode", nan_model(run, t), codes_file(t, run), "-o", t / "dec"], "non-finite"


@case("model-weights-truncated")
def _(t, run):
    model = copy_model(run, t)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "model.safetensors: corrupt weights"


@case("model-weights-missing")
def _(t, run):
    model = copy_model(run, t)
    (model / "model.safetensors").unlink()
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "missing weights"


@case("model-config-corrupt")
def _(t, run):
    model = copy_model(run, t)
    (model / "config.json").write_text("{not json")
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "config.json: corrupt"


@case("model-config-a-list")
def _(t, run):
    model = copy_model(run, t)
    (model / "config.json").write_text("[1, 2]")
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "not a hiervq model config"


@case("model-config-mismatch")
def _(t, run):
    import json

    model = copy_model(run, t)
    meta = json.loads((model / "config.json").read_text())
    meta["config"]["channels"] = 8
    (model / "config.json").write_text(json.dumps(meta))
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "does not match"


@case("model-unknown-kind")
def _(t, run):
    import json

    model = copy_model(run, t)
    meta = json.loads((model / "config.json").read_text())
    meta["model"] = "vqgan"
    (model / "config.json").write_text(json.dumps(meta))
    return ["encode", model, gray_png(t / "a.png"), "-o", t / "c.npz"], "vqgan"


@case("model-not-a-model")
def _(t, run):
    (t / "empty").mkdir()
    return ["encode", t / "empty", gray_png(t / "a.png"), "-o", t / "c.npz"], "not a saved model"


# ---------------------------------------------------------------------- encode
@case("compress-without-priors")
def _(t, run):
    return ["compress", run, gray_png(t / "a.png"), "-o", t / "out"], "--level all` first"


@case("compress-two-images-to-one-file")
def _(t, run):
    return ["compress", run, gray_png(t / "a.png"), gray_png(t / "b.png"), "-o", t / "x.hvq"], "holds one image"


@case("compress-over-an-existing-file")
def _(t, run):
    (t / "out").mkdir()
    (t / "out" / "a.hvq").write_bytes(b"mine")
    return ["compress", run, gray_png(t / "a.png"), "-o", t / "out"], "a.hvq already exists"


@case("compress-batch-size-zero")
def _(t, run):
    return ["compress", run, gray_png(t / "a.png"), "--batch-size", "0"], "--batch-size"


def hvq_file(path: Path, cut: int = 0, flip: int | None = None) -> Path:
    """A well-formed .hvq file (of no model in particular), cut short by ``cut`` bytes or with bit ``flip`` flipped."""
    from hiervq.codec import Header, pack

    data = bytearray(pack(Header(b"abcd", (16, 16)), bytes(range(40))))
    if flip is not None:
        data[flip // 8] ^= 1 << (flip % 8)
    path.write_bytes(bytes(data[: len(data) - cut]))
    return path


@case("decompress-a-png")
def _(t, run):
    (t / "a.hvq").write_bytes(gray_png(t / "a.png").read_bytes())
    return ["decompress", run, t / "a.hvq", "-o", t / "dec"], "a.hvq: not a hiervq compressed file"


@case("decompress-truncated")
def _(t, run):
    # the payload runs to the end of the file (format version 3): the CRC-32 finds the cut
    return (["decompress", run, hvq_file(t / "a.hvq", cut=3), "-o", t / "dec"],
            "a.hvq: corrupt (CRC-32 mismatch: the file was damaged or cut short)")


@case("decompress-bit-flip")
def _(t, run):
    return ["decompress", run, hvq_file(t / "a.hvq", flip=8 * 30 + 2), "-o", t / "dec"], "a.hvq: corrupt"


@case("decompress-folder-without-files")
def _(t, run):
    (t / "empty").mkdir()
    return ["decompress", run, t / "empty", "-o", t / "dec"], "no .hvq files"


@case("decompress-without-priors")
def _(t, run):
    return ["decompress", run, hvq_file(t / "a.hvq"), "-o", t / "dec"], "--level all` first"


@case("encode-missing-image")
def _(t, run):
    return ["encode", run, t / "nothing.png", "-o", t / "c.npz"], "nothing.png: no such file"


@case("encode-corrupt-png")
def _(t, run):
    (t / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return ["encode", run, t / "a.png", "-o", t / "c.npz"], "a.png: corrupt or unreadable"


@case("encode-truncated-png")
def _(t, run):
    data = gray_png(t / "full.png", 64).read_bytes()
    (t / "a.png").write_bytes(data[: len(data) // 2])
    return ["encode", run, t / "a.png", "-o", t / "c.npz"], "a.png"


@case("encode-decompression-bomb")
def _(t, run):
    return ["encode", run, bomb_png(t / "a.png"), "-o", t / "c.npz"], "a.png: image too large"


@case("encode-float-tiff")
def _(t, run):
    return ["encode", run, float_tiff(t / "a.tiff"), "-o", t / "c.npz"], "a.tiff: 32-bit float"


@case("encode-rgb-for-a-gray-model")
def _(t, run):
    return ["encode", run, gray_png(t / "a.png", channels=3), "-o", t / "c.npz"], "a.png: image has 3 channels"


@case("encode-batch-size-0")
def _(t, run):
    return ["encode", run, gray_png(t / "a.png"), "-o", t / "c.npz", "--batch-size", "0"], "--batch-size"


@case("encode-batch-size-negative")
def _(t, run):
    return ["encode", run, gray_png(t / "a.png"), "-o", t / "c.npz", "--batch-size", "-4"], "--batch-size"


@case("encode-output-is-a-folder")
def _(t, run):
    (t / "codes").mkdir()
    return ["encode", run, gray_png(t / "a.png"), "-o", t / "codes"], "codes: is a folder"


@case("encode-output-under-a-file")
def _(t, run):
    (t / "notes.txt").write_text("mine")
    return ["encode", run, gray_png(t / "a.png"), "-o", t / "notes.txt" / "c.npz"], "notes.txt is a file"


@case("encode-empty-folder")
def _(t, run):
    (t / "imgs").mkdir()
    return ["encode", run, t / "imgs", "-o", t / "c.npz"], "imgs: no images found"


@case("encode-mixed-sizes")
def _(t, run):
    (t / "imgs").mkdir()
    gray_png(t / "imgs" / "a.png", 16)
    gray_png(t / "imgs" / "b.png", 24)
    return ["encode", run, t / "imgs", "-o", t / "c.npz"], "each size in its own call"


@case("encode-resize-and-keep-size")
def _(t, run):
    return ["encode", run, gray_png(t / "a.png"), "-o", t / "c.npz", "--resize", "--keep-size"], "contradict"


@case("decode-bad-image-sizes")
def _(t, run):
    return ["decode", run, codes_file(t, run, image_sizes=np.zeros((3, 3), dtype=np.int32)), "-o", t / "dec"], "image_sizes"


# ---------------------------------------------------------------------- decode
@case("decode-float-codes")
def _(t, run):
    return ["decode", run, codes_file(t, run, level0=np.full((3, 8, 8), 1.5)), "-o", t / "dec"], "level0 holds float64"


@case("decode-bool-codes")
def _(t, run):
    return ["decode", run, codes_file(t, run, level1=np.zeros((3, 4, 4), bool)), "-o", t / "dec"], "level1 holds bool"


@case("decode-text-file")
def _(t, run):
    (t / "codes.npz").write_text("level0,level1\n")
    return ["decode", run, t / "codes.npz", "-o", t / "dec"], "codes.npz: not a codes file"


@case("decode-truncated")
def _(t, run):
    path = codes_file(t, run)
    path.write_bytes(path.read_bytes()[:300])
    return ["decode", run, path, "-o", t / "dec"], "codes.npz"


@case("decode-missing")
def _(t, run):
    return ["decode", run, t / "none.npz", "-o", t / "dec"], "none.npz: no such file"


@case("decode-no-levels")
def _(t, run):
    return ["decode", run, codes_file(t, run, level0=None, level1=None), "-o", t / "dec"], "no level0"


@case("decode-names-short")
def _(t, run):
    return ["decode", run, codes_file(t, run, names=np.array(["a.png"])), "-o", t / "dec"], "names has 1 entries"


@case("decode-names-long")
def _(t, run):
    names = np.array([f"{i}.png" for i in range(5)])
    return ["decode", run, codes_file(t, run, names=names), "-o", t / "dec"], "names has 5 entries"


@case("decode-names-clash")
def _(t, run):
    names = np.array(["a.png", "a.jpg", "b.png"])
    return ["decode", run, codes_file(t, run, names=names), "-o", t / "dec"], "another image"


@case("decode-names-pickled")
def _(t, run):
    names = np.array([object(), object(), object()], dtype=object)
    return ["decode", run, codes_file(t, run, names=names), "-o", t / "dec"], "names holds Python objects"


@case("decode-one-level-missing")
def _(t, run):
    return ["decode", run, codes_file(t, run, level1=None), "-o", t / "dec"], "codes do not fit"


@case("decode-code-out-of-range")
def _(t, run):
    return ["decode", run, codes_file(t, run, level0=np.full((3, 8, 8), 999)), "-o", t / "dec"], "codes do not fit"


@case("decode-negative-code")
def _(t, run):
    return ["decode", run, codes_file(t, run, level1=np.full((3, 4, 4), -1)), "-o", t / "dec"], "codes do not fit"


@case("decode-wrong-grid")
def _(t, run):
    return ["decode", run, codes_file(t, run, level1=np.zeros((3, 5, 4), np.int32)), "-o", t / "dec"], "codes.npz"


@case("decode-levels-disagree-on-count")
def _(t, run):
    return ["decode", run, codes_file(t, run, level1=np.zeros((2, 4, 4), np.int32)), "-o", t / "dec"], "level1 has shape"


@case("decode-output-is-a-file")
def _(t, run):
    (t / "dec").write_text("mine")
    return ["decode", run, codes_file(t, run), "-o", t / "dec"], "is a file, not a folder"


@case("decode-existing-png")
def _(t, run):
    (t / "dec").mkdir()
    (t / "dec" / "b.png").write_bytes(b"my photo")
    return ["decode", run, codes_file(t, run), "-o", t / "dec"], "b.png already exists"


# ---------------------------------------------------------------------- eval
@case("eval-not-a-run")
def _(t, run):
    (t / "r").mkdir()
    return ["eval", t / "r"], "not a saved model"


@case("eval-data-corrupt")
def _(t, run):
    (t / "d.npz").write_bytes(b"PK\x03\x04 truncated")
    return ["eval", run, "--data", t / "d.npz"], "d.npz"


@case("eval-data-wrong-channels")
def _(t, run):
    arrays = good_arrays(channels=3)
    (t / "d.npz").write_bytes(npz_bytes(**arrays))
    return ["eval", run, "--data", t / "d.npz"], "d.npz: 3-channel images"


@case("eval-output-is-a-folder")
def _(t, run):
    (t / "res").mkdir()
    return ["eval", run, "-o", t / "res"], "res: is a folder"


@case("eval-no-val-split")
def _(t, run):
    return ["eval", run, "--split", "val", "--set", "data.val_fraction=0"], "no val split"


@case("eval-set-bad-value")
def _(t, run):
    return ["eval", run, "--set", "data.image_size=0"], "image_size"


@case("eval-config-corrupt")
def _(t, run):
    r = copy_run(run, t)
    (r / "config.yaml").write_text("data: [unclosed\n")
    return ["eval", r], "config.yaml: invalid YAML"


# ---------------------------------------------------------------------- prior
@case("prior-set-unknown-key")
def _(t, run):
    return ["prior", run, "--level", "0", "--out", t / "p", "--set", "train.epochz=1"], "--set train.epochz=1"


@case("prior-set-nan")
def _(t, run):
    return ["prior", run, "--level", "0", "--out", t / "p", "--set", "train.lr=.nan"], "--set train.lr=.nan"


@case("prior-set-model-key")
def _(t, run):
    return ["prior", run, "--level", "0", "--out", t / "p", "--set", "model.layerz=2"], "'layerz'"


# ---------------------------------------------------------------------- the test
def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (folders, lock files, empty files): its bytes, or None for a folder."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    cfg = write_config(root, tiny())
    assert main(["train", str(cfg), "--out", str(root / "run")]) == 0
    return root / "run", snapshot(root)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, trained, tmp_path, capsys, monkeypatch):
    run, run_snapshot = trained
    monkeypatch.chdir(tmp_path)  # default outputs (codes.npz, decoded/, runs/) would land here
    t = tmp_path / "w"
    t.mkdir()
    argv, needle = CASES[name](t, run)
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hiervq: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert needle in err, err
    assert snapshot(tmp_path) == before, "the failed command changed the scratch folder"
    assert snapshot(run.parent) == run_snapshot, "the failed command changed the trained run"


# ---------------------------------------------------------------------- silently wrong, now loud or right
def test_divergence_stops_at_the_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    from hiervq.errors import DivergedError
    from hiervq.train import config_from_dict, train_run
    from hiervq.train.checkpoint import load_checkpoint

    cfg = tiny()
    cfg["train"]["epochs"] = 2

    def poison(trainer, record):  # after epoch 1 (6 steps) is saved, a weight goes NaN
        if record["epoch"] == 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    with pytest.raises(DivergedError, match=r"diverged at step 7 \(epoch 2, phase all\).*last.pt \(step 6\) is kept"):
        train_run(config_from_dict(cfg, "tiny"), tmp_path / "run", callbacks=[poison])
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 6 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "model").exists()


def test_a_huge_learning_rate_exits_2_without_nan_on_disk(tmp_path, capsys):
    code = main(["train", str(write_config(tmp_path, tiny())), "--out", str(tmp_path / "run"), "--set", "train.lr=1e3"])
    err = capsys.readouterr().err
    # stderr also holds the run's log lines (model, data) before the one-line error that ends it
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("hiervq: error: training diverged at step") and err.count("hiervq:") == 1, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".hiervq-run", "config.yaml"]


def test_strict_json_and_no_nan_weights(tmp_path):
    from hiervq.errors import CheckpointError, HierVQError
    from hiervq.pretrained import build
    from hiervq.train.report import write_json

    with pytest.raises(HierVQError, match="mse"):
        write_json(tmp_path / "s.json", {"mse": float("nan")})
    assert not (tmp_path / "s.json").exists()
    params = {k: v for k, v in TINY_RUN["model"].items() if k != "name"}
    model = build("hvqvae", dict(params, in_channels=1, image_size=16))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(CheckpointError, match="non-finite"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_encode_checks_dtype_range_and_finiteness(trained):
    from hiervq import load
    from hiervq.errors import DataError

    model = load(trained[0])
    x = torch.rand(2, 1, 16, 16)
    assert len(model.encode(x)) == 2
    with pytest.raises(DataError, match="floating point"):
        model.encode((x * 255).to(torch.uint8))
    with pytest.raises(DataError, match="divide 0-255 images by 255"):
        model.encode(x * 255)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="non-finite"):
        model.encode(x)


def test_16_bit_png_is_scaled_and_read_as_one_channel(tmp_path):
    from hiervq.data import read_image

    values = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    arr = read_image(tmp_path / "g.png")
    assert arr.shape == (2, 2, 1) and arr[..., 0].tolist() == [[0, 255], [128, 1]]
    assert read_image(tmp_path / "g.png", mode="RGB")[0, 1].tolist() == [255, 255, 255]


def test_labels_stored_as_whole_floats_are_accepted(tmp_path):
    from hiervq.data import read_npz

    path = write_npz(tmp_path, train_labels=(np.arange(12) % 3).astype(np.float32))
    assert read_npz(path)["train"].labels.dtype == np.int64


def test_resume_with_set_saves_the_config_that_ran(trained, tmp_path, capsys):
    r = copy_run(trained[0], tmp_path)
    assert main(["train", "--resume", str(r), "--set", "train.epochs=2"]) == 0
    assert yaml.safe_load((r / "config.yaml").read_text())["train"]["epochs"] == 2
    assert [rec["epoch"] for rec in map(yaml.safe_load, (r / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_a_run_interrupted_before_its_first_checkpoint_resumes_from_scratch(tmp_path, capsys, monkeypatch):
    from hiervq.train import trainer

    def interrupt(self, model, data, resume=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(trainer.Trainer, "fit", interrupt)
        code = main(["train", str(write_config(tmp_path, tiny())), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 130 and f"--resume {tmp_path / 'run'}`" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert "starting the run from the beginning" in capsys.readouterr().err  # a log line: stderr
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_checkpoint_write_that_fails_names_the_path(tmp_path, capsys, monkeypatch):
    import errno
    import os

    replace = os.replace

    def too_large(src, dst):
        if str(dst).endswith("last.pt"):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", too_large)
    code = main(["train", str(write_config(tmp_path, tiny())), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write {tmp_path / 'run' / 'checkpoints' / 'last.pt'}: File too large" in err, err
    assert err.splitlines()[-1].startswith("hiervq: error: cannot write")  # after the epoch's progress line
    assert os.listdir(tmp_path / "run" / "checkpoints") == []  # no temp file left behind
