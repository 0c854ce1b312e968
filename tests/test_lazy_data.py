"""Data that does not fit in memory (issue 18): image folders and uncompressed .npz archives read on access
(`data.lazy`), served by the one batch source (DataLoader workers, seeded augmentation); exact resume, DDP under
torchrun, the 256x256 recipe."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from hiervq.data import (
    AugmentConfig,
    BatchSource,
    DataConfig,
    LazyImageSet,
    augment_image,
    image_seed,
    join_sets,
    load_data,
)
from hiervq.errors import DataError
from hiervq.train import config_from_dict, load_checkpoint, train_run

from .conftest import TINY_RUN

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def png_folder(root: Path, n: int, size: tuple[int, int] = (12, 10), classes: int = 0, seed: int = 0) -> Path:
    """``n`` random RGB PNGs of ``size`` (h, w): flat, or spread over ``classes`` sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / f"class{i % classes}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        # smooth-ish images (a random gradient plus noise): the model has something to learn
        base = np.linspace(0, 1, size[1])[None, :, None] * rng.integers(0, 200, (1, 1, 3))
        noise = rng.integers(0, 56, (size[0], size[1], 3))
        Image.fromarray((base + noise).astype(np.uint8)).save(folder / f"img{i:04d}.png")
    return root


def folder_run_config(path: Path, **data) -> dict:
    config = copy.deepcopy(TINY_RUN)
    config["data"] = {"name": "folder", "path": str(path), "image_size": 16, **data}
    config["train"].update(batch_size=8, eval_batch_size=8)
    return config


def same_splits(a, b) -> None:
    for key in ("train", "val", "test"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is None:
            continue
        assert len(x) == len(y) and x.shape == y.shape and x.class_names == y.class_names, key
        assert (x.labels is None) == (y.labels is None), key
        if x.labels is not None:
            assert torch.equal(x.labels, y.labels), key
        xa, _ = x.batch(torch.arange(len(x)))
        xb, _ = y.batch(torch.arange(len(y)))
        assert torch.equal(xa, xb), key


# ---------------------------------------------------------------------- reading on access
@pytest.mark.parametrize("fit,channels", [("resize", None), ("resize", 1), ("pad", 3)])
def test_lazy_folder_gives_the_in_memory_splits_and_pixels(tmp_path, fit, channels):
    png_folder(tmp_path / "f", 30, size=(12, 10), classes=3)
    size = 16 if fit == "pad" else 8
    base = dict(name="folder", path=str(tmp_path / "f"), image_size=size, fit=fit, channels=channels,
                labels="folders", val_fraction=0.2, train_limit=15, seed=3)
    lazy = load_data(DataConfig(**base, lazy=True))
    memory = load_data(DataConfig(**base, lazy=False))
    assert lazy.lazy and not memory.lazy
    assert isinstance(lazy.train, LazyImageSet) and not hasattr(lazy.train, "images")
    assert lazy.train.class_names == ["class0", "class1", "class2"]
    same_splits(lazy, memory)
    # every split as one set (`hiervq eval --split all`): positions into the one folder, the same images
    joined = join_sets([lazy.train, lazy.val, lazy.test])
    assert isinstance(joined, LazyImageSet) and joined.source is lazy.train.source
    expected = join_sets([memory.train, memory.val, memory.test])
    assert torch.equal(joined.batch(slice(None))[0], expected.batch(slice(None))[0])
    assert torch.equal(joined.labels, expected.labels)
    # data.classes selects and relabels the same images
    picked = dict(base, classes=[2, 0])
    same_splits(load_data(DataConfig(**picked, lazy=True)), load_data(DataConfig(**picked, lazy=False)))


def test_lazy_auto_reads_a_folder_on_access_only_above_the_memory_limit(tmp_path):
    png_folder(tmp_path / "f", 12, size=(16, 16))
    small = load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=16))
    assert not small.lazy  # 12 x 768 bytes: in memory by default
    big = load_data(DataConfig(name="folder", path=str(tmp_path / "f"), image_size=16, memory_limit_mb=0.005))
    assert big.lazy  # 9 KB decoded > 5 KB
    same_splits(small, big)
    with pytest.raises(DataError, match="data.lazy: true reads a folder of images or an .npz"):
        load_data(DataConfig(name="digits", lazy=True))


def npz_file(path: Path, compressed: bool) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(train_images=rng.integers(0, 256, (40, 10, 10), dtype=np.uint8), train_labels=np.arange(40) % 4,
                  test_images=rng.integers(0, 256, (12, 10, 10), dtype=np.uint8), test_labels=np.arange(12) % 4)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_uncompressed_npz_is_memory_mapped_and_equals_the_in_memory_read(tmp_path):
    from hiervq.data import npz_memmap

    path = npz_file(tmp_path / "plain.npz", compressed=False)
    mapped = npz_memmap(path, "train_images")
    assert isinstance(mapped, np.memmap) and mapped.shape == (40, 10, 10)
    with np.load(path) as archive:
        assert np.array_equal(mapped, archive["train_images"])
    base = dict(name="npz", path=str(path), image_size=16, fit="pad", channels=3, classes=[3, 1], val_fraction=0.25)
    lazy = load_data(DataConfig(**base, lazy=True))
    assert lazy.lazy
    memory = load_data(DataConfig(**base, lazy=False))
    same_splits(lazy, memory)
    # train and test are separate arrays: joined, they are read from each in turn
    joined = join_sets([lazy.train, lazy.test])
    assert torch.equal(joined.batch(slice(None))[0], join_sets([memory.train, memory.test]).batch(slice(None))[0])


def test_compressed_npz_cannot_be_mapped_and_says_so(tmp_path, capsys):
    from hiervq.data import npz_memmap

    path = npz_file(tmp_path / "packed.npz", compressed=True)
    assert npz_memmap(path, "train_images") is None
    with pytest.raises(DataError, match=r"train_images, test_images are compressed \(np.savez_compressed\).*np.savez"):
        load_data(DataConfig(name="npz", path=str(path), lazy=True))
    assert not load_data(DataConfig(name="npz", path=str(path))).lazy  # small: in memory, nothing to say
    assert "compressed" not in capsys.readouterr().err
    data = load_data(DataConfig(name="npz", path=str(path), memory_limit_mb=0.001))
    assert not data.lazy and "are compressed" in capsys.readouterr().err


# ---------------------------------------------------------------------- batches and augmentation
def test_augmentation_ops():
    image = torch.arange(2 * 4 * 5, dtype=torch.uint8).view(2, 4, 5)
    assert torch.equal(augment_image(image, AugmentConfig(), 7), image)
    seen = set()
    for seed in range(40):
        out = augment_image(image, AugmentConfig(flip=True, rotate90=True), seed)
        symmetries = [torch.rot90(im, k, dims=(1, 2)) for im in (image, image.flip(-1)) for k in range(4)]
        match = [i for i, s in enumerate(symmetries) if s.shape == out.shape and torch.equal(s, out)]
        assert match
        seen.add(match[0])
        assert torch.equal(out, augment_image(image, AugmentConfig(flip=True, rotate90=True), seed))
    assert seen == set(range(8))  # all 8 symmetries of the square occur
    # crop: a shift by up to 2 pixels each way with the edge pixels repeated, all 25 shifts drawn
    shifts = set()
    for seed in range(200):
        out = augment_image(image, AugmentConfig(crop=2), seed)
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out, image[:, (torch.arange(4) + dy).clamp(0, 3)][:, :, (torch.arange(5) + dx).clamp(0, 4)])]
        assert found
        shifts.add(found[0])
    assert len(shifts) == 25


def epochs_of(source: BatchSource, epochs) -> list[torch.Tensor]:
    return [torch.cat([x for x, _ in source.epoch(e)]) for e in epochs]


def test_batches_and_augmentation_depend_on_seed_and_epoch_only(tmp_path):
    png_folder(tmp_path / "f", 40, size=(8, 8), classes=2)
    cfg = dict(name="folder", path=str(tmp_path / "f"), image_size=8, labels="folders")
    memory, lazy = load_data(DataConfig(**cfg, lazy=False)), load_data(DataConfig(**cfg, lazy=True))
    augment = AugmentConfig(flip=True, rotate90=True, crop=1)
    reference = epochs_of(BatchSource(memory.train, 6, seed=5, augment=augment), [0, 1, 2])
    # the same batches from a lazy set, with 0 or 2 worker processes, and when started at epoch 2 (a resume)
    for workers in (0, 2):
        source = BatchSource(lazy.train, 6, seed=5, workers=workers, augment=augment)
        assert all(torch.equal(a, b) for a, b in zip(reference, epochs_of(source, [0, 1, 2])))
        resumed = BatchSource(lazy.train, 6, seed=5, workers=workers, augment=augment)
        assert torch.equal(epochs_of(resumed, [2])[0], reference[2])
        source.close()
        resumed.close()
    # labels travel with their images
    x, y = next(iter(BatchSource(lazy.train, 6, seed=5, workers=0).epoch(0)))
    order = BatchSource(lazy.train, 6, seed=5).order(0)[0]
    assert torch.equal(y, lazy.train.labels[order]) and torch.equal(x, lazy.train.batch(order)[0])
    # another seed: another augmentation of the same images in the same order
    plain = epochs_of(BatchSource(memory.train, 6, seed=5), [0])[0]
    other = BatchSource(memory.train, 6, seed=6, augment=augment)
    assert not torch.equal(epochs_of(other, [0])[0], reference[0])
    assert not torch.equal(plain, reference[0])
    assert len(BatchSource(memory.train, 6)) == len(memory.train) // 6
    assert image_seed(5, 0, 3) != image_seed(5, 1, 3) != image_seed(6, 0, 3)


# ---------------------------------------------------------------------- training runs
@pytest.fixture
def live_decoded(monkeypatch):
    """Counts the decoded images alive at any time (each :meth:`LazyImageSet.load` result until it is freed)."""
    state = {"live": 0, "max": 0, "decoded": 0}
    load = LazyImageSet.load

    def counted(self, i):
        image = load(self, i)
        state["live"] += 1
        state["decoded"] += 1
        state["max"] = max(state["max"], state["live"])
        weakref.finalize(image, lambda: state.__setitem__("live", state["live"] - 1))
        return image

    monkeypatch.setattr(LazyImageSet, "load", counted)
    return state


def test_a_folder_run_never_holds_the_whole_dataset(tmp_path, live_decoded):
    """A folder whose decoded images exceed data.memory_limit_mb is read on access (lazy: auto): at no time are
    more than a batch of decoded images alive, though every image is decoded, every epoch."""
    png_folder(tmp_path / "f", 80, size=(20, 20), classes=2)  # 80 x 16x16x3 = 60 KB decoded at 16x16
    config = folder_run_config(tmp_path / "f", memory_limit_mb=0.02)  # a 20 KB cap
    summary = train_run(config_from_dict(config, "lazy"), tmp_path / "run")
    n_train, n_test = 72, 8  # 10 % of each class held out as test
    assert live_decoded["decoded"] >= 2 * n_train + n_test  # two epochs read from the files
    assert live_decoded["max"] <= 8 < n_train + n_test  # one batch (train and eval batches are 8) at a time
    assert summary["psnr"] > 0 and (tmp_path / "run" / "reconstructions.png").is_file()
    described = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["data"]
    assert described["name"] == "folder" and described["image_size"] == 16


def test_lazy_run_resumes_exactly_and_equals_the_in_memory_run(tmp_path):
    from .test_train import Interrupt, stop_after

    png_folder(tmp_path / "f", 60, size=(18, 14), classes=3)
    config = folder_run_config(tmp_path / "f", lazy=True, workers=1,
                               augment={"flip": True, "rotate90": True, "crop": 2})
    config["train"]["epochs"] = 3
    config["model"]["quantizer"]["estimator"] = "gumbel"  # random draws: the RNG state must be restored too
    cfg = config_from_dict(config, "lazy")
    train_run(cfg, tmp_path / "full")
    with pytest.raises(Interrupt):
        train_run(cfg, tmp_path / "cut", callbacks=[stop_after(1)])
    train_run(cfg, tmp_path / "cut", resume=True)
    memory = copy.deepcopy(config)
    memory["data"].update(lazy=False, workers=0)
    train_run(config_from_dict(memory, "memory"), tmp_path / "memory")
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    for other in ("cut", "memory"):
        state = load_checkpoint(tmp_path / other / "checkpoints" / "last.pt")
        assert state["step"] == full["step"] == 3 * (54 // 8)
        for key, value in full["model"].items():
            assert torch.equal(value, state["model"][key]), (other, key)


def test_the_256_recipe_trains_on_a_folder(tmp_path, capsys):
    """configs/hvqvae3-256.yaml: 32x32 / 16x16 / 8x8 codes at 256x256; two steps at 64x64 on a generated folder."""
    from hiervq.cli import main
    from hiervq.train import load_config

    config = load_config("hvqvae3-256")
    assert config.data.name == "folder" and config.data.workers == 2 and config.data.lazy == "auto"
    with torch.device("meta"):
        model = config.build_model(in_channels=3, image_size=256)
    assert [lv.grid for lv in model.levels] == [(32, 32), (16, 16), (8, 8)]
    png_folder(tmp_path / "f", 12, size=(70, 64))
    overrides = [f"data.path={tmp_path / 'f'}", "data.image_size=64", "data.memory_limit_mb=0.01", "train.epochs=1",
                 "train.batch_size=4", "train.eval_batch_size=4", "train.eval_limit=4", "train.warmup_steps=1",
                 "train.progress=false"]
    code = main(["train", "hvqvae3-256", "--out", str(tmp_path / "run"), *[a for o in overrides for a in ("--set", o)]])
    assert code == 0, capsys.readouterr().err[-2000:]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 10 // 4  # 12 images: 2 test, 10 train, batches of 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [lv["grid"] for lv in summary["levels"]] == [[8, 8], [4, 4], [2, 2]]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_on_a_folder_read_on_access(tmp_path):
    """`torchrun --nproc-per-node 2 -m hiervq train` on a lazily read folder with a worker per rank: each rank
    draws its own shard, one log, a complete run."""
    import yaml

    png_folder(tmp_path / "f", 72, size=(16, 16), classes=2)
    config = folder_run_config(tmp_path / "f", lazy=True, workers=1, augment={"flip": True})
    config["train"].update(epochs=1, schedule="constant")
    path = tmp_path / "lazy.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hiervq",
               "train", str(path), "--out", str(tmp_path / "run")]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("epoch 1 [all]") == 1 and log.count("done:") == 1, log[-3000:]
    # 72 images less the test (7) and val (3) splits, over 2 ranks, batches of 8: 3 steps per rank
    n = len(load_data(DataConfig(**config["data"])).train)
    assert n == 62 and int(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"]) == n // 2 // 8
    assert (tmp_path / "run" / "summary.json").is_file()


def test_data_loading_benchmark_writes_params_and_decode_stats(tmp_path):
    """benchmarks/data_loading.py's extra keys: the recipe's parameters (built, as --summarize adds them to the
    committed JSON) and the PNGs' mean size and median decode time."""
    import importlib.util
    import json

    from hiervq.train import load_config

    from .conftest import REPO

    spec = importlib.util.spec_from_file_location("data_loading", REPO / "benchmarks" / "data_loading.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = bench.make_folder(tmp_path / "png", 3, size=16)
    stats = bench.decode_stats(folder, 2)
    sizes = [p.stat().st_size for p in sorted(folder.glob("*.png"))]
    assert stats["png_kb"] == round(sum(sizes) / len(sizes) / 1000, 1) and stats["decode_ms"] > 0
    committed = json.loads((REPO / "benchmarks" / "results" / "data_loading.json").read_text())
    built = load_config("hvqvae3-256", [f"data.image_size={committed['image_size']}"]).build_model(
        in_channels=3, image_size=committed["image_size"]).num_parameters()
    assert committed["params"] == bench.recipe_params(committed["image_size"]) == built
