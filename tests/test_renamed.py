"""One name for K: ``codebook_size``. The old spelling ``num_codes`` keeps working with a DeprecationWarning, and
models saved before the rename still load."""

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
from hiervq.schema import from_dict


@pytest.mark.parametrize("cls", [Codebook, SimCodebook])
def test_codebooks_take_the_old_keyword_and_attribute(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        book = cls(codebook_size=8, dim=4)
    assert book.codebook_size == 8 and book.weight.shape == (8, 4)
    with pytest.warns(DeprecationWarning, match="num_codes= is deprecated; use codebook_size="):
        old = cls(num_codes=8, dim=4)
    assert old.codebook_size == 8
    with pytest.warns(DeprecationWarning, match="num_codes is deprecated"):
        assert old.num_codes == 8
    with pytest.raises(AttributeError):
        old.num_codes = 3
    with pytest.raises(TypeError, match="give codebook_size only"):
        cls(codebook_size=8, num_codes=8, dim=4)


def test_prior_configs_and_classifiers_take_the_old_keywords():
    with pytest.warns(DeprecationWarning):
        prior = PixelCNN(num_codes=6, channels=4, layers=1, cond_num_codes=3)
    assert prior.config.codebook_size == 6 and prior.config.cond_codebook_size == 3
    with pytest.warns(DeprecationWarning):
        assert PixelCNNConfig(num_codes=5).codebook_size == 5
    with pytest.warns(DeprecationWarning):
        assert prior.config.num_codes == 6
    assert PixelCNN().config.codebook_size == 512  # the default is unchanged
    with pytest.warns(DeprecationWarning):
        seq = TransformerPrior(num_codes=7, length=3, dim=8, layers=1, heads=2)
    assert seq.config.codebook_size == 7
    with pytest.warns(DeprecationWarning):
        assert CodeCountBayes(num_codes=4, num_classes=2).codebook_size == 4
    z = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
    y = torch.tensor([0, 1, 0, 1])
    with pytest.warns(DeprecationWarning):
        old = bayes_curves(z, y, z, y, num_codes=4)
    assert old == bayes_curves(z, y, z, y, codebook_size=4)
    info = LevelInfo((4, 2), codebook_size=16, code_dim=2, channels=3)
    assert info.positions == 8
    with pytest.warns(DeprecationWarning):
        assert info.num_codes == 8


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
