"""The codec with its default prior (checkerboard) at native image sizes: every file decodes to exactly the codes
the encoder saw, whatever the image size, batch size, thread count or process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from .conftest import tiny_rgb_run

REPO = Path(__file__).resolve().parents[1]
SIZES = [(16, 16), (21, 35), (48, 64), (96, 80)]  # the model's own size, odd sizes padded to the stride, larger maps


@pytest.fixture(scope="module")
def cb_run(tmp_path_factory):
    """The conftest's tiny 2-level run on 3-channel digits with default (checkerboard) priors, unconditional."""
    return tiny_rgb_run(tmp_path_factory.mktemp("cbsizes"), {"channels": 8, "blocks": 1})


def _images(size, n=3, seed=0):
    g = torch.Generator().manual_seed(seed + size[0] * 1000 + size[1])
    # smooth random images (a blurred noise field) so that the codes are not all alike
    x = torch.rand(n, 3, size[0] // 4 + 2, size[1] // 4 + 2, generator=g)
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def test_default_priors_are_checkerboard(cb_run):
    from hiervq import Codec
    from hiervq.priors import CheckerboardPrior

    codec = Codec.from_run(cb_run)
    assert all(isinstance(p, CheckerboardPrior) for p in codec.priors.values())


def test_every_size_batch_size_thread_count_and_process_decodes_the_same_codes(cb_run, tmp_path):
    from hiervq import Codec

    codec = Codec.from_run(cb_run)
    saved = {}
    for size in SIZES:
        x = _images(size)
        # the encoder's codes may differ with the thread count or batch (float32 ties in the autoencoder): what
        # must hold is that every file decodes to exactly the codes its encoder saw, however it is decoded
        torch.set_num_threads(2)
        try:
            result = codec.compress_batch(x)  # encoded with 2 threads, decoded with 1 below
        finally:
            torch.set_num_threads(1)
        codes, got = codec.decompress_codes(result.files)
        assert got == size and all(torch.equal(a, b) for a, b in zip(codes, result.codes))
        for i, f in enumerate(result.files):  # one file at a time
            single, _ = codec.decompress_codes([f])
            assert all(torch.equal(s[0], c[i]) for s, c in zip(single, result.codes))
        one_by_one = [codec.compress_batch(x[i : i + 1]) for i in range(len(x))]  # batches of one, 1 thread
        torch.set_num_threads(2)
        try:  # decoded with 2 threads, all at once
            codes2, _ = codec.decompress_codes([r.files[0] for r in one_by_one])
        finally:
            torch.set_num_threads(1)
        assert all(torch.equal(a, torch.cat([r.codes[lv] for r in one_by_one])) for lv, a in enumerate(codes2))
        images = codec.decompress(result.files)
        assert images.shape == (len(x), 3, *size)
        saved[size] = {"files": result.files, "codes": result.codes, "images": x}

    torch.save({"run": str(cb_run), "saved": saved}, tmp_path / "in.pt")
    script = textwrap.dedent(f"""
        import torch, hiervq
        torch.set_num_threads(1)
        d = torch.load({str(tmp_path / 'in.pt')!r})
        codec = hiervq.Codec.from_run(d["run"])
        out = {{}}
        for size, s in d["saved"].items():
            codes, _ = codec.decompress_codes(s["files"][::-1])
            r = codec.compress_batch(s["images"])
            out[size] = {{"codes": codes, "files": r.files, "encoded": r.codes}}
        torch.save(out, {str(tmp_path / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   cwd=REPO, timeout=300)
    fresh = torch.load(tmp_path / "out.pt")
    for size, s in saved.items():
        again, _ = codec.decompress_codes(fresh[size]["files"])  # the fresh process's own files decode here too
        assert all(torch.equal(a, b) for a, b in zip(again, fresh[size]["encoded"]))
        assert all(torch.equal(a, b.flip(0)) for a, b in zip(fresh[size]["codes"], s["codes"]))


def test_compress_warns_when_the_priors_decode_one_code_per_pass(cb_run, tmp_path, caplog):
    """The shipped tokenizer's PixelCNN priors need one network pass per code: a 256x256 image is worth a warning
    with the way out; checkerboard priors (2 passes per level) are not."""
    import logging

    import numpy as np
    from PIL import Image

    from hiervq.cli import main

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    with caplog.at_level(logging.WARNING, logger="hiervq"):
        assert main(["compress", "cifar10-hvqvae3-prior", str(tmp_path / "p.png"), "-o", str(tmp_path / "a.hvq")]) == 0
    assert "5,376 network passes" in caplog.text and "model.arch=checkerboard" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hiervq"):
        assert main(["compress", str(cb_run), str(tmp_path / "p.png"), "-o", str(tmp_path / "b.hvq")]) == 0
    assert "network passes" not in caplog.text


@pytest.mark.parametrize("k", [3, 5])
def test_shifted_convolution_matches_torch_and_keeps_the_state_dict(k):
    """The codec's float64 convolutions (shifted matrix products) agree with F.conv2d to rounding, image by image
    whatever the batch, and swapping them in keeps every parameter (so the codec's model id does not change)."""
    from hiervq.nn import ShiftedConv2d, conv2d_shifted, shifted_convs

    g = torch.Generator().manual_seed(k)
    x = torch.randn(3, 5, 7, 9, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = conv2d_shifted(x, w, b)
    assert y.shape == (3, 4, 7, 9)
    assert torch.allclose(y, torch.nn.functional.conv2d(x, w, b, padding=k // 2), atol=1e-12, rtol=0)
    with torch.no_grad():
        assert torch.equal(conv2d_shifted(x[1:2], w, b), y[1:2])  # the same bits alone as in a batch
    net = torch.nn.Sequential(torch.nn.Conv2d(5, 4, k, padding=k // 2), torch.nn.Conv2d(4, 4, 1),
                              torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)).double()
    before = {n: t.clone() for n, t in net.state_dict().items()}
    with torch.no_grad():
        ref = net(x)
    shifted_convs(net)
    assert [type(m) for m in net] == [ShiftedConv2d, ShiftedConv2d, torch.nn.Conv2d]  # same-padded, stride 1 only
    assert net.state_dict().keys() == before.keys() and all(torch.equal(net.state_dict()[n], t) for n, t in before.items())
    with torch.no_grad():
        assert torch.allclose(net(x), ref, atol=1e-12, rtol=0)
    assert torch.allclose(net(x), ref, atol=1e-12, rtol=0)  # with autograd: torch's own convolution


def test_a_folder_with_images_in_sub_folders_says_they_are_not_read(cb_run, tmp_path, caplog):
    """compress (like encode) reads a folder's top level only; images in its sub-folders get one warning, not
    silence."""
    import logging

    import numpy as np
    from PIL import Image

    from hiervq.cli import main

    (tmp_path / "photos" / "nested").mkdir(parents=True)
    for path in (tmp_path / "photos" / "a.png", tmp_path / "photos" / "nested" / "b.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    with caplog.at_level(logging.WARNING, logger="hiervq"):
        assert main(["compress", str(cb_run), str(tmp_path / "photos"), "-o", str(tmp_path / "out")]) == 0
    assert "1 image in sub-folders not read" in caplog.text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.hvq"]
