"""MultiScaleVQ (VAR-style multi-scale residual quantization): indices against a brute-force chain, prefix
decoding, the shared codebook's maintenance and statistics, the per-level switch and a short training run."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from hiervq.quantize import MultiScaleVQ
from hiervq.quantize.multiscale import check_scales

SCALES = [1, 2, 3, 4, 6, 8]


def maps(seed=0, c=6, side=8, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, c, side, side, generator=g) * scale


def perturb_convs(m, seed=1):
    """Move the convolutions away from their identity start, so the reference has to apply them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in m.convs:
            conv.conv.weight.add_(0.1 * torch.randn(conv.conv.weight.shape, generator=g, dtype=conv.conv.weight.dtype))
            conv.conv.bias.add_(0.1 * torch.randn(conv.conv.bias.shape, generator=g, dtype=conv.conv.bias.dtype))


def reference(m, z):
    """Brute-force chain: scale k's codes are the cdist argmin of the area-averaged residual left by the scales
    before it; each scale's codes, upsampled and convolved, are subtracted. Returns the codes and the partial
    sums u_0 + ... + u_{k-1} (before project_out)."""
    e = z if isinstance(m.project_in, torch.nn.Identity) else m.project_in(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    b, d, hh, ww = e.shape
    w = m.codebook.weight
    residual, f, codes, partial = e, torch.zeros_like(e), [], []
    for k, (h, wd) in enumerate(m.scales):
        down = residual if (h, wd) == (hh, ww) else F.interpolate(residual, size=(h, wd), mode="area")
        idx = torch.cdist(down.permute(0, 2, 3, 1).reshape(-1, d).double(), w.double()).argmin(1)
        codes.append(idx.view(b, h, wd))
        q = w[idx].view(b, h, wd, d).permute(0, 3, 1, 2)
        if (h, wd) != (hh, ww):
            q = F.interpolate(q, size=(hh, ww), mode=m.upsample, align_corners=False)
        c = m._conv_of[k]
        if c >= 0:
            conv = m.convs[c]
            q = (1 - conv.mix) * q + conv.mix * conv.conv(q)
        f = f + q
        partial.append(f)
        residual = residual - q
    return codes, partial


@pytest.mark.parametrize("code_dim,convs", [(None, 4), (3, 2), (None, 0)])
def test_indices_equal_brute_force_and_prefix_decode_is_the_sum_of_the_first_scales(code_dim, convs):
    torch.manual_seed(0)
    m = MultiScaleVQ(6, 32, SCALES, code_dim=code_dim, convs=convs, init="random").double().eval()
    perturb_convs(m)
    z = maps().double()
    with torch.no_grad():
        out = m(z)
        ref_codes, ref_partial = reference(m, z)
    codes = m.encode(z)
    assert [tuple(c.shape) for c in codes] == [(3, s, s) for s in SCALES]
    for k, (c, r) in enumerate(zip(codes, ref_codes)):
        assert torch.equal(c, r), f"scale {k} differs from the brute-force chain"
    assert out.indices.shape == (3, m.num_tokens) and m.num_tokens == sum(s * s for s in SCALES) == 130
    assert torch.equal(out.indices, m.flatten_codes(codes))
    assert [torch.equal(a, b) for a, b in zip(m.split_codes(out.indices), codes)] == [True] * len(SCALES)
    assert torch.equal(m.decode(codes), out.quantized), "full decode = eval forward, exactly"
    assert torch.equal(m.decode(out.indices), out.quantized)
    with torch.no_grad():
        for n in range(1, len(SCALES) + 1):
            prefix = m.decode(codes[:n])
            assert prefix.shape == z.shape
            assert torch.equal(prefix, m.decode(out.indices[:, : m._offsets[n]])), "list and token prefixes agree"
            expect = ref_partial[n - 1]
            if code_dim is not None:
                expect = m.project_out(expect.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            torch.testing.assert_close(prefix, expect, rtol=0, atol=1e-9)


def test_training_mode_indices_equal_brute_force_in_float32():
    torch.manual_seed(0)
    m = MultiScaleVQ(6, 64, [1, 2, 4, [4, 5]], init="random", ema_decay=0.9, dead_threshold=0).train()
    perturb_convs(m)
    z = torch.randn(3, 6, 4, 5) * 2
    with torch.no_grad():
        ref_codes, _ = reference(m, z)  # the codebook before this forward's EMA update
    out = m(z)
    assert torch.equal(out.indices, m.flatten_codes(ref_codes))
    assert m.bits == (1 + 4 + 16 + 20) * 6


def test_prefix_error_shrinks_with_identity_convs_and_nearest_upsampling_of_nested_grids():
    """With identity convolutions, a nested schedule (each scale divides the next) and nearest upsampling, every
    scale removes its residual's block means as well as its codebook allows: the error never grows."""
    torch.manual_seed(0)
    m = MultiScaleVQ(4, 256, [1, 2, 4, 8], upsample="nearest", init="random", convs=0).eval()
    z = maps(c=4, scale=0.5)
    codes = m.encode(z)
    with torch.no_grad():
        errs = [float((m.decode(codes[:n]) - z).square().mean()) for n in range(1, 5)]
    assert errs[-1] < errs[0], errs


def test_the_convolutions_and_learned_codes_train_and_the_gradient_reaches_the_input():
    torch.manual_seed(0)
    m = MultiScaleVQ(6, 16, SCALES, ema_decay=None, init="random", dead_threshold=0, estimator="rotation").train()
    z = maps().requires_grad_(True)
    out = m(z)
    (out.loss + out.quantized.square().sum()).backward()
    assert float(z.grad.abs().sum()) > 0
    assert float(m.codebook.weight.grad.abs().sum()) > 0
    assert all(float(c.conv.weight.grad.abs().sum()) > 0 for c in m.convs)
    assert float(out.losses["codebook"]) > 0 and float(out.losses["commitment"]) > 0
    # EMA codes and no convolutions: nothing learns through the codebook term, which is 0
    plain = MultiScaleVQ(6, 16, SCALES, convs=0, init="random").train()
    assert float(plain(maps()).losses["codebook"]) == 0.0


def test_one_shared_codebook_data_init_update_reset_and_stats():
    torch.manual_seed(0)
    m = MultiScaleVQ(6, 32, SCALES, init="kmeans", kmeans_iters=2, dead_threshold=1000.0, dead_window=2).train()
    assert len(list(m.codebook.buffers())) > 0 and not bool(m.codebook.initialized)
    out = m(maps())
    assert bool(m.codebook.initialized)
    s = out.stats
    assert set(s) >= {"perplexity", "used_fraction", "counts", "resets", "scale_perplexity", "scale_used_fraction"}
    assert s["counts"].shape == (32,) and int(s["counts"].sum()) == 3 * 130, "every scale's codes are counted"
    assert s["scale_perplexity"].shape == (6,) and float(s["scale_used_fraction"][0]) <= 3 / 32
    # the window of the update holds all scales' assignments; with an unreachable threshold every code is dead
    assert float(m.codebook.usage_window.sum()) == 3 * 130
    out = m(maps(seed=1))
    assert int(out.stats["resets"]) == 32 and int(m.codebook.reset_count.sum()) == 32
    before = m.codebook.weight.clone()
    m.eval()
    m(maps(seed=2))
    assert torch.equal(m.codebook.weight, before), "no codebook update in eval mode"


def test_bad_inputs_and_settings_are_refused():
    m = MultiScaleVQ(6, 16, SCALES)
    with pytest.raises(ValueError, match="takes 8x8 maps"):
        m(torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        m(torch.randn(2, 8, 6))
    with pytest.raises(ValueError, match="T_l one of"):
        m.decode(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="scale 1 codes must be"):
        m.decode([torch.zeros(2, 1, 1, dtype=torch.long), torch.zeros(2, 3, 3, dtype=torch.long)])
    with pytest.raises(IndexError):
        m.decode([torch.full((2, 1, 1), 16)])
    for bad in ([], [2, 1], [1, [2, 3, 4]], [0, 2], "8"):
        with pytest.raises(ValueError):
            check_scales(bad)
    assert check_scales([1, [2, 3], 4]) == [(1, 1), (2, 3), (4, 4)]
    with pytest.raises(ValueError, match="estimator"):
        MultiScaleVQ(6, 16, SCALES, estimator="gumbel")


# ---------------------------------------------------------------------------------------------- in a model
def multiscale_model(level0: dict, level1: dict | None = None):
    from hiervq.models.hierarchical import HierarchicalConfig, HierarchicalVQVAE
    from hiervq.schema import from_dict

    levels = [{"downsample": 2, "codebook_size": 16, "dim": 6, "quantizer": level0},
              {"downsample": 2, "codebook_size": 8, "dim": 6}]
    if level1 is not None:
        levels[1]["quantizer"] = level1
    config = from_dict(HierarchicalConfig, {"image_size": 8, "in_channels": 1, "channels": 8, "blocks": 1,
                                            "res_channels": 4, "levels": levels}, "model")
    return HierarchicalVQVAE(config)


def test_the_level_switch_builds_it_and_bits_follow_its_code_space(tmp_path):
    import hiervq

    torch.manual_seed(0)
    model = multiscale_model({"kind": "multiscale", "scales": [1, 2, 4], "init": "random"})
    info = model.levels[0]
    assert isinstance(model.vq[0], MultiScaleVQ) and info.grid == (4, 4) and info.tokens == 21
    assert model.budget().bits_per_image == 21 * math.log2(16) + 4 * math.log2(8)
    assert model.budget().discrete == 16 * 6 + 8 * 6, "one shared codebook"
    x = torch.rand(2, 1, 8, 8)
    model.train()
    out = model(x)
    out.loss.backward()
    assert out.codes[0].shape == (2, 21) and out.codes[1].shape == (2, 2, 2)
    model.eval()
    codes = model.encode(x)
    assert codes[0].shape == (2, 21)
    with torch.no_grad():
        assert torch.equal(model.decode(codes), model(x).recon)
    model.save_pretrained(tmp_path / "m")
    loaded = hiervq.load(tmp_path / "m")
    assert loaded.config.levels[0].quantizer.scales == [1, 2, 4]
    assert torch.equal(loaded.decode(codes), model.decode(codes))


@pytest.mark.parametrize("level,match", [
    ({"kind": "multiscale"}, "kind multiscale needs scales"),
    ({"kind": "multiscale", "scales": [1, 2, 3]}, r"last scale \[3, 3\] must be the level's grid \[4, 4\]"),
    ({"kind": "multiscale", "scales": [2, 1, 4]}, "must not shrink"),
    ({"kind": "multiscale", "scales": [1, 4], "estimator": "gumbel"}, "estimator"),
    ({"kind": "multiscale", "scales": [1, 4], "init_after": 2}, "init_after"),
    ({"kind": "vq", "scales": [1, 4]}, "scales is an option of kind multiscale"),
    ({"kind": "fsq", "levels": [4, 4], "convs": 2}, "convs is an option of kind multiscale"),
])
def test_the_level_switch_refuses_bad_multiscale_settings(level, match):
    from hiervq.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        multiscale_model(level)


def test_a_tiny_model_trains_a_few_steps(tmp_path, tiny_run_config):
    """The real training run (image size from the data) with a multi-scale bottom level (8 x 8: scales 1, 2, 4,
    8) under a plain VQ top."""
    from hiervq.train import config_from_dict, train_run

    levels = tiny_run_config["model"]["levels"]
    levels[0]["quantizer"] = {"kind": "multiscale", "scales": [1, 2, 4, 8], "init": "kmeans", "dead_window": 2}
    tiny_run_config["train"]["epochs"] = 2
    summary = train_run(config_from_dict(tiny_run_config, "tiny"), tmp_path / "run")
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["test"]["mse"]) for r in history if "test" in r)
    assert summary["bits_per_image"] == (1 + 4 + 16 + 64) * math.log2(32) + 16 * math.log2(16)
    assert summary["levels"][0]["used_fraction"] > 0.1
