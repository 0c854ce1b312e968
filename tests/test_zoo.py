"""Tokenizers by name (hiervq.zoo): the shipped ones load and still match their cards, `hiervq models`, encoding by
name, the one-line errors for unknown names and hub ids, and the user's $HIERVQ_MODELS folder."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hiervq
from hiervq import zoo
from hiervq.cli import main
from hiervq.errors import CheckpointError
from hiervq.pretrained import export

from .conftest import REPO, TINY_RUN

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = [t.name for t in zoo.list_tokenizers() if t.source == "shipped"]
CARD_KEYS = ("name", "model", "bits_per_image", "data", "recipe", "overrides", "hiervq_commit", "training",
             "weights_dtype", "test", "check", "size_bytes")


@pytest.fixture(autouse=True)
def no_user_models(monkeypatch):
    """The user's own $HIERVQ_MODELS must not leak into these tests."""
    monkeypatch.delenv(zoo.ENV, raising=False)


def _tiny_model():
    from hiervq.train import config_from_dict

    torch.manual_seed(0)
    model = config_from_dict(TINY_RUN, "tiny").build_model(in_channels=1, image_size=16)
    model.train()
    model(torch.rand(8, 1, 16, 16))  # initialise the codebooks
    return model.eval()


def _png(path: Path, size=(28, 28)) -> Path:
    Image.fromarray((np.random.default_rng(0).random(size) * 255).astype(np.uint8)).save(path)
    return path


def test_the_mnist_tokenizer_is_shipped():
    assert "mnist-vqvae-512" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tokenizer_loads_by_name_and_matches_its_card(name):
    from hiervq.data import DataConfig
    from hiervq.train.run import evaluate_first

    entry = zoo.find(name)
    card = entry.card
    assert entry.source == "shipped" and all(k in card for k in CARD_KEYS), sorted(set(CARD_KEYS) - set(card))
    assert (entry.path / zoo.CARD_MD).is_file() and name in (entry.path / zoo.CARD_MD).read_text()
    assert card["size_bytes"] == entry.size_bytes() < 8_000_000  # the package stays small
    model = hiervq.load(name)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert model.budget().bits_per_image == card["bits_per_image"]
    assert card["data"]["licence"] and card["training"]["epochs"] >= 1
    assert card["test"]["mse"] <= card["test_float32"]["mse"] * 1.01  # float16 only when within 1 %

    d = card["data"]
    path = (REPO / d["path"]).resolve()  # cards record the path relative to the repository root
    if not path.exists():
        pytest.skip(f"{path} not present: the card's metrics are not re-measured")
    check = card["check"]
    data = DataConfig(name=d["name"], path=str(path), image_size=d["image_size"], fit=d["fit"], channels=d["channels"],
                      classes=d.get("classes"))
    got = evaluate_first(model, data, check["first"])
    assert got["images"] == check["first"]
    assert got["mse"] == pytest.approx(check["mse"], rel=2e-3)
    assert got["psnr"] == pytest.approx(check["psnr"], abs=0.02)
    assert got["ssim"] == pytest.approx(check["ssim"], abs=1e-3)


WITH_PRIORS = [t.name for t in zoo.list_tokenizers() if t.source == "shipped" and t.card.get("priors")]


@pytest.mark.parametrize("name", WITH_PRIORS)
def test_shipped_tokenizer_with_priors_samples_by_name(name, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["sample", name, "-n", "10", "-o", str(out), "--seed", "1"]) == 0
    assert out.is_file() and "sampled 10 images" in capsys.readouterr().out
    priors = zoo.find(name).card["priors"]
    assert [p["level"] for p in priors] == sorted(p["level"] for p in priors)
    assert all((zoo.find(name).path / "priors" / f"level{p['level']}" / "model.safetensors").is_file() for p in priors)


def test_models_lists_the_shipped_tokenizers(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["name", "source", "data", "bits/image"]
    for name in SHIPPED:
        row = next(r for r in rows if r.startswith(name + " "))
        card = zoo.find(name).card
        assert "shipped" in row and f"{card['test']['mse']:.2e}" in row and ("kB" in row or "MB" in row)
    assert main(["models", "--path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == zoo.shipped_dir()


def test_encode_and_decode_by_name(tmp_path, capsys):
    png = _png(tmp_path / "digit.png")
    out = tmp_path / "c.npz"
    assert main(["encode", "mnist-vqvae-512", str(png), "-o", str(out), "--resize"]) == 0
    assert "512 bits/image" in capsys.readouterr().out
    codes = np.load(out)
    assert codes["level0"].shape == (1, 8, 8) and codes["level0"].max() < 256
    assert main(["decode", "mnist-vqvae-512", str(out), "-o", str(tmp_path / "dec")]) == 0
    assert Image.open(tmp_path / "dec" / "digit.png").size == (32, 32)
    # at its own size (the default): a 28x28 digit is coded as 7x7 codes of 8 bits and decodes to 28x28
    assert main(["encode", "mnist-vqvae-512", str(png), "-o", str(tmp_path / "n.npz")]) == 0
    assert "392 bits/image" in capsys.readouterr().out
    assert np.load(tmp_path / "n.npz")["level0"].shape == (1, 7, 7)
    assert main(["decode", "mnist-vqvae-512", str(tmp_path / "n.npz"), "-o", str(tmp_path / "dec2")]) == 0
    assert Image.open(tmp_path / "dec2" / "digit.png").size == (28, 28)


def test_unknown_names_and_hub_ids_fail_in_one_line(tmp_path, capsys):
    png = _png(tmp_path / "x.png")
    assert main(["encode", "no-such-tokenizer", str(png), "-o", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-tokenizer" in err
    assert "mnist-vqvae-512" in err and zoo.ENV in err  # the known names, and where the user's own go

    assert main(["encode", "someorg/some-model", str(png), "-o", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "downloads nothing" in err and "some-model" in err and zoo.ENV in err
    assert not (tmp_path / "c.npz").exists()
    with pytest.raises(CheckpointError, match="known tokenizer"):
        hiervq.load("no-such-tokenizer")
    with pytest.raises(CheckpointError, match="no such file or directory$"):
        hiervq.load(tmp_path / "missing" / "deeper" / "run")  # a plain missing path says just that


def test_user_directory_from_the_environment(tmp_path, monkeypatch, capsys):
    user = tmp_path / "models"
    model = _tiny_model()
    model.save_pretrained(user / "mine")
    model.save_pretrained(user / "mnist-vqvae-512")  # a shipped name: the shipped one wins
    (user / "not-a-model").mkdir()
    (user / "mine" / zoo.CARD_JSON).write_text(json.dumps({"data": {"name": "digits"}, "bits_per_image": 96}))
    monkeypatch.setenv(zoo.ENV, str(user))

    loaded = hiervq.load("mine")
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x).recon, model(x).recon)
    assert hiervq.load("mnist-vqvae-512").image_shape == (1, 32, 32)
    assert [t.name for t in zoo.list_tokenizers() if t.source == "user"] == ["mine"]

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(r for r in out.splitlines() if r.startswith("mine "))
    assert row.split()[1:4] == ["user", "digits", "96"] and str(user) in out

    # an existing path wins over every name
    monkeypatch.chdir(tmp_path)
    model.save_pretrained(tmp_path / "mnist-vqvae-512")
    assert hiervq.load("mnist-vqvae-512").image_shape == (1, 16, 16)
    assert zoo.resolve("mnist-vqvae-512") == Path("mnist-vqvae-512")

    (tmp_path / "mnist-vqvae-512" / "config.json").unlink()  # a folder that is no model still wins, and says so
    with pytest.raises(CheckpointError, match="hides the tokenizer 'mnist-vqvae-512'"):
        hiervq.load("mnist-vqvae-512")

    monkeypatch.setenv(zoo.ENV, str(tmp_path / "nowhere"))  # a missing folder is no error, just no models
    assert [t.source for t in zoo.list_tokenizers()] == ["shipped"] * len(SHIPPED)
    with pytest.raises(CheckpointError, match="nowhere"):
        hiervq.load("mine")


# ---------------------------------------------------------------------- priors for a model that is not a run
PRIOR_SET = ["--set", "data.train_limit=64", "--set", "data.test_limit=16", "--set", "train.epochs=1",
             "--set", "train.batch_size=32", "--set", "train.progress=false", "--set", "model.channels=8",
             "--set", "model.layers=1"]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_priors_for_a_named_model_go_to_out_and_compress_by_name(tmp_path, monkeypatch, capsys):
    """`hiervq prior NAME --level all --out DIR` for a model that is not a run: nothing is written into the model's
    folder; DIR holds codes.npz and level<N>/; compress/decompress (and hiervq.compress/decompress) take the name
    with --priors DIR/level*; the advice of compress without priors is a command that works as printed."""
    import shlex

    from hiervq.pretrained import save_pretrained

    user = tmp_path / "models"
    save_pretrained(_tiny_model(), user / "mine", data={"name": "digits", "image_size": 16, "channels": 1})
    monkeypatch.setenv(zoo.ENV, str(user))
    monkeypatch.chdir(tmp_path)
    before = _files(user)
    png = _png(tmp_path / "x.png", (20, 24))

    assert main(["prior", "mine", "--level", "all"]) == 2  # no --out: refused, naming it
    assert "--out mine-priors" in capsys.readouterr().err
    assert main(["compress", "mine", str(png), "-o", "x.hvq"]) == 2
    err = capsys.readouterr().err
    advice = err.split("`")[1]  # the printed command, run as printed
    assert advice == "hiervq prior mine --level all --out mine-priors" and "--priors mine-priors/level*" in err
    assert main(shlex.split(advice)[1:] + PRIOR_SET) == 0
    capsys.readouterr()
    out = tmp_path / "mine-priors"
    assert (out / "codes.npz").is_file() and all((out / f"level{i}" / "model" / "config.json").is_file()
                                                  for i in (0, 1))
    assert _files(user) == before  # the model's folder is untouched
    priors = [str(out / "level0"), str(out / "level1")]
    assert main(["compress", "mine", str(png), "-o", "x.hvq", "--priors", *priors]) == 0
    assert main(["decompress", "mine", "x.hvq", "-o", "back", "--priors", *priors]) == 0
    assert Image.open(tmp_path / "back" / "x.png").size == (24, 20)
    # without the model: the header's model id is looked for among the named tokenizers, and "mine" does not hold
    # these priors, so the file is refused naming the id, and nothing is written
    capsys.readouterr()
    assert main(["decompress", "x.hvq", "-o", "back-auto"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.hvq: compressed with model " in err and "mine" in err
    assert "hiervq decompress RUN x.hvq" in err and not (tmp_path / "back-auto").exists()
    # with the priors inside the tokenizer's folder (as a shipped tokenizer holds them), the header finds it
    for level in (0, 1):
        shutil.copytree(out / f"level{level}" / "model", user / "mine" / "priors" / f"level{level}")
    assert main(["decompress", "x.hvq", "-o", "back-auto"]) == 0
    assert (tmp_path / "back-auto" / "x.png").read_bytes() == (tmp_path / "back" / "x.png").read_bytes()
    shutil.rmtree(user / "mine" / "priors")
    before = _files(user)  # (the folder's own mtime moved with the copy)
    x = torch.rand(2, 1, 16, 16)
    data = hiervq.compress("mine", x, priors=priors)
    assert hiervq.decompress(data, "mine", priors=priors).shape == (2, 1, 16, 16)

    # `prior --resume PRIOR_DIR`, as `train --resume RUN`: the autoencoder and level come from its config
    capsys.readouterr()
    assert main(["prior", "--resume", str(out / "level1")]) == 0
    assert json.loads(capsys.readouterr().out)["level"] == 1
    # a single level with --out: the prior run directory itself, with its own codes
    assert main(["prior", "mine", "--level", "0", "--out", "p0", *PRIOR_SET]) == 0
    assert (tmp_path / "p0" / "codes.npz").is_file() and (tmp_path / "p0" / "model").is_dir()
    assert _files(user) == before


def test_decompress_without_the_model_finds_the_shipped_tokenizer_by_the_header(tmp_path, monkeypatch, capsys):
    """`hiervq decompress FILE` (no model named): the same PNG as with the name; the model alone, without files, and
    --priors without the model are refused in one line."""
    name = next(t.name for t in zoo.list_tokenizers() if t.source == "shipped" and (t.path / "priors").is_dir())
    monkeypatch.chdir(tmp_path)
    rgb = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert main(["compress", name, "x.png", "-o", "c/x.hvq"]) == 0
    assert main(["decompress", name, "c/x.hvq", "-o", "named"]) == 0
    assert main(["decompress", "c/x.hvq", "-o", "found"]) == 0
    assert main(["decompress", "c", "-o", "folder"]) == 0  # a folder of .hvq files first: files, not a model
    png = (tmp_path / "named" / "x.png").read_bytes()
    data = (tmp_path / "c" / "x.hvq").read_bytes()
    assert torch.equal(hiervq.decompress(data), hiervq.decompress(data, name))  # the Python API alike
    assert (tmp_path / "found" / "x.png").read_bytes() == png == (tmp_path / "folder" / "x.png").read_bytes()
    capsys.readouterr()
    assert main(["decompress", name, "-o", "none"]) == 2
    assert "a model, and no files to decompress" in capsys.readouterr().err
    assert main(["decompress", "c/x.hvq", "--priors", "p", "-o", "none"]) == 2
    assert "--priors: name the autoencoder run first" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_priors_of_a_shipped_model_are_never_written_into_the_package(tmp_path, capsys):
    name = "mnist-vqvae-512"
    before = _files(zoo.find(name).path)
    assert main(["prior", name]) == 2
    assert f"--out {name}-priors" in capsys.readouterr().err
    inside = zoo.find(name).path / "priors"
    assert main(["prior", name, "--level", "all", "--out", str(inside)]) == 2
    assert "never written into" in capsys.readouterr().err
    assert _files(zoo.find(name).path) == before


def test_resaving_a_loaded_model_keeps_its_metadata_and_dtype_and_export_copies_the_folder(tmp_path):
    """`save_pretrained(hiervq.load(X), dir)` writes X's data and extra metadata again and its float16 tensors as
    float16; `hiervq.pretrained.export(X, dir)` copies the whole folder (card and priors too); keep_source=False writes float32."""
    from safetensors.torch import load_file

    from hiervq.pretrained import save_pretrained

    src = tmp_path / "src"
    model = _tiny_model()
    save_pretrained(model, src, data={"name": "digits", "image_size": 16}, extra={"tokenizer": "src"})
    state = load_file(str(src / "model.safetensors"))
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    from safetensors.torch import save_file

    save_file(half, str(src / "model.safetensors"))  # as the shipped tokenizers store them
    (src / zoo.CARD_JSON).write_text(json.dumps({"name": "src"}))
    save_pretrained(model, src / "priors" / "level0")

    loaded = hiervq.load(src)
    assert next(loaded.parameters()).dtype == torch.float32
    save_pretrained(loaded, tmp_path / "again")
    meta = json.loads((tmp_path / "again" / "config.json").read_text())
    assert meta["data"]["name"] == "digits" and meta["extra"] == {"tokenizer": "src"}
    again = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert {k: v.dtype for k, v in again.items()} == {k: v.dtype for k, v in half.items()}
    assert all(torch.equal(again[k], half[k]) for k in half)  # float16 -> float32 -> float16 is exact
    save_pretrained(loaded, tmp_path / "plain", keep_source=False)
    plain = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "data" not in plain and "extra" not in plain
    stored = load_file(str(tmp_path / "plain" / "model.safetensors")).values()
    assert all(v.dtype == torch.float32 for v in stored if v.is_floating_point())

    out = export(src, tmp_path / "copy")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        export(src, out)


def test_models_name_prints_the_card_and_bad_user_entries_are_skipped(tmp_path, monkeypatch, capsys, caplog):
    """``hiervq models NAME`` prints a tokenizer's card (issue 26); an entry under $HIERVQ_MODELS whose card.json
    holds the wrong types, or a bare config.json, is listed with unknowns, never breaking the listing (D17)."""
    assert main(["models", "mnist-vqvae-512"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# mnist-vqvae-512 (shipped): ") and "512 bits per image" in out
    assert main(["models", "no-such-tokenizer"]) == 2
    assert "no-such-tokenizer" in capsys.readouterr().err
    user = tmp_path / "models"
    for name in ("bad", "bare"):
        (user / name).mkdir(parents=True)
        shutil.copy(zoo.shipped_dir() / "mnist-vqvae-512" / "config.json", user / name / "config.json")
    (user / "bad" / "card.json").write_text('{"data": "a string", "test": 3, "priors": 5, "bits_per_image": "x"}')
    (user / "stray.txt").write_text("not a tokenizer")
    monkeypatch.setenv(zoo.ENV, str(user))
    assert main(["models"]) == 0
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines()}
    assert rows["bad"][1] == "user" and rows["bad"][2:6] == ["?", "?", "?", "?"] and rows["bare"][1] == "user"
    assert main(["models", "bad"]) == 0 and '"a string"' in capsys.readouterr().out  # no card.md: its numbers
