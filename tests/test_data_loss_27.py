# ruff: noqa: F811 - the fixtures finished_run and run_copy are imported from test_data_loss and used as arguments
"""Issue 27, data loss and concurrent writers (D1-D7, D21): each defect's reproduction, as a user would type it.

D1 an --overwrite that fails once training started keeps the old run; D2/D3 only files in the marker's manifest are
hiervq's, at any depth; D4 -o never replaces a file without --overwrite, never an input or a run's own file; D5 one
lock per resolved path; D6 ``hiervq prior`` locks the run it writes into; D7 --resume with fewer epochs than done
is refused; D21 a batch larger than the training set is refused before anything is written.
"""

import os

import numpy as np
import pytest
from PIL import Image

from hiervq.train.rundir import RUN_MARKER, RunLock, foreign_files, lock_path, read_manifest
from hiervq.train.trainer import Trainer

from .test_data_loss import assert_one_line_error, finished_run, run_cli, run_copy, snapshot, tiny_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- D1: the old run waits aside
def test_d1_failure_after_training_started_keeps_the_old_run(run_copy, tmp_path, capsys, monkeypatch):
    before = snapshot(run_copy)

    def boom(*args, **kwargs):
        raise RuntimeError("failed at the first batch")

    monkeypatch.setattr(Trainer, "train_step", boom)
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
    assert code == 1, err
    assert snapshot(run_copy) == before
    assert not [p for p in tmp_path.iterdir() if ".new-" in p.name or ".old-" in p.name]


def test_d1_a_kill_before_the_first_checkpoint_brings_the_old_run_back(run_copy, tmp_path):
    from hiervq.train.rundir import remove_leftovers, start_run_dir

    before = snapshot(run_copy)
    aside = start_run_dir(run_copy, {"config.yaml": b"seed: 9\n"})  # the new run started, then kill -9
    assert aside is not None and aside.is_dir()
    remove_leftovers(run_copy)  # what the next process does, holding the lock
    assert snapshot(run_copy) == before
    assert not aside.exists()


def test_d21_batch_larger_than_the_training_set_is_refused_up_front(run_copy, tmp_path, capsys):
    before = snapshot(run_copy)
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite",
                            "--set", "train.batch_size=100000"], capsys)
    assert_one_line_error(code, err, "train.batch_size")
    assert snapshot(run_copy) == before
    fresh = tmp_path / "fresh"
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", fresh, "--set", "train.batch_size=100000"], capsys)
    assert_one_line_error(code, err, "train.batch_size")
    assert not fresh.exists()  # no stub left behind


# ---------------------------------------------------------------------- D2, D3: a manifest, at every depth
def test_finished_run_lists_every_file_it_wrote(finished_run):
    manifest = read_manifest(finished_run)
    assert manifest is not None
    assert {"config.yaml", "summary.json", "model/config.json", "model/model.safetensors",
            "checkpoints/last.pt"} <= set(manifest)
    assert foreign_files(finished_run) == []


def test_d3_nested_and_png_user_files_are_never_deleted(run_copy, tmp_path, capsys):
    (run_copy / "model" / "NOTES.txt").write_text("mine")
    (run_copy / "holiday.png").write_bytes(b"\x89PNG mine")
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
    assert_one_line_error(code, err, "holiday.png", "model/NOTES.txt")
    assert (run_copy / "model" / "NOTES.txt").read_text() == "mine"
    assert (run_copy / "holiday.png").read_bytes() == b"\x89PNG mine"


def test_d3_a_changed_report_is_the_users(run_copy, tmp_path, capsys):
    (run_copy / "report.md").write_text("my own notes on this run, much longer than before " * 20)
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
    assert_one_line_error(code, err, "report.md")


def test_d2_user_results_and_report_are_not_a_run(tmp_path, capsys):
    d = tmp_path / "results"
    d.mkdir()
    (d / "results.json").write_text("{}")
    (d / "report.md").write_text("# mine")
    for command in (["train", tiny_config(tmp_path)], ["classify", tiny_config(tmp_path)]):
        code, _, err = run_cli([*command, "--out", d, "--overwrite"], capsys)
        assert_one_line_error(code, err, "not a hiervq")
        assert sorted(os.listdir(d)) == ["report.md", "results.json"]


def test_a_copied_run_can_still_be_overwritten(run_copy, tmp_path, capsys):
    code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite", "--set", "seed=4"], capsys)
    assert code == 0, err
    assert "seed: 4" in (run_copy / "config.yaml").read_text()
    assert foreign_files(run_copy) == []


# ---------------------------------------------------------------------- D4: -o onto existing files
def _png(path, size=(16, 16)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(path)  # grayscale, as the tiny run's digits
    return path


def test_d4_encode_never_replaces_its_input(finished_run, tmp_path, capsys):
    image = _png(tmp_path / "a.png")
    before = image.read_bytes()
    code, _, err = run_cli(["encode", finished_run, image, "-o", image], capsys)
    assert_one_line_error(code, err, "a.png")
    code, _, err = run_cli(["encode", finished_run, image, "-o", image, "--overwrite"], capsys)
    assert_one_line_error(code, err, "is the input")
    assert image.read_bytes() == before


def test_d4_existing_output_needs_overwrite(finished_run, tmp_path, capsys):
    image = _png(tmp_path / "a.png")
    codes = tmp_path / "codes.npz"
    codes.write_bytes(b"mine")
    code, _, err = run_cli(["encode", finished_run, image, "-o", codes], capsys)
    assert_one_line_error(code, err, "already exists", "--overwrite")
    assert codes.read_bytes() == b"mine"
    code, _, err = run_cli(["encode", finished_run, image, "-o", codes, "--overwrite"], capsys)
    assert code == 0, err
    assert codes.read_bytes() != b"mine"


def test_d4_eval_never_replaces_a_runs_file(run_copy, capsys):
    before = (run_copy / "config.yaml").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(["eval", run_copy, "-o", run_copy / "config.yaml", *extra], capsys)
        assert_one_line_error(code, err, "config.yaml")
    assert (run_copy / "config.yaml").read_bytes() == before


def test_d4_sample_keeps_the_users_png(finished_run, tmp_path, capsys):
    mine = _png(tmp_path / "mine.png")
    before = mine.read_bytes()
    code, _, err = run_cli(["sample", finished_run, "-o", mine], capsys)
    assert_one_line_error(code, err, "mine.png", "already exists")
    assert mine.read_bytes() == before


def test_out_and_o_are_both_accepted():
    from hiervq.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "c.yaml", "-o", "r"]).out == "r"
    assert parser.parse_args(["encode", "run", "x.png", "--out", "c.npz"]).output == "c.npz"


# ---------------------------------------------------------------------- D5, D6: one writer per run
def test_d5_a_symbolic_link_is_the_same_lock(run_copy, tmp_path):
    link = tmp_path / "r2"
    link.symlink_to(run_copy)
    assert lock_path(link) == lock_path(run_copy)
    with RunLock(run_copy):
        with pytest.raises(Exception, match="another process"):
            RunLock(link).acquire()


def test_d6_prior_holds_the_autoencoder_runs_lock(run_copy, tmp_path, capsys):
    with RunLock(run_copy):  # as a `hiervq prior RUN` in progress would
        before = snapshot(run_copy)
        code, _, err = run_cli(["train", tiny_config(tmp_path), "--out", run_copy, "--overwrite"], capsys)
        assert_one_line_error(code, err, "another process")
        assert snapshot(run_copy) == before
    code, _, err = run_cli(["prior", run_copy, "--level", "0", "--set", "train.epochs=1"], capsys)
    assert code == 0, err
    assert foreign_files(run_copy) == []  # the prior run and the cached codes are listed as hiervq's


# ---------------------------------------------------------------------- D7: resume never shrinks a run
def test_d7_resume_with_fewer_epochs_than_done_is_refused(tmp_path, capsys):
    run = tmp_path / "two"
    code, _, err = run_cli(["train", tiny_config(tmp_path, epochs=2), "--out", run], capsys)
    assert code == 0, err
    before = (run / "config.yaml").read_bytes()
    code, _, err = run_cli(["train", "--resume", run, "--set", "train.epochs=1"], capsys)
    assert_one_line_error(code, err, "2 epochs", "train.epochs")
    assert (run / "config.yaml").read_bytes() == before
    assert (run / RUN_MARKER).is_file()
