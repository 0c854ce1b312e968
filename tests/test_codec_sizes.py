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
    assert "1 image in sub-folders not read" in caplog.text and "pass -r/--recursive" in caplog.text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.hvq"]
    caplog.clear()
    (tmp_path / "out" / "nested").mkdir()  # decompress says the same of .hvq files in sub-folders
    (tmp_path / "out" / "a.hvq").rename(tmp_path / "out" / "nested" / "a.hvq")
    (tmp_path / "out" / "top.hvq").write_bytes((tmp_path / "out" / "nested" / "a.hvq").read_bytes())
    with caplog.at_level(logging.WARNING, logger="hiervq"):
        assert main(["decompress", str(cb_run), str(tmp_path / "out"), "-o", str(tmp_path / "dec")]) == 0
    assert "1 .hvq file in sub-folders not read" in caplog.text and "pass -r/--recursive" in caplog.text
    assert [p.name for p in (tmp_path / "dec").iterdir()] == ["top.png"]


# ---------------------------------------------------------------------- -r/--recursive: trees in, trees out
def _tree(root, files: dict) -> None:
    """Random RGB PNGs at ``root / path`` of size (h, w) for each ``path: (h, w)`` of ``files``."""
    import numpy as np
    from PIL import Image

    for i, (path, (h, w)) in enumerate(files.items()):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / path)


def _listing(root) -> dict:
    """Every file below ``root`` by its relative path (posix), with its bytes; folders as None."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


# each image its own size: coded alone in every call, so the recursive and per-folder files are byte-identical
TREE = {"a.png": (20, 24), "cats/b.png": (16, 16), "cats/deep/c.jpg": (21, 35), "dogs/d.png": (24, 20),
        ".hidden/e.png": (16, 16), "cats/.f.png": (16, 16)}


def _photos(tmp_path):
    photos = tmp_path / "photos"
    _tree(photos, TREE)
    (photos / "notes.txt").write_text("not an image")
    return photos


def test_compress_and_decompress_recursive_mirror_the_tree(cb_run, tmp_path, capsys):
    """compress -r writes OUT/<path below the folder>.hvq for every visible image of the tree (hidden files and
    folders skipped), decompress -r mirrors the .hvq tree back to PNGs; each file is the one the top-level path
    (compress/decompress of the image's own folder) writes for that image."""
    import numpy as np
    from PIL import Image

    from hiervq.cli import main

    photos = _photos(tmp_path)
    out, dec = tmp_path / "out", tmp_path / "dec"
    assert main(["compress", str(cb_run), "-r", str(photos), "-o", str(out)]) == 0
    assert "compressed 4 images" in capsys.readouterr().out
    hvq = ["a.hvq", "cats/b.hvq", "cats/deep/c.hvq", "dogs/d.hvq"]
    assert sorted(k for k, v in _listing(out).items() if v is not None) == hvq
    assert main(["decompress", str(cb_run), str(out), "--recursive", "-o", str(dec)]) == 0
    pngs = ["a.png", "cats/b.png", "cats/deep/c.png", "dogs/d.png"]
    assert sorted(k for k, v in _listing(dec).items() if v is not None) == pngs
    sizes = {"a.png": (20, 24), "cats/b.png": (16, 16), "cats/deep/c.png": (21, 35), "dogs/d.png": (24, 20)}
    for name, png in zip(hvq, pngs):  # the same as each folder compressed and decompressed without -r
        folder = (photos / name).parent
        ref_out, ref_dec = tmp_path / "ref" / folder.name / "hvq", tmp_path / "ref" / folder.name / "png"
        if not ref_out.exists():
            assert main(["compress", str(cb_run), str(folder), "-o", str(ref_out)]) == 0
            assert main(["decompress", str(cb_run), str(ref_out), "-o", str(ref_dec)]) == 0
        stem = name.rsplit("/", 1)[-1]
        assert (out / name).read_bytes() == (ref_out / stem).read_bytes(), name
        a, b = (np.asarray(Image.open(p)) for p in (dec / png, ref_dec / f"{stem[:-4]}.png"))
        assert a.shape == (*sizes[png], 3)
        assert np.array_equal(a, b), png

    # several folders: each mirrored by its own paths; an image named itself goes to the top
    more = tmp_path / "more"
    _tree(more, {"birds/g.png": (16, 20)})
    assert main(["compress", str(cb_run), "-r", str(more), str(photos / "cats" / "b.png"), "-o", str(tmp_path / "o2")]) == 0
    assert sorted(k for k, v in _listing(tmp_path / "o2").items() if v is not None) == ["b.hvq", "birds/g.hvq"]


def test_recursive_outputs_are_all_checked_before_anything_is_written(cb_run, tmp_path, capsys):
    """An existing output in a sub-folder is refused without --overwrite (nothing written, no folder made), and
    replaced with it; an input is never replaced, even with --overwrite; a clash of two images (two folders'
    same paths, a.png beside a.jpg) and an output folder inside an input folder are refused up front."""
    from hiervq.cli import main

    photos = _photos(tmp_path)
    out, dec = tmp_path / "out", tmp_path / "dec"
    (out / "cats").mkdir(parents=True)
    (out / "cats" / "b.hvq").write_bytes(b"mine")
    before = _listing(tmp_path)
    capsys.readouterr()
    assert main(["compress", str(cb_run), "-r", str(photos), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b.hvq already exists; pass --overwrite" in err and err.count("\n") == 1 and "Traceback" not in err
    assert _listing(tmp_path) == before  # a.hvq not written, cats/deep/ and dogs/ not made
    assert main(["compress", str(cb_run), "-r", str(photos), "-o", str(out), "--overwrite"]) == 0
    assert (out / "cats" / "b.hvq").read_bytes() != b"mine" and (out / "dogs" / "d.hvq").is_file()

    (dec / "cats" / "deep").mkdir(parents=True)
    (dec / "cats" / "deep" / "c.png").write_bytes(b"mine")
    before = _listing(tmp_path)
    capsys.readouterr()
    assert main(["decompress", str(cb_run), "-r", str(out), "-o", str(dec)]) == 2
    err = capsys.readouterr().err
    assert "c.png already exists; pass --overwrite" in err and err.count("\n") == 1
    assert _listing(tmp_path) == before
    # an input is never replaced, even with --overwrite (here an output in the tree is a link to it)
    (tmp_path / "o3" / "dogs").mkdir(parents=True)
    (tmp_path / "o3" / "dogs" / "d.hvq").symlink_to(photos / "dogs" / "d.png")
    before = _listing(tmp_path)
    capsys.readouterr()
    assert main(["compress", str(cb_run), "-r", str(photos), "-o", str(tmp_path / "o3"), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err and _listing(tmp_path) == before

    # clashes: the same path below two folders, two images of one stem in one folder; named both, nothing written
    twin = tmp_path / "twin"
    _tree(twin, {"cats/b.png": (16, 16)})
    for argv, names in ((["-r", str(photos), str(twin)], [photos / "cats" / "b.png", twin / "cats" / "b.png"]),
                        (["-r", str(photos), str(photos / "a.png")], [photos / "a.png"])):
        for command in ("compress", "encode"):
            capsys.readouterr()
            assert main([command, str(cb_run), *argv, "-o", str(tmp_path / "clash")]) == 2
            err = capsys.readouterr().err
            assert all(str(n) in err for n in names) and "would both be" in err and err.count("\n") == 1, err
    _tree(twin, {"cats/b.jpg": (16, 16)})
    assert main(["compress", str(cb_run), "-r", str(twin), "-o", str(tmp_path / "clash")]) == 2
    assert f"{twin / 'cats' / 'b.jpg'} and {twin / 'cats' / 'b.png'} would both be" in capsys.readouterr().err
    assert not (tmp_path / "clash").exists()

    # an output folder inside (or equal to) an input folder: refused with -r, before anything is written
    for command, source in (("compress", photos), ("decompress", out)):
        for target in (source, source / "cats" / "mirror"):
            before = _listing(tmp_path)
            capsys.readouterr()
            assert main([command, str(cb_run), "-r", str(source), "-o", str(target)]) == 2
            err = capsys.readouterr().err
            assert f"is inside the input folder {source}" in err and err.count("\n") == 1, err
            assert _listing(tmp_path) == before
