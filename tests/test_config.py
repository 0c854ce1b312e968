"""Configs: typed validation with errors that name the key and the file, and --set overrides."""

import pytest
import yaml

from hiervq.errors import ConfigError
from hiervq.train import apply_overrides, config_from_dict, load_config


def write(tmp_path, data, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_shipped_configs_are_valid():
    from pathlib import Path

    load_config(None)
    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ holds recipes"
    for path in configs:
        load_config(path)


def test_unknown_key_names_the_key_and_the_file(tmp_path, tiny_run_config):
    tiny_run_config["train"]["epochz"] = 3
    path = write(tmp_path, tiny_run_config)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "epochz" in str(err.value) and str(path) in str(err.value) and "train" in str(err.value)


def test_unknown_nested_model_key(tmp_path, tiny_run_config):
    tiny_run_config["model"]["quantizer"]["betta"] = 0.3
    path = write(tmp_path, tiny_run_config)
    with pytest.raises(ConfigError, match=r"run.yaml: model.quantizer: unknown key 'betta'"):
        load_config(path)


def test_wrong_types_and_values(tmp_path, tiny_run_config):
    cfg = dict(tiny_run_config, train={"epochs": "many"})
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer"):
        config_from_dict(cfg, "x.yaml")
    cfg = dict(tiny_run_config, train={"optimizer": "sgd"})
    with pytest.raises(ConfigError, match="optimizer must be one of adam, adamw"):
        config_from_dict(cfg, "x.yaml")
    cfg = dict(tiny_run_config, model={"name": "transformer"})
    with pytest.raises(ConfigError, match="'transformer' is not a known model"):
        config_from_dict(cfg, "x.yaml")
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        config_from_dict({"modle": {}}, "x.yaml")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_set_overrides(tmp_path, tiny_run_config):
    path = write(tmp_path, tiny_run_config)
    cfg = load_config(
        path,
        ["train.epochs=7", "train.lr=1e-3", "model.levels.0.codebook_size=64", "model.quantizer.ema_decay=null",
         "data.classes=[0, 1]", "model.mode=unconditioned"],
    )
    assert cfg.train.epochs == 7 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model["levels"][0]["codebook_size"] == 64
    assert cfg.model["quantizer"]["ema_decay"] is None
    assert cfg.data.classes == [0, 1]
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(path, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides({"a": [1]}, ["a.3=2"])


def test_resolved_config_round_trips(tiny_run_config):
    import yaml as y

    from hiervq.train import dump_config

    cfg = config_from_dict(tiny_run_config)
    again = config_from_dict(y.safe_load(dump_config(cfg)))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("key,value,layer", [
    ("ema_decay", 1.5, lambda: __import__("hiervq").Codebook(8, 2, ema_decay=1.5)),
    ("reseed", "zero", lambda: __import__("hiervq").Codebook(8, 2, reseed="zero")),
    ("estimator", "magic", lambda: __import__("hiervq").VectorQuantizer(4, 8, estimator="magic")),
    ("dead_threshold", -1.0, lambda: __import__("hiervq").Codebook(8, 2, dead_threshold=-1.0)),
])
def test_a_quantizer_setting_is_checked_by_one_rule(tmp_path, tiny_run_config, key, value, layer):
    """The config and the standalone layer refuse a bad setting with the same message (written once)."""
    with pytest.raises(ValueError) as standalone:
        layer()
    tiny_run_config["model"]["quantizer"][key] = value
    with pytest.raises(ConfigError) as configured:
        load_config(write(tmp_path, tiny_run_config))
    assert str(configured.value).endswith(f"model.quantizer: {standalone.value}"), (configured.value, standalone.value)


def test_the_model_section_is_parsed_once(tmp_path, tiny_run_config, monkeypatch):
    from hiervq import pretrained
    from hiervq.models.hierarchical import HierarchicalConfig
    from hiervq.train import config as config_module
    from hiervq.train.config import dump_config

    calls = []
    real = pretrained.parse_config

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(config_module, "parse_config", counting)
    monkeypatch.setattr(pretrained, "parse_config", counting)
    tiny_run_config["model"].pop("image_size", None)
    cfg = load_config(write(tmp_path, tiny_run_config))
    assert isinstance(cfg.model_config, HierarchicalConfig) and len(calls) == 1
    model = cfg.build_model(in_channels=1, image_size=16)  # the data's channels and size fill what the file omits
    assert len(calls) == 1 and model.config.image_size == 16 and cfg.model_config.image_size != 16
    assert dump_config(cfg) == yaml.safe_dump(cfg.to_dict(), sort_keys=False) and "image_size" not in cfg.model
    assert config_from_dict(cfg.to_dict(), "again").to_dict() == cfg.to_dict()  # the round trip is unchanged
    cfg.model["channels"] = 12  # a changed section is parsed again
    assert cfg.model_config.channels == 12 and len(calls) == 3
    with pytest.raises(ConfigError, match="run.yaml: model: image_size 18"):
        cfg.build_model(in_channels=1, image_size=18)


def test_optional_sections_are_owned_by_their_recipes(tmp_path, tiny_run_config):
    """compare/sweep/study, priors and classify are registered by the recipes that read them (train imports none
    of them); they are still validated when the config is read, with the key and the file in the message."""
    from hiervq.classify.config import ClassifyConfig
    from hiervq.experiments.config import CompareConfig
    from hiervq.priors.config import PriorsConfig
    from hiervq.train.config import SECTIONS, dump_config

    assert list(SECTIONS) == ["compare", "sweep", "study", "priors", "classify"]  # config.yaml's order
    tiny_run_config["priors"] = {"class_conditional": True, "train": {"epochs": 2}}
    tiny_run_config["compare"] = {"single_code_dim": 4}
    cfg = load_config(write(tmp_path, tiny_run_config))
    assert isinstance(cfg.priors, PriorsConfig) and cfg.priors.train.epochs == 2
    assert isinstance(cfg.compare, CompareConfig) and cfg.compare.single_code_dim == 4
    assert cfg.classify is None and cfg.sweep is None
    text = dump_config(cfg)
    assert text.index("compare:") < text.index("sweep:") < text.index("priors:") < text.index("classify: null")
    assert config_from_dict(yaml.safe_load(text)) == cfg

    other = cfg.with_sections(classify=ClassifyConfig(), priors=None)
    assert isinstance(other.classify, ClassifyConfig) and other.priors is None and cfg.classify is None
    with pytest.raises(TypeError):
        cfg.priors = CompareConfig()

    tiny_run_config["priors"]["code_batch_sise"] = 8
    path = write(tmp_path, tiny_run_config, "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: priors: unknown key 'code_batch_sise'"):
        load_config(path)
    del tiny_run_config["priors"]
    tiny_run_config["priorz"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'priorz'.*priors, classify"):
        load_config(write(tmp_path, tiny_run_config, "bad2.yaml"))
