"""Models: shapes, encode/decode round trips, budgets, saving and loading."""

import json
import math

import pytest
import torch

import hiervq
from hiervq.errors import CheckpointError, ConfigError, DataError
from hiervq.models import VQVAE, HierarchicalConfig, HierarchicalVQVAE, LevelConfig, QuantizerConfig, VQVAEConfig
from hiervq.nn import make_blocks
from hiervq.pretrained import build


def tiny(levels, mode="conditioned", block="res", in_channels=1, size=16, estimator="ste", up_blocks=0, **q):
    cfg = HierarchicalConfig(
        up_blocks=up_blocks,
        image_size=size,
        in_channels=in_channels,
        channels=16,
        blocks=1,
        res_channels=8,
        block=block,
        mode=mode,
        levels=[LevelConfig(*lv) for lv in levels],
        quantizer=QuantizerConfig(estimator=estimator, **q),
    )
    return HierarchicalVQVAE(cfg)


CASES = [
    ([(4, 32, 8)], "conditioned", "res"),
    ([(2, 32, 8), (2, 16, 8)], "conditioned", "res"),
    ([(2, 32, 8), (2, 16, 8)], "unconditioned", "res"),
    ([(2, 32, 8, 2), (2, 16, 8, 2), (2, 16, 4)], "conditioned", "convnext"),
    ([(2, 32, 8), (2, 16, 8), (2, 16, 4)], "unconditioned", "res"),
]


@pytest.mark.parametrize("levels,mode,block", CASES)
def test_decode_of_encode_equals_eval_forward(levels, mode, block):
    torch.manual_seed(0)
    model = tiny(levels, mode, block)
    x = torch.rand(3, 1, 16, 16)
    model.train()
    out = model(x)
    out.loss.backward()
    assert out.recon.shape == x.shape
    assert len(out.codes) == len(levels)
    model.eval()
    with torch.no_grad():
        ev = model(x)
        codes = model.encode(x)
        recon = model.decode(codes)
    for a, b in zip(codes, ev.codes):
        assert torch.equal(a, b)
    assert torch.equal(recon, ev.recon)
    grids = [lv.grid for lv in model.levels]
    assert [tuple(c.shape[1:]) for c in codes] == grids


@pytest.mark.parametrize("block", ["res", "convnext"])
def test_up_blocks_add_capacity_at_the_intermediate_resolutions(block):
    torch.manual_seed(0)
    plain = tiny([(4, 32, 8)], block=block)
    model = tiny([(4, 32, 8)], block=block, up_blocks=2)
    # factor 4: one intermediate step (4x4 -> 8x8), where two blocks of channels // 2 = 8 channels are added
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    per_block = sum(p.numel() for p in make_blocks(block, 8, 1, 8).parameters())
    assert extra == 2 * per_block
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        ev = model(x)
        assert ev.recon.shape == x.shape
        assert torch.equal(model.decode(model.encode(x)), ev.recon)
    with pytest.raises(ValueError, match="up_blocks"):
        tiny([(4, 32, 8)], up_blocks=-1)


@pytest.mark.parametrize("estimator", ["rotation", "gumbel"])
def test_every_estimator_trains_end_to_end(estimator):
    torch.manual_seed(0)
    model = tiny([(2, 32, 8), (2, 16, 8)], estimator=estimator)
    model.train()
    out = model(torch.rand(2, 1, 16, 16))
    out.loss.backward()
    enc_grad = model.encoders[0].net[0].weight.grad
    assert enc_grad is not None and enc_grad.abs().sum() > 0


def test_features_is_the_joint_latent():
    model = tiny([(2, 32, 8), (2, 16, 6)])
    model.eval()
    with torch.no_grad():
        f = model.features(torch.rand(2, 1, 16, 16))
    assert f.shape == (2, 8 + 6, 8, 8)


def test_budget_of_a_known_configuration():
    # the published capacity-matching setting: 64x64 + 32x32 grids with 128 channels each, 256x256 images
    model = HierarchicalVQVAE(
        HierarchicalConfig(
            image_size=256,
            in_channels=3,
            channels=8,
            blocks=0,
            levels=[LevelConfig(4, 4096, 128, 8), LevelConfig(2, 4096, 128, 8)],
        )
    )
    b = model.budget()
    assert [lv.grid for lv in model.levels] == [(64, 64), (32, 32)]
    assert b.continuous == 64 * 64 * 128 + 32 * 32 * 128 == 64 * 64 * 160
    assert b.discrete == 2 * 4096 * 8
    assert b.bits_per_image == pytest.approx((64 * 64 + 32 * 32) * 12)
    single = VQVAE(VQVAEConfig(image_size=32, in_channels=1, channels=8, blocks=0, levels=[LevelConfig(4, 256, 64)]))
    assert single.budget().bits_per_image == 8 * 8 * 8 == 512
    assert single.budget().continuous == 8 * 8 * 64 and single.budget().discrete == 256 * 64


def test_vqvae_needs_exactly_one_level():
    with pytest.raises(ConfigError, match="exactly one level"):
        build("vqvae", {"levels": [{"downsample": 2}, {"downsample": 2}]})


def test_bad_model_configs_are_named():
    with pytest.raises(ConfigError, match=r"model.levels\[0\]: unknown key 'downsampl'"):
        build("hvqvae", {"levels": [{"downsampl": 2}]})
    with pytest.raises(ConfigError, match="powers of two"):
        build("hvqvae", {"levels": [{"downsample": 3}], "image_size": 27})
    with pytest.raises(ConfigError, match="unknown model name"):
        build("vqgan", {})
    with pytest.raises(ConfigError, match="mode"):
        build("hvqvae", {"mode": "sideways"})


def test_wrong_inputs_are_explained():
    model = tiny([(2, 32, 8)])
    with pytest.raises(DataError, match="3 channels, the model expects 1"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(DataError, match="multiple of 2"):
        model(torch.rand(1, 1, 15, 16))
    with pytest.raises(DataError, match="shape"):
        model(torch.rand(16, 16))


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny([(2, 32, 8), (2, 16, 8, 4)])
    model.train()
    model(torch.rand(4, 1, 16, 16))  # initialise codebooks
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model"] == "hvqvae" and meta["config"]["levels"][1]["code_dim"] == 4
    loaded = hiervq.load(tmp_path / "m")
    assert not loaded.training
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x).recon, model(x).recon)


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        hiervq.load(tmp_path / "nothing")
    model = tiny([(2, 32, 8)])
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["channels"] = 24
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the model config"):
        hiervq.load(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        hiervq.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt config"):
        hiervq.load(tmp_path / "m")


def test_bits_per_image_matches_metrics_helper():
    from hiervq.metrics import bits_per_image

    model = tiny([(2, 32, 8), (2, 16, 8)])
    levels = model.levels
    assert model.budget().bits_per_image == pytest.approx(
        bits_per_image([lv.grid for lv in levels], [lv.codebook_size for lv in levels])
    )
    assert model.budget().bits_per_image == pytest.approx(64 * 5 + 16 * 4)
    assert math.isclose(model.budget().bits_per_image, 384)


def test_tanh_output_stays_in_range_and_linear_is_the_default():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    linear = tiny([(2, 32, 8), (2, 16, 8)])
    assert linear.config.output == "linear"
    tanh_cfg = HierarchicalConfig(**{**vars(linear.config), "output": "tanh"})
    bounded = HierarchicalVQVAE(tanh_cfg)
    bounded.load_state_dict(linear.state_dict())
    for m in (linear, bounded):
        with torch.no_grad():
            m.decoder.net[-1].weight.mul_(100.0)  # drive the decoder far outside [-1, 1]
        m.eval()
    with torch.no_grad():
        a, b = linear(x), bounded(x)
        assert a.recon.min() < 0.0 or a.recon.max() > 1.0
        assert b.recon.min() >= 0.0 and b.recon.max() <= 1.0
        y = linear.decoder(a.latent)
        assert torch.equal(a.recon, linear.from_model_range(y)), "linear: the decoder output as before"
        assert torch.equal(b.recon, bounded.from_model_range(torch.tanh(y)))
        assert torch.equal(bounded.decode(bounded.encode(x)), b.recon)
    with pytest.raises(ValueError, match="output"):
        HierarchicalConfig(output="sigmoid").validate()
    with pytest.raises(ValueError, match="raw_input"):
        HierarchicalConfig(output="tanh", raw_input=True).validate()
