"""Nothing a user owns is deleted or overwritten (issue 14, items 1-4, 13a, 14): --overwrite replaces only hiervq's
own directories and only after the new run validated, decode keeps existing files, one writer per run, stale temp
files are cleaned, atomic writes respect the umask."""

import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from hiervq.cli import main
from hiervq.train.rundir import (
    RUN_MARKER,
    RunLock,
    check_replaceable,
    lock_path,
    remove_leftovers,
    start_run_dir,
)

from .conftest import TINY_RUN


def tiny_config(tmp_path, **train):
    cfg = dict(TINY_RUN, train={**TINY_RUN["train"], "epochs": 1, **train})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataloss")
    assert main(["train", str(tiny_config(root)), "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run (tests may damage it)."""
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst)
    return dst


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.startswith("hiervq: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert str(needle) in err, err


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- 1. --overwrite deletes only hiervq's runs
def test_overwrite_keeps_a_folder_hiervq_did_not_write(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", d, "--overwrite"], capsys)
    assert_one_line_error(code, err, d, "not a hiervq")
    assert (d / "notes.txt").read_text() == "mine" and os.listdir(d) == ["notes.txt"]


@pytest.mark.parametrize("out", [".", ".."])
def test_overwrite_refuses_the_working_directory_and_its_parents(out, tmp_path, capsys, monkeypatch):
    cfg = tiny_config(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "photo.png").write_bytes(b"not really")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["train", cfg, "--out", out, "--overwrite"], capsys)
    assert_one_line_error(code, err, "working directory")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_run_holding_a_users_file(run_copy, tmp_path, capsys):
    (run_copy / "notes.txt").write_text("mine")
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
    assert_one_line_error(code, err, run_copy, "notes.txt")
    assert (run_copy / "notes.txt").read_text() == "mine" and (run_copy / "summary.json").is_file()


def test_prior_overwrite_keeps_a_folder_hiervq_did_not_write(finished_run, tmp_path, capsys):
    d = tmp_path / "p"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    code, _, err = run_cli(["prior", finished_run, "--level", "0", "--out", d, "--overwrite"], capsys)
    assert_one_line_error(code, err, d)
    assert os.listdir(d) == ["notes.txt"]


@pytest.mark.parametrize("command", ["compare", "sweep", "classify"])
def test_experiment_overwrite_keeps_a_folder_hiervq_did_not_write(command, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    code, _, err = run_cli([command, tiny_config(tmp_path), "--out", d, "--overwrite"], capsys)
    assert_one_line_error(code, err, d, "not a hiervq")
    assert os.listdir(d) == ["notes.txt"]


def test_replaceable_rule(tmp_path, monkeypatch):
    legacy = tmp_path / "legacy"  # common file names do not make a run (issue 27 D2): only the marker's manifest
    (legacy / "model").mkdir(parents=True)
    (legacy / "config.yaml").write_text("seed: 0\n")
    (legacy / "reconstructions.png").write_bytes(b"")
    with pytest.raises(Exception, match="not a hiervq"):
        check_replaceable(legacy)
    user = tmp_path / "user"  # results.json + report.md of the user's own
    user.mkdir()
    (user / "results.json").write_text("{}")
    (user / "report.md").write_text("# mine")
    with pytest.raises(Exception, match="not a hiervq"):
        check_replaceable(user)
    old_marker = tmp_path / "old"  # a marker without a manifest: from an older hiervq, never replaced
    old_marker.mkdir()
    (old_marker / RUN_MARKER).write_text("written by hiervq\n")
    (old_marker / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(Exception, match="older hiervq"):
        check_replaceable(old_marker)
    marked = tmp_path / "marked"
    start_run_dir(marked, {"config.yaml": b"seed: 0\n"})
    check_replaceable(marked)
    only_config = tmp_path / "cfg"  # a user's config.yaml alone is not a run
    only_config.mkdir()
    (only_config / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(Exception, match="not a hiervq"):
        check_replaceable(only_config)
    monkeypatch.setenv("HOME", str(marked))
    with pytest.raises(Exception, match="home directory"):
        check_replaceable(marked)
    monkeypatch.undo()
    (tmp_path / "link").symlink_to(marked)
    with pytest.raises(Exception, match="symbolic link"):
        check_replaceable(tmp_path / "link")
    with pytest.raises(Exception, match="working directory"):
        check_replaceable("/")


# ---------------------------------------------------------------------- 2. validate first, then swap in
@pytest.mark.parametrize(
    "bad", [["data.name=npz", "data.path=missing.npz"], ["data.image_size=7"], ["model.levels.0.downsample=3"]]
)
def test_old_run_survives_a_failed_overwrite(bad, run_copy, tmp_path, capsys):
    before = snapshot(run_copy)
    args = ["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"]
    for item in bad:
        args += ["--set", item]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert snapshot(run_copy) == before
    assert {p.name for p in tmp_path.iterdir()} - {".run.lock"} == {"run", "tiny.yaml"}  # no half-built run beside it


def test_overwrite_replaces_a_finished_run(run_copy, tmp_path, capsys):
    old_model = (run_copy / "model" / "model.safetensors").read_bytes()
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite", "--set", "seed=3"], capsys)
    assert code == 0, err
    assert "seed: 3" in (run_copy / "config.yaml").read_text()
    assert (run_copy / RUN_MARKER).is_file() and (run_copy / "summary.json").is_file()
    assert (run_copy / "model" / "model.safetensors").read_bytes() != old_model
    assert not [p for p in tmp_path.iterdir() if ".new-" in p.name or ".old-" in p.name or p.name.endswith(".pid")]


def test_an_interrupted_swap_is_undone(tmp_path):
    run = tmp_path / "run"
    start_run_dir(run, {"config.yaml": b"seed: 1\n"})
    aside = tmp_path / ".run.old-abc"
    os.rename(run, aside)  # killed between renaming the old run aside and the new one in
    (tmp_path / ".run.new-xyz").mkdir()
    remove_leftovers(run)
    assert (run / "config.yaml").read_text() == "seed: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---------------------------------------------------------------------- 3. decode keeps existing files
def test_decode_refuses_existing_files(finished_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(photos / f"im{i}.png")
    before = snapshot(photos)
    codes = tmp_path / "codes.npz"
    assert run_cli(["encode", finished_run, photos, "-o", codes], capsys)[0] == 0
    code, _, err = run_cli(["decode", finished_run, codes, "-o", photos], capsys)
    assert_one_line_error(code, err, photos / "im0.png", "--overwrite")
    assert snapshot(photos) == before  # nothing written, not even grid.png
    code, _, err = run_cli(["decode", finished_run, codes, "-o", photos, "--overwrite"], capsys)
    assert code == 0, err
    assert snapshot(photos)["im0.png"] != before["im0.png"] and (photos / "grid.png").is_file()


# ---------------------------------------------------------------------- 4. one writer per run
def test_a_second_writer_is_refused(run_copy, tmp_path, capsys):
    with RunLock(run_copy):
        code, _, err = run_cli(["train", "--resume", run_copy], capsys)
        assert_one_line_error(code, err, run_copy, f"PID {os.getpid()}")
        code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
        assert_one_line_error(code, err, f"PID {os.getpid()}")
        assert (run_copy / "summary.json").is_file()
    with RunLock(tmp_path / "new"):
        code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", tmp_path / "new"], capsys)
        assert_one_line_error(code, err, f"PID {os.getpid()}")
    assert not (tmp_path / "new").exists()


def test_a_second_prior_writer_is_refused(finished_run, tmp_path, capsys):
    with RunLock(tmp_path / "p"):
        code, _, err = run_cli(["prior", finished_run, "--level", "0", "--out", tmp_path / "p"], capsys)
    assert_one_line_error(code, err, f"PID {os.getpid()}")


def test_the_lock_is_released_and_beside_the_run(run_copy, capsys):
    code, _, err = run_cli(["train", "--resume", run_copy], capsys)
    assert code == 0, err
    assert lock_path(run_copy) == run_copy.parent / ".run.lock" and lock_path(run_copy).is_file()
    assert not (run_copy.parent / ".run.lock.pid").exists()
    with RunLock(run_copy):  # free again
        pass


# ---------------------------------------------------------------------- 13a, 14: temp files and modes
def test_stale_temp_files_are_removed_on_resume(run_copy, capsys):
    stale = [run_copy / "checkpoints" / ".last.pt.k2j4h5g6.tmp", run_copy / ".summary.json.a1b2c3d4.tmp",
             run_copy / "model" / ".model.safetensors.x_y_z_0w.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    keep = run_copy / "checkpoints" / "mine.tmp"  # not the atomic-write pattern
    keep.write_bytes(b"x")
    code, _, err = run_cli(["train", "--resume", run_copy], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in stale) and keep.exists()


def test_atomic_writes_respect_the_umask(tmp_path):
    from hiervq.pretrained import atomic_write_bytes

    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        start_run_dir(tmp_path / "r", {"config.yaml": b"seed: 0\n"})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r" / "config.yaml").stat().st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "a.json", 0o604)  # replacing a file keeps its mode, as open(path, "w") does
    atomic_write_bytes(tmp_path / "a.json", b"[]")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o604
