"""More bad inputs (issue 27: hostile files, full disks, read-only folders, values only torch used to catch).

The cases reuse the helpers and the trained run of :mod:`tests.test_bad_input` and are checked the same way: exit
code 2, one line ``hiervq: error: ...`` naming the file or key, no traceback, nothing created or changed on disk.
Writes that fail (disk full, permissions) are simulated by patching ``os.replace``, as root can write anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hiervq.cli import main

from .test_bad_input import codes_file, copy_model, copy_run, gray_png, registry, snapshot, tiny, write_config

CASES: dict = {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny trained run the cases use (as in tests/test_bad_input.py), and a snapshot of its folder."""
    root = tmp_path_factory.mktemp("bad_input_more")
    assert main(["train", str(write_config(root, tiny())), "--out", str(root / "run")]) == 0
    return root / "run", snapshot(root)


case = registry(CASES)


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
                      ("nul", "a\0b.png"), ("empty", " "), ("dot", "."), ("absolute", "/tmp/evil.png"),
                      ("empty-folder", "a//b.png"), ("trailing-slash", "cats/"), ("dot-folder", "./a.png")]:
    def _bad_name(t, run, name=_name):
        return ["decode", run, codes_file(t, run, names=np.array(["a.png", name, "c.png"])), "-o", t / "dec"], \
            "codes.npz: names[1]"

    case(f"decode-names-{_label}")(_bad_name)


@case("decode-names-file-and-folder")
def _(t, run):  # "a.png" is written to dec/a.png, which "a.png/b.png" needs as a folder
    names = np.array(["a.png", "a.png/b.png", "c.png"])
    return ["decode", run, codes_file(t, run, names=names), "-o", t / "dec"], "a.png/b.png would be written into"


# ---------------------------------------------------------------------- -r/--recursive: trees in, trees out
def nested(t: Path, *paths: str) -> Path:
    """A folder ``t/imgs`` with a gray 16x16 PNG at each of ``paths`` below it."""
    for path in paths:
        (t / "imgs" / path).parent.mkdir(parents=True, exist_ok=True)
        gray_png(t / "imgs" / path)
    return t / "imgs"


@case("encode-recursive-clash")
def _(t, run):  # two folders with the same path below them: one PNG for both when decoded
    nested(t, "cats/a.png")
    (t / "more" / "cats").mkdir(parents=True)
    gray_png(t / "more" / "cats" / "a.png")
    return ["encode", run, "-r", t / "imgs", t / "more", "-o", t / "c.npz"], "would both be decoded to cats/a.png"


@case("compress-recursive-clash")
def _(t, run):
    imgs = nested(t, "cats/a.png", "cats/a.jpg")
    return ["compress", run, "-r", imgs, "-o", t / "out"], "a.jpg and"


@case("compress-recursive-output-inside-input")
def _(t, run):
    return ["compress", run, "-r", nested(t, "cats/a.png"), "-o", t / "imgs" / "out"], "is inside the input folder"


@case("compress-recursive-output-is-input")
def _(t, run):
    return ["compress", run, "-r", nested(t, "cats/a.png"), "-o", t / "imgs"], "is inside the input folder"


@case("compress-recursive-sub-folder-is-a-file")
def _(t, run):
    imgs = nested(t, "a.png", "cats/b.png")
    (t / "out").mkdir()
    (t / "out" / "cats").write_text("a file where a folder goes")
    return ["compress", run, "-r", imgs, "-o", t / "out"], "cats: is a file, not a folder"


@case("decompress-recursive-no-files")
def _(t, run):
    nested(t, "cats/a.png")
    return ["decompress", run, "-r", t / "imgs", "-o", t / "dec"], "no .hvq files found, sub-folders included"


@case("decompress-recursive-output-inside-input")
def _(t, run):
    (t / "c" / "cats").mkdir(parents=True)
    (t / "c" / "cats" / "a.hvq").write_bytes(b"HVQ")
    return ["decompress", run, "-r", t / "c", "-o", t / "c" / "cats"], "is inside the input folder"


@case("decode-names-integers")
def _(t, run):
    return ["decode", run, codes_file(t, run, names=np.arange(3)), "-o", t / "dec"], "codes.npz: names holds int"


# ---------------------------------------------------------------------- D18: a saved model's config.json
def edit_model_config(t: Path, run: Path, **changes) -> Path:
    model = copy_model(run, t)
    meta = json.loads((model / "config.json").read_text())
    meta.update(changes)
    (model / "config.json").write_text(json.dumps(meta))
    return model


@case("model-config-name-a-list")
def _(t, run):
    return ["decode", edit_model_config(t, run, model=["hvqvae"]), codes_file(t, run), "-o", t / "dec"], \
        "model/config.json: 'model' must be a model name"


@case("model-config-name-unknown")
def _(t, run):
    return ["decode", edit_model_config(t, run, model="vqgan"), codes_file(t, run), "-o", t / "dec"], \
        "model/config.json: unknown model name 'vqgan'"


@case("model-config-config-a-list")
def _(t, run):
    return ["decode", edit_model_config(t, run, config=[1, 2]), codes_file(t, run), "-o", t / "dec"], \
        "model/config.json: 'config' must be a mapping"


@case("model-config-data-a-list")
def _(t, run):
    return ["encode", edit_model_config(t, run, data=[1]), gray_png(t / "a.png"), "-o", t / "c.npz"], \
        "model/config.json: 'data' must be a mapping"


@case("model-config-a-folder")
def _(t, run):
    model = copy_model(run, t)
    (model / "config.json").unlink()
    (model / "config.json").mkdir()
    return ["decode", model, codes_file(t, run), "-o", t / "dec"], "not a saved model"


# ---------------------------------------------------------------------- D19, D22: training checkpoints
def edit_checkpoint(t: Path, run: Path, edit) -> Path:
    """A copy of the run whose checkpoint is ``edit(state)`` (or the bytes ``edit`` returns, when it returns bytes)."""
    r = copy_run(run, t)
    ckpt = r / "checkpoints" / "last.pt"
    state = edit(torch.load(ckpt, weights_only=True))
    if isinstance(state, bytes):
        ckpt.write_bytes(state)
    else:
        torch.save(state, ckpt)
    return r


@case("resume-checkpoint-empty")
def _(t, run):
    return ["train", "--resume", edit_checkpoint(t, run, lambda s: b""), "--set", "train.epochs=2"], \
        "last.pt: corrupt checkpoint (empty file)"


@case("resume-checkpoint-model-a-tensor")
def _(t, run):
    return ["train", "--resume", edit_checkpoint(t, run, lambda s: {"model": torch.zeros(3)}),
            "--set", "train.epochs=2"], "last.pt: not a hiervq training checkpoint (model"


@case("resume-checkpoint-no-step")
def _(t, run):
    return ["train", "--resume", edit_checkpoint(t, run, lambda s: {k: v for k, v in s.items() if k != "step"}),
            "--set", "train.epochs=2"], "last.pt: not a hiervq training checkpoint (step"


@case("resume-checkpoint-history-a-tensor")
def _(t, run):
    return ["train", "--resume", edit_checkpoint(t, run, lambda s: {**s, "history": torch.zeros(2)}),
            "--set", "train.epochs=2"], "last.pt: not a hiervq training checkpoint (history"


@case("resume-checkpoint-planted-pickle")
def _(t, run):
    class Planted:
        def __reduce__(self):
            return (print, ("planted code ran",))

    planted = edit_checkpoint(t, run, lambda s: pickle.dumps({**s, "x": Planted()}, protocol=2))
    return ["train", "--resume", planted, "--set", "train.epochs=2"], "last.pt: refused: it names Python code"


def _nan_weights(state):
    first = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    return state


@case("resume-checkpoint-nan-weights")
def _(t, run):
    return ["train", "--resume", edit_checkpoint(t, run, _nan_weights), "--set", "train.epochs=2"], \
        "last.pt: non-finite (NaN/inf) weights in encoders.0.net.0.weight"


# ---------------------------------------------------------------------- D14: PNGs on a full disk or a read-only folder
@pytest.fixture(scope="module")
def prior_run_dir(tmp_path_factory):
    """A tiny run with a small PixelCNN prior per level (for ``sample``, ``compress`` and ``decompress``)."""
    import hiervq
    from hiervq.priors import prior_kind_for
    from hiervq.train import config_from_dict, train_run
    from hiervq.train.priors import prior_run

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


def test_recursive_trees_on_a_full_disk_leave_nothing(prior_run_dir, tmp_path, capsys, monkeypatch):
    """compress -r and decompress -r write a tree: a write that fails half-way removes the files and the
    sub-folders the command made before it, not only the file it failed on."""
    from PIL import Image

    pytest.importorskip("constriction")
    for i, path in enumerate(["a.png", "x/b.png", "x/y/c.png"]):
        (tmp_path / "imgs" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "imgs" / path)
    replace, done = os.replace, []

    def failing(src, dst):  # the third .hvq cannot be written
        if str(dst).endswith(".hvq"):
            if len(done) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done.append(dst)
        return replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing)
        err = run_failing(["compress", prior_run_dir, "-r", tmp_path / "imgs", "-o", tmp_path / "hvq", "--batch-size",
                           "1"], tmp_path, capsys)
    assert "No space left on device" in err and not (tmp_path / "hvq").exists()
    assert main(["compress", str(prior_run_dir), "-r", str(tmp_path / "imgs"), "-o", str(tmp_path / "hvq")]) == 0
    fail_png_writes(monkeypatch, errno.ENOSPC, after=2)
    err = run_failing(["decompress", prior_run_dir, "-r", tmp_path / "hvq", "-o", tmp_path / "out", "--batch-size",
                       "1"], tmp_path, capsys)
    assert "out/x/y/c.png: No space left on device" in err and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- D18, D22: more than one line to check
def test_an_unreadable_model_config_names_the_file(trained, tmp_path, capsys, monkeypatch):
    model = copy_model(trained[0], tmp_path)
    read_text = Path.read_text

    def denied(self, *args, **kwargs):  # root reads anything: a chmod 000 would not stop it
        if self.name == "config.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    code = main(["decode", str(model), str(codes_file(tmp_path, trained[0])), "-o", str(tmp_path / "dec")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"hiervq: error: {model / 'config.json'}: cannot read (Permission denied)\n", err
    assert not (tmp_path / "dec").exists()


def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(trained, tmp_path, capsys, caplog):
    def drop(state):
        return {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}

    r = edit_checkpoint(tmp_path, trained[0], drop)
    with caplog.at_level("WARNING", logger="hiervq"):
        assert main(["train", "--resume", str(r), "--set", "train.epochs=2"]) == 0
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert any("the checkpoint has no optimizer state" in w and "restart from scratch at step 6" in w
               for w in warnings), warnings
    assert "last.pt" in warnings[0]


def test_a_checkpoint_with_optimizer_state_resumes_without_that_warning(trained, tmp_path, caplog):
    r = copy_run(trained[0], tmp_path)
    with caplog.at_level("WARNING", logger="hiervq"):
        assert main(["train", "--resume", str(r), "--set", "train.epochs=2"]) == 0
    assert not any("optimizer state" in rec.getMessage() for rec in caplog.records)


# ---------------------------------------------------------------------- D20: values only torch caught
BAD_VALUES = [
    ("model.res_channels", 0, "model: res_channels must be >= 1, got 0"),
    ("model.res_channels", -8, "res_channels must be >= 1"),
    ("train.betas", [2, 3], "betas must be two numbers in [0, 1), got [2.0, 3.0]"),
    ("train.betas", [0.9, 1.0], "betas must be two numbers in [0, 1)"),
    ("train.betas", [0.9, float("nan")], "betas"),
    ("train.device", "tpu7", "device must be auto, cpu, cuda, cuda:N or another torch device, got 'tpu7'"),
    ("data.seed", -1, "data: seed must be in [0, 2**63), got -1"),
    ("data.seed", 2**63, "data: seed must be in [0, 2**63)"),
    ("seed", 2**63, "seed must be in [0, 2**63), got 9223372036854775808"),
    ("seed", -1, "seed must be in [0, 2**63), got -1"),
    ("train.batch_size", 10**12, "train: batch_size must be <= 1048576"),
    ("train.eval_batch_size", 2**21, "train: eval_batch_size must be <= 1048576"),
]
if not torch.cuda.is_available():
    BAD_VALUES.append(("train.device", "cuda", "train.device: 'cuda', but no CUDA GPU is visible here"))


def _yaml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_yaml_value, value)) + "]"
    if isinstance(value, float) and value != value:
        return ".nan"
    return str(value)


for _key, _value, _needle in BAD_VALUES:
    def _in_file(t, run, key=_key, value=_value, needle=_needle):
        cfg = tiny()
        node = cfg
        *head, last = key.split(".")
        for part in head:
            node = node[part]
        node[last] = value
        return ["train", write_config(t, cfg), "--out", t / "out"], needle

    def _in_set(t, run, key=_key, value=_value, needle=_needle):
        return ["train", write_config(t, tiny()), "--out", t / "out", "--set", f"{key}={_yaml_value(value)}"], needle

    case(f"file:{_key}={_yaml_value(_value)}")(_in_file)
    case(f"set:{_key}={_yaml_value(_value)}")(_in_set)


for _flag, _text, _needle in [("--temperature", "nan", "--temperature must be a finite number > 0, got nan"),
                              ("--temperature", "inf", "--temperature must be a finite number > 0, got inf"),
                              ("--temperature", "0", "--temperature must be a finite number > 0, got 0.0"),
                              ("--temperature", "-1", "--temperature must be a finite number > 0"),
                              ("--seed", str(2**63), "--seed must be in [0, 2**63)"),
                              ("--seed", "-1", "--seed must be in [0, 2**63)")]:
    def _sampling(t, run, flag=_flag, text=_text, needle=_needle):
        return ["sample", run, "-n", "2", "-o", t / "s.png", f"{flag}={text}"], needle

    case(f"sample{_flag}={_text}")(_sampling)


def test_a_class_conditional_prior_on_huge_labels_is_refused_up_front(tmp_path, capsys):
    from .test_bad_input import write_npz

    labels = np.arange(12) % 3
    labels[0] = 2**40
    data = write_npz(tmp_path, train_labels=labels)
    raw = tiny(data={"name": "npz", "path": str(data), "image_size": 16})
    raw["train"]["batch_size"] = 4
    cfg = write_config(tmp_path, raw)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    start = time.perf_counter()
    code = main(["prior", str(tmp_path / "run"), "--level", "0", "--class-conditional"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("hiervq: error:") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith("hiervq: error: ") and "num_classes must be in [1, 65536]" in last, err
    assert "1099511627777" in last and time.perf_counter() - start < 20
    assert not (tmp_path / "run" / "priors" / "level0").exists()


# ---------------------------------------------------------------------- the test (last: every case above is registered)
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
    assert "weights_only" not in err  # torch's advice to unpickle anything: never passed on
    assert seconds < 20, f"{seconds:.1f}s on a hostile input"
    assert snapshot(tmp_path) == before, "the failed command changed the scratch folder"
    assert snapshot(run.parent) == run_snapshot, "the failed command changed the trained run"
