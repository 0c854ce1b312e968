"""The command line: train/eval/encode/decode, and one-line errors with non-zero exit codes on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from hiervq.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from hiervq.train import config_from_dict, train_run

    from .conftest import TINY_RUN

    root = tmp_path_factory.mktemp("cli")
    cfg = dict(TINY_RUN, train=dict(TINY_RUN["train"], epochs=1))
    train_run(config_from_dict(cfg, "tiny"), root / "run")
    return root / "run"


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_from_the_command_line(tmp_path, capsys, tiny_run_config):
    tiny_run_config["train"]["epochs"] = 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_run_config))
    code, _, err = run_cli(["train", path, "--out", tmp_path / "r", "--set", "model.mode=unconditioned"], capsys)
    assert code == 0, err
    assert (tmp_path / "r" / "summary.json").is_file()
    assert "unconditioned" in (tmp_path / "r" / "config.yaml").read_text()
    code, _, err = run_cli(["train", path, "--out", tmp_path / "r"], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1


def test_eval_encode_decode(trained_run, tmp_path, capsys):
    code, out, err = run_cli(["eval", trained_run, "--set", "data.test_limit=8"], capsys)
    assert code == 0, err
    assert '"psnr"' in out and '"images": 8' in out
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L").save(images / f"im{i}.png")
    codes = tmp_path / "codes.npz"
    code, out, err = run_cli(["encode", trained_run, images, "-o", codes, "--resize"], capsys)
    assert code == 0, err
    archive = np.load(codes)
    assert archive["level0"].shape == (3, 8, 8) and archive["level1"].shape == (3, 4, 4)
    assert archive["image_sizes"].tolist() == [[16, 16]] * 3
    code, out, err = run_cli(["decode", trained_run, codes, "-o", tmp_path / "dec"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["grid.png", "im0.png", "im1.png", "im2.png"]
    assert Image.open(tmp_path / "dec" / "im0.png").size == (16, 16)


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda t, r: ["train", t / "missing.yaml"], "no such config file"),
        (lambda t, r: ["train", "--set", "model.name=vqgan", "--out", t / "x"], "not a known model"),
        (lambda t, r: ["train", "--set", "train.epochz=1", "--out", t / "x"], "unknown key 'epochz'"),
        (lambda t, r: ["eval", t / "norun"], "no such file or directory"),
        (lambda t, r: ["encode", r, t / "nothing.png"], "no such file"),
        (lambda t, r: ["encode", r, t / "broken.png"], "corrupt or unreadable image"),
        (lambda t, r: ["encode", r, t / "rgb.png"], "3 channels, the model expects 1"),
        (lambda t, r: ["decode", r, t / "broken.png"], "not a codes file"),
        (lambda t, r: ["train", "--resume", t / "norun"], "not a run directory"),
    ],
)
def test_bad_input_gives_one_line_errors(make_args, message, trained_run, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n not an image")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    code, out, err = run_cli(make_args(tmp_path, trained_run), capsys)
    assert code == 2
    assert message in err
    assert err.startswith("hiervq: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_checkpoint_that_does_not_match_the_config(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["channels"] = 24
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["train", "--resume", run], capsys)
    assert code == 2 and "does not match the model config" in err and err.count("\n") == 1


def test_module_entry_point_and_debug_flag(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hiervq", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "encode" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "hiervq", "--debug", "train", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_eval_evaluates_a_whole_image_folder_unless_a_split_is_given(trained_run, tmp_path, capsys):
    """A flat folder has no test split of its own: ``eval --data FOLDER`` evaluates all of it (it used to take the
    auto-made 10 % test split: 1 of 7 images) and says how many; ``--split`` still chooses."""
    folder = tmp_path / "seven"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L").save(folder / f"im{i}.png")
    code, out, err = run_cli(["eval", trained_run, "--data", folder], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 7 and result["split"] == "all"
    assert "evaluated 7 images" in err
    code, out, err = run_cli(["eval", trained_run, "--data", folder, "--split", "test"], capsys)
    assert code == 0, err
    assert json.loads(out)["images"] == 1


def test_encode_resize_honours_the_run_fit_and_warns_when_the_aspect_ratio_changes(trained_run, tmp_path, capsys):
    import shutil

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (12, 20), dtype=np.uint8), "L").save(images / "wide.png")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L").save(images / "square.png")
    code, out, err = run_cli(["encode", trained_run, images, "-o", tmp_path / "c.npz", "--resize"], capsys)
    assert code == 0, err
    assert "warning: 1 of 2 images changed their aspect ratio" in err
    # a run trained with fit: pad pads (a 12x12 image into the 16x16 frame) and refuses what it cannot pad
    padded = tmp_path / "padrun"
    shutil.copytree(trained_run, padded, ignore=shutil.ignore_patterns(".*lock*"))
    config = yaml.safe_load((padded / "config.yaml").read_text())
    config["data"]["fit"] = "pad"
    (padded / "config.yaml").write_text(yaml.safe_dump(config))
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L").save(small / "s.png")
    code, out, err = run_cli(["encode", padded, small, "-o", tmp_path / "p.npz", "--resize"], capsys)
    assert code == 0, err
    assert "warning" not in err
    code, out, err = run_cli(["encode", padded, images, "-o", tmp_path / "q.npz", "--resize"], capsys)
    assert code == 2 and "cannot pad" in err and "data.fit: pad" in err


def _gray_tree(root, paths, size=(16, 16)):
    rng = np.random.default_rng(3)
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L").save(root / path)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_encode_recursive_names_images_by_their_paths_and_decode_writes_the_tree(trained_run, tmp_path, capsys):
    """encode -r reads every visible image below a folder and names each by its path below it (posix); decode
    writes those names back as the same tree below -o (plus grid.png at the top), with the codes and PNGs of the
    top-level path; an existing PNG in a sub-folder is refused without --overwrite and nothing is written."""
    images = tmp_path / "imgs"
    _gray_tree(images, ["x.png", "sub/y.png", "sub/deep/z.png", ".hidden/h.png", "sub/.h.png"])
    codes = tmp_path / "codes.npz"
    code, out, err = run_cli(["encode", trained_run, "-r", images, "-o", codes], capsys)
    assert code == 0, err
    assert "encoded 3 images" in out
    archive = np.load(codes)
    assert archive["names"].tolist() == ["sub/deep/z.png", "sub/y.png", "x.png"]  # sorted folder by folder
    # the codes the top-level path gives for the same files, named one by one
    flat = tmp_path / "flat.npz"
    assert run_cli(["encode", trained_run, *(images / n for n in archive["names"]), "-o", flat], capsys)[0] == 0
    assert np.array_equal(np.load(flat)["level0"], archive["level0"])
    assert np.load(flat)["names"].tolist() == ["z.png", "y.png", "x.png"]
    dec, ref = tmp_path / "dec", tmp_path / "ref"
    code, out, err = run_cli(["decode", trained_run, codes, "-o", dec], capsys)
    assert code == 0, err
    assert _files(dec) == ["grid.png", "sub/deep/z.png", "sub/y.png", "x.png"]
    assert run_cli(["decode", trained_run, flat, "-o", ref], capsys)[0] == 0
    for name in archive["names"]:
        a, b = np.asarray(Image.open(dec / name)), np.asarray(Image.open(ref / name.rsplit("/", 1)[-1]))
        assert a.shape == (16, 16) and np.array_equal(a, b), name

    # an existing PNG in a sub-folder: refused without --overwrite, nothing written; replaced with it
    again = tmp_path / "again"
    (again / "sub").mkdir(parents=True)
    (again / "sub" / "y.png").write_bytes(b"mine")
    code, _, err = run_cli(["decode", trained_run, codes, "-o", again], capsys)
    assert code == 2 and "sub/y.png already exists; pass --overwrite" in err and err.count("\n") == 1
    assert _files(again) == ["sub/y.png"] and not (again / "sub" / "deep").exists()  # nothing else written
    assert run_cli(["decode", trained_run, codes, "-o", again, "--overwrite"], capsys)[0] == 0
    assert (again / "sub" / "y.png").read_bytes() == (dec / "sub" / "y.png").read_bytes()
    assert _files(again) == _files(dec)

    # a sub-folder of -o that is a link out of it is refused; so is a name that is a folder of another name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "sub").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run_cli(["decode", trained_run, codes, "-o", tmp_path / "linked"], capsys)
    assert code == 2 and "leads outside it" in err and err.count("\n") == 1
    assert not any(elsewhere.iterdir()) and _files(tmp_path / "linked") == []
    arrays = {k: archive[k] for k in archive.files}
    arrays["names"] = np.array(["sub/deep.png", "sub/deep.png/z.png", "x.png"])
    np.savez(tmp_path / "nested.npz", **arrays)
    code, _, err = run_cli(["decode", trained_run, tmp_path / "nested.npz", "-o", tmp_path / "n"], capsys)
    assert code == 2 and "sub/deep.png/z.png would be written into" in err and not (tmp_path / "n").exists()

    # without -r: the top level only, plain names, and a warning that names -r/--recursive
    code, out, err = run_cli(["encode", trained_run, images, "-o", tmp_path / "top.npz"], capsys)
    assert code == 0 and np.load(tmp_path / "top.npz")["names"].tolist() == ["x.png"]
    assert "2 images in sub-folders not read" in err and "pass -r/--recursive" in err
