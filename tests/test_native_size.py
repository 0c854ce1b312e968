"""Images at their own size (issue 26, "native size by default"): encode/decode and compress/decompress pad each
image to the model's stride, record its size and crop back; --resize brings images to the training size; a
fixed-size model refuses other sizes naming both; bits per image and per pixel count the real grids and pixels."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import hiervq
from hiervq.cli import main

from .conftest import tiny_rgb_run

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(50, 70), (40, 40)]  # (H, W): 50x70 needs padding to the stride 4 (52x72), 40x40 does not


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory, one_thread):
    """The conftest's tiny 2-level run on 3-channel digits with an unconditional PixelCNN per level."""
    return tiny_rgb_run(tmp_path_factory.mktemp("native"), {"channels": 8, "layers": 2})


def _png(path, size, seed=0):
    h, w = size
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _grids(size, stride=4):
    ph, pw = (-(-s // stride) * stride for s in size)
    return (ph // 2, pw // 2), (ph // 4, pw // 4)


def _real_bits(size):
    (h0, w0), (h1, w1) = _grids(size)
    return h0 * w0 * math.log2(32) + h1 * w1 * math.log2(16)


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.parametrize("size", SIZES)
def test_encode_decode_keep_each_image_size(rgb_run, tmp_path, capsys, size):
    png = _png(tmp_path / "photo.png", size)
    out = _run(["encode", rgb_run, png, "-o", tmp_path / "c.npz"], capsys)
    archive = np.load(tmp_path / "c.npz")
    (h0, w0), (h1, w1) = _grids(size)
    assert archive["level0"].shape == (1, h0, w0) and archive["level1"].shape == (1, h1, w1)
    assert archive["image_sizes"].tolist() == [list(size)]
    assert f"{_real_bits(size):.0f} bits/image" in out and f"of {size[0]}x{size[1]}" in out
    _run(["decode", rgb_run, tmp_path / "c.npz", "-o", tmp_path / "dec"], capsys)
    assert Image.open(tmp_path / "dec" / "photo.png").size == (size[1], size[0])  # PIL: (W, H)

    # the codes are the model's of the padded image, and the PNG is its decoding cropped back
    model = hiervq.load(rgb_run)
    x = torch.from_numpy(np.array(Image.open(png))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        codes = model.encode(model.pad_images(x))
        expected = hiervq.models.crop_images(model.decode(codes), size).clamp(0, 1)
    assert all(np.array_equal(c.numpy(), archive[f"level{i}"]) for i, c in enumerate(codes))
    decoded = np.asarray(Image.open(tmp_path / "dec" / "photo.png"))
    assert np.abs(decoded.astype(int) - (expected[0].permute(1, 2, 0) * 255).round().numpy()).max() <= 1

    # a codes file from before image_sizes decodes at the size of its grids
    np.savez(tmp_path / "old.npz", **{k: archive[k] for k in archive.files if k != "image_sizes"})
    _run(["decode", rgb_run, tmp_path / "old.npz", "-o", tmp_path / "old"], capsys)
    assert Image.open(tmp_path / "old" / "photo.png").size == (w0 * 2, h0 * 2)


def test_compress_decompress_keep_each_image_size(rgb_run, tmp_path, capsys):
    from hiervq.codec import unpack

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, size in enumerate(SIZES):  # two sizes in one call: each file records its own
        _png(imgs / f"im{i}.png", size, seed=i)
    out = _run(["compress", rgb_run, imgs, "-o", tmp_path / "hvq"], capsys)
    files = [tmp_path / "hvq" / f"im{i}.hvq" for i in range(len(SIZES))]
    total = sum(f.stat().st_size for f in files)
    pixels = sum(h * w for h, w in SIZES)
    assert f"{total * 8 / pixels:.4f} bits/pixel of the original pixels" in out
    for f, size in zip(files, SIZES):
        header, _ = unpack(f.read_bytes())
        assert header.image_size == size and header.grids is None  # version 3: the size implies the grids
    _run(["decompress", rgb_run, tmp_path / "hvq", "-o", tmp_path / "back"], capsys)
    for i, size in enumerate(SIZES):
        assert Image.open(tmp_path / "back" / f"im{i}.png").size == (size[1], size[0])
        # the same PNG as encode + decode (the same codes, decoded alone)
        _run(["encode", rgb_run, imgs / f"im{i}.png", "-o", tmp_path / f"c{i}.npz"], capsys)
        _run(["decode", rgb_run, tmp_path / f"c{i}.npz", "-o", tmp_path / f"dec{i}"], capsys)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "back" / f"im{i}.png")),
                              np.asarray(Image.open(tmp_path / f"dec{i}" / f"im{i}.png")))

    # Python: hiervq.compress / decompress crop back too
    x = torch.from_numpy(np.array(Image.open(imgs / "im0.png"))).permute(2, 0, 1).float() / 255
    data = hiervq.compress(rgb_run, x)
    assert data == files[0].read_bytes()
    assert hiervq.decompress(data, rgb_run).shape == (3, *SIZES[0])


def test_version_1_files_still_decompress(rgb_run):
    """Format version 1 had version 2's layout; its sizes were multiples of the stride, which padding leaves alone.
    A version 1 file of a size that needs no padding decodes to the images of the version 3 file."""
    from hiervq.codec import Codec

    from .conftest import old_format_files

    codec = Codec.from_run(rgb_run)
    x = torch.rand(2, 3, 16, 16)
    result = codec.compress_batch(x)
    old = old_format_files(codec, result.codes, (16, 16), version=1)
    assert [hiervq.codec.unpack(f)[0].grids for f in old] == [_grids((16, 16))[::-1]] * 2  # coding order: top first
    assert torch.equal(codec.decompress(old), codec.decompress(result.files))


def test_resize_brings_images_to_the_training_size(rgb_run, tmp_path, capsys):
    png = _png(tmp_path / "photo.png", SIZES[0])
    out = _run(["encode", rgb_run, png, "-o", tmp_path / "c.npz", "--resize"], capsys)
    archive = np.load(tmp_path / "c.npz")
    assert archive["level0"].shape == (1, 8, 8) and archive["image_sizes"].tolist() == [[16, 16]]
    assert f"{8 * 8 * 5 + 4 * 4 * 4} bits/image" in out
    _run(["decode", rgb_run, tmp_path / "c.npz", "-o", tmp_path / "dec"], capsys)
    assert Image.open(tmp_path / "dec" / "photo.png").size == (16, 16)
    _run(["compress", rgb_run, png, "-o", tmp_path / "p.hvq", "--resize"], capsys)
    assert hiervq.codec.unpack((tmp_path / "p.hvq").read_bytes())[0].image_size == (16, 16)
    # --keep-size, the old flag for what is now the default, is accepted and changes nothing
    _run(["encode", rgb_run, png, "-o", tmp_path / "k.npz", "--keep-size"], capsys)
    assert np.load(tmp_path / "k.npz")["image_sizes"].tolist() == [list(SIZES[0])]


def test_a_fixed_size_model_refuses_other_sizes_naming_both(tmp_path, capsys):
    from hiervq.models import PQVAE, PQVAEConfig

    model = PQVAE(PQVAEConfig(image_size=16, in_channels=3, channels=16, blocks=1, res_channels=8, downsample=2,
                              latent_channels=8, map_size=8, steps=8, codebook_size=16, spatial_dim=8, channel_dim=2))
    model.save_pretrained(tmp_path / "pq")
    png = _png(tmp_path / "photo.png", SIZES[0])
    assert main(["encode", str(tmp_path / "pq"), str(png), "-o", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err
    assert "16x16 images only" in err and "not 50x70" in err and "--resize" in err and err.count("\n") == 1
    assert not (tmp_path / "c.npz").exists()
    out = _run(["encode", tmp_path / "pq", png, "-o", tmp_path / "c.npz", "--resize"], capsys)
    assert np.load(tmp_path / "c.npz")["level0"].shape == (1, 8) and "32 bits/image" in out


def test_eval_of_a_folder_codes_each_image_at_its_own_size(rgb_run, tmp_path, capsys):
    """``hiervq eval RUN --data FOLDER``: every image of the folder (sub-folders too) at its own size, padded to the
    stride and cropped back before any metric; ``--resize`` brings them to the training size instead."""
    import json

    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    _png(folder / "a.png", (50, 70))
    _png(folder / "b.png", (40, 40), seed=1)
    _png(folder / "more" / "c.png", (50, 70), seed=2)
    result = json.loads(_run(["eval", rgb_run, "--data", folder], capsys))
    assert result["images"] == 3 and result["sizes"] == ["40x40", "50x70"]
    assert result["bits_per_image"] == pytest.approx((2 * _real_bits((50, 70)) + _real_bits((40, 40))) / 3)
    assert 0 < result["mse"] < 1
    resized = json.loads(_run(["eval", rgb_run, "--data", folder, "--resize"], capsys))
    assert resized["images"] == 3 and "sizes" not in resized and resized["bits_per_image"] == _real_bits((16, 16))
