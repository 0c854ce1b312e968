"""One name for K: ``codebook_size``. Configs and models saved with the old spelling ``num_codes`` still load, through
the one migration of renamed keys (:func:`hiervq.schema.from_dict`); the classes take the new name only."""

import json
import warnings

import pytest
import torch

import hiervq
from hiervq.classify.bayes import CodeCountBayes
from hiervq.errors import ConfigError
from hiervq.experiments.pqvae import bayes_curves
from hiervq.models.base import LevelInfo
from hiervq.priors import PixelCNN
from hiervq.priors.pixelcnn import PixelCNNConfig
from hiervq.priors.transformer import TransformerPrior, TransformerPriorConfig
from hiervq.quantize import Codebook
from hiervq.quantize.simvq import SimCodebook
from hiervq.schema import from_dict, with_old_keys


@pytest.mark.parametrize("make", [
    lambda **kw: Codebook(dim=4, **kw),
    lambda **kw: SimCodebook(dim=4, **kw),
    lambda **kw: PixelCNN(channels=4, layers=1, **kw),
    lambda **kw: PixelCNNConfig(**kw),
    lambda **kw: TransformerPriorConfig(**kw),
    lambda **kw: CodeCountBayes(num_classes=2, **kw),
])
def test_the_classes_take_the_new_name_only(make):
    """The old spelling is read from configs and saved models only (the one migration, in hiervq.schema); the
    classes and functions themselves take ``codebook_size``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        assert make(codebook_size=8) is not None
    with pytest.raises(TypeError):  # an unexpected keyword, or codebook_size missing
        make(num_codes=8)


def test_functions_and_level_info_have_no_old_names():
    z = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(TypeError, match="num_codes"):
        bayes_curves(z, y, z, y, num_codes=4)
    assert bayes_curves(z, y, z, y, codebook_size=4)["prefix_lengths"] == [1, 2]
    info = LevelInfo((4, 2), codebook_size=16, code_dim=2, channels=3)
    assert info.positions == 8 and not hasattr(info, "num_codes")


def test_the_codec_id_hashes_the_old_names():
    """with_old_keys is the inverse of the migration: what the codec hashes (the keys of format version 1)."""
    config = PixelCNNConfig(codebook_size=9, cond_codebook_size=2)
    old = with_old_keys(config)
    assert old["num_codes"] == 9 and old["cond_num_codes"] == 2 and "codebook_size" not in old
    assert "depth" not in old  # a key added since, at its default
    assert from_dict(PixelCNNConfig, old) == config


def test_configs_read_the_old_key_once():
    assert from_dict(PixelCNNConfig, {"num_codes": 9, "cond_num_codes": 2}).codebook_size == 9
    with pytest.raises(ConfigError, match="give 'codebook_size' only"):
        from_dict(TransformerPriorConfig, {"num_codes": 9, "codebook_size": 9}, "prior")


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
def test_priors_saved_with_the_old_keys_still_load(tmp_path, kind):
    torch.manual_seed(0)
    if kind == "pixelcnn":
        prior = PixelCNN(6, channels=4, layers=2, cond_codebook_size=3).eval()
        args = (torch.randint(0, 6, (2, 4, 4)), torch.randint(0, 3, (2, 2, 2)))
    else:
        prior = TransformerPrior(TransformerPriorConfig(codebook_size=6, length=5, dim=8, layers=1, heads=2)).eval()
        args = (torch.randint(0, 6, (2, 5)),)
    prior.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    config = meta["config"]
    config["num_codes"] = config.pop("codebook_size")  # as written before the rename
    if "cond_codebook_size" in config:
        config["cond_num_codes"] = config.pop("cond_codebook_size")
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a saved file is read silently
        loaded = hiervq.load(tmp_path)
    assert loaded.config == prior.config
    with torch.no_grad():
        assert torch.equal(loaded(*args), prior(*args))
