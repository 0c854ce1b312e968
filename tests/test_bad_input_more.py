"""More bad inputs (issue 27: hostile files, full disks, read-only folders, values only torch used to catch).

The cases reuse the helpers and the trained run of :mod:`tests.test_bad_input` and are checked the same way: exit
code 2, one line ``hiervq: error: ...`` naming the file or key, no traceback, nothing created or changed on disk.
Writes that fail (disk full, permissions) are simulated by patching ``os.replace``, as root can write anywhere.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hiervq.cli import main

from .test_bad_input import codes_file, copy_model, copy_run, snapshot, tiny, trained, write_config  # noqa: F401

CASES: dict = {}


def case(name: str):
    def register(make):
        assert name not in CASES, name
        CASES[name] = make
        return make

    return register


def alias_bomb(levels: int = 8) -> str:
    """A billion-laughs YAML: 9 ** levels values from a few hundred bytes of nested aliases."""
    parts = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefghij", "bcdefghijk"[: levels - 1]):
        parts.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "seed: {" + ", ".join(parts) + "}\n"


# ---------------------------------------------------------------------- D12: YAML alias bombs
@case("yaml-alias-bomb")
def _(t, run):
    return ["train", write_config(t, alias_bomb()), "--out", t / "out"], "c.yaml: YAML aliases (*a) are not allowed"


@case("yaml-alias-bomb-in-set")
def _(t, run):
    value = "[" + ", ".join(["&a [1, 2]"] + ["*a"] * 3) + "]"
    return ["train", write_config(t, tiny()), "--out", t / "out", "--set", f"train.betas={value}"], "YAML aliases"


@case("yaml-huge-value-message-is-capped")
def _(t, run):  # no alias, just a long value: the message is cut at 500 characters
    return ["train", write_config(t, "seed: [" + ", ".join(["123456789"] * 20000) + "]\n"), "--out", t / "out"], "..."


# ---------------------------------------------------------------------- D15: names in a codes file
for _label, _name in [("dotdot", ".."), ("slash", "x/../../evil.png"), ("backslash", "..\\evil.png"),
                      ("nul", "a\0b.png"), ("empty", " "), ("dot", ".")]:
    def _bad_name(t, run, name=_name):
        return ["decode", run, codes_file(t, run, names=np.array(["a.png", name, "c.png"])), "-o", t / "dec"], \
            "codes.npz: names[1]"

    case(f"decode-names-{_label}")(_bad_name)


@case("decode-names-integers")
def _(t, run):
    return ["decode", run, codes_file(t, run, names=np.arange(3)), "-o", t / "dec"], "codes.npz: names holds int"


# ---------------------------------------------------------------------- the test
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_more(name, trained, tmp_path, capsys, monkeypatch):
    run, run_snapshot = trained
    monkeypatch.chdir(tmp_path)
    t = tmp_path / "w"
    t.mkdir()
    argv, needle = CASES[name](t, run)
    before = snapshot(tmp_path)
    capsys.readouterr()
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hiervq: error: ") and err.count("\n") == 1, err[:2000]
    assert len(err) <= 520 and "Traceback" not in err
    assert needle in err, err
    assert seconds < 20, f"{seconds:.1f}s on a hostile input"
    assert snapshot(tmp_path) == before, "the failed command changed the scratch folder"
    assert snapshot(run.parent) == run_snapshot, "the failed command changed the trained run"


# ---------------------------------------------------------------------- D14: PNGs on a full disk or a read-only folder
@pytest.fixture(scope="module")
def prior_run_dir(tmp_path_factory):
    """A tiny run with a small PixelCNN prior per level (for ``sample``, ``compress`` and ``decompress``)."""
    import hiervq
    from hiervq.priors import prior_kind_for
    from hiervq.priors.run import prior_run
    from hiervq.train import config_from_dict, train_run

    torch.set_num_threads(1)
    raw = tiny(priors={"model": {"channels": 8, "layers": 1},
                       "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False}})
    run = tmp_path_factory.mktemp("priors") / "run"
    train_run(config_from_dict(raw, "tiny"), run)
    model = hiervq.load(run)
    for level in prior_kind_for(model).prior_levels(model):
        prior_run(run, level, log=lambda msg: None)
    return run


def fail_png_writes(monkeypatch, error: int, after: int = 0) -> None:
    """Make the atomic rename of every PNG after the first ``after`` fail with the OS error ``error``."""
    replace = os.replace
    done = []

    def failing(src, dst):
        if str(dst).endswith(".png"):
            if len(done) >= after:
                raise OSError(error, os.strerror(error))
            done.append(dst)
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)


def refuse_temp_files(monkeypatch) -> None:
    """A read-only folder: creating the temporary file beside the target fails with EACCES."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)


def run_failing(argv, tmp_path, capsys) -> str:
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hiervq: error: cannot write ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert snapshot(tmp_path) == before, "a failed write left files behind"
    return err


@pytest.mark.parametrize("how", ["full-disk", "read-only"])
def test_decode_write_failures_name_the_path_and_leave_nothing(trained, tmp_path, capsys, monkeypatch, how):
    run = trained[0]
    codes = codes_file(tmp_path, run)
    if how == "full-disk":
        fail_png_writes(monkeypatch, errno.ENOSPC, after=1)  # a.png written, b.png fails: a.png goes again
        err = run_failing(["decode", run, codes, "-o", tmp_path / "dec"], tmp_path, capsys)
        assert f"{tmp_path / 'dec' / 'b.png'}: No space left on device" in err, err
    else:
        (tmp_path / "dec").mkdir()
        refuse_temp_files(monkeypatch)
        err = run_failing(["decode", run, codes, "-o", tmp_path / "dec"], tmp_path, capsys)
        assert f"{tmp_path / 'dec' / 'a.png'}: Permission denied" in err, err


@pytest.mark.parametrize("how", ["full-disk", "read-only"])
def test_sample_write_failures_name_the_path_and_leave_nothing(prior_run_dir, tmp_path, capsys, monkeypatch, how):
    if how == "full-disk":
        fail_png_writes(monkeypatch, errno.ENOSPC)
    else:
        refuse_temp_files(monkeypatch)
    target = tmp_path / "new" / "s.png"
    err = run_failing(["sample", prior_run_dir, "-n", "2", "-o", target], tmp_path, capsys)
    assert f"cannot write {target}: " in err and ("No space" in err or "Permission denied" in err), err


def test_decompress_on_a_full_disk_leaves_nothing(prior_run_dir, tmp_path, capsys, monkeypatch):
    from PIL import Image

    pytest.importorskip("constriction")
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    images = [tmp_path / f"{i}.png" for i in range(3)]
    assert main(["compress", str(prior_run_dir), *map(str, images), "-o", str(tmp_path / "hvq")]) == 0
    fail_png_writes(monkeypatch, errno.ENOSPC, after=2)
    err = run_failing(["decompress", prior_run_dir, tmp_path / "hvq", "-o", tmp_path / "out", "--batch-size", "1"],
                      tmp_path, capsys)
    assert "out/2.png: No space left on device" in err, err
