"""Priors and compression of levels with more than one code per position: a residual level's (B, H, W, L) codes
in (position, depth) order (causality at every code, sampling = teacher forcing, bits per image over all H*W*L
codes, exact round trips); PQ-VAE refuses the other families' quantizer switches. (Multi-scale levels:
``tests/test_multiscale_prior.py``.)"""

import copy
import math

import pytest
import torch

import hiervq
from hiervq.errors import ConfigError
from hiervq.layout import RunDir
from hiervq.priors import PixelCNN, prior_kind_for

from .conftest import TINY_RUN, codec_round_trip

pytestmark = pytest.mark.usefixtures("one_thread")


def _residual_run(stages=2, top_stages=2):
    """TINY_RUN with both levels quantized by kind residual (the bottom one's prior is conditioned on a residual
    level above, so both code embeddings of the PixelCNN see depth > 1)."""
    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    levels = raw["model"]["levels"]
    levels[0]["quantizer"] = {"kind": "residual", "stages": stages, "init": "kmeans"}
    levels[1]["quantizer"] = {"kind": "residual", "stages": top_stages, "init": "kmeans"}
    raw["priors"] = {"model": {"channels": 8, "layers": 2},
                     "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress": False}}
    return raw


def _order_dependence(prior, codes, cond=None):
    """dep[p, q] = True when changing code p (in (position, depth) order) changes the logits of code q."""
    prior = prior.double().eval()
    K = prior.config.codebook_size
    flat = lambda lg: lg.flatten(2).transpose(1, 2)  # noqa: E731 - (B, n, K) in coding order
    base = flat(prior(codes, cond))
    n = codes[0].numel()
    dep = torch.zeros(n, n, dtype=torch.bool)
    for p in range(n):
        for shift in (1, K // 2):
            other = codes.clone().reshape(codes.shape[0], -1)
            other[:, p] = (other[:, p] + shift) % K
            diff = (flat(prior(other.view_as(codes), cond)) - base).abs().amax(dim=(0, 2))
            dep[p] |= diff > 0
    return dep


def test_depth_prior_is_causal_over_positions_and_depth():
    """The logits of code (p, d) do not change when any later code (a later depth at p, or any code of a later
    position) changes, and every earlier code reaches them (no blind spot)."""
    torch.manual_seed(0)
    prior = PixelCNN(7, channels=8, layers=3, depth=3, cond_codebook_size=3, cond_depth=2)
    codes = torch.randint(0, 7, (2, 3, 4, 3))
    cond = torch.randint(0, 3, (2, 3, 2, 2))
    dep = _order_dependence(prior, codes, cond)
    n = dep.shape[0]
    later_or_same = torch.ones(n, n, dtype=torch.bool).tril()
    assert not dep[later_or_same].any(), "a code influences its own or an earlier code's logits"
    assert dep[~later_or_same].all(), "blind spot: an earlier code does not reach a later one"


def test_depth_prior_walk_equals_teacher_forcing_and_nll_sums_all_codes():
    torch.manual_seed(1)
    prior = PixelCNN(8, channels=8, layers=2, depth=2, num_classes=2).double().eval()
    codes = torch.randint(0, 8, (3, 2, 3, 2))
    labels = torch.tensor([0, 1, 1])
    logits = prior(codes, None, labels)
    assert logits.shape == (3, 8, 2, 3, 2)
    seen = []

    def choose(lg):
        seen.append(lg)
        return codes.reshape(3, -1)[:, len(seen) - 1]

    assert torch.equal(prior.walk(3, (2, 3), None, labels, choose), codes)
    assert torch.allclose(torch.stack(seen, 1), logits.flatten(2).transpose(1, 2), atol=1e-12, rtol=0)
    expected = torch.nn.functional.cross_entropy(logits, codes, reduction="none").flatten(1).sum(1)
    assert torch.allclose(prior.nll(codes, None, labels), expected)
    with pytest.raises(ValueError, match=r"codes must be \(B, H, W, 2\)"):
        prior(codes[..., 0], None, labels)
    sampled = prior.sample(4, (2, 2), None, torch.tensor([0, 1, 0, 1]), generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (4, 2, 2, 2) and int(sampled.max()) < 8


def test_depth_one_state_and_model_id_are_unchanged():
    """depth 1 (every prior before residual levels) builds the same modules, and the codec's id leaves the new
    keys out at their defaults (test_compress pins the id itself)."""
    from hiervq.schema import with_old_keys as _id_config

    prior = PixelCNN(16, cond_codebook_size=4, channels=8, layers=2)
    assert not any(k.startswith("depth_") for k in prior.state_dict())
    assert prior.embed.weight.shape == (16, 8) and prior.cond_embed.weight.shape == (4, 8)
    assert "depth" not in _id_config(prior.config) and "cond_depth" not in _id_config(prior.config)
    assert _id_config(PixelCNN(16, channels=8, layers=2, depth=2).config)["depth"] == 2


@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    from hiervq.train import config_from_dict, train_run
    from hiervq.train.priors import prior_run

    run = tmp_path_factory.mktemp("residual") / "run"
    train_run(config_from_dict(_residual_run(), "tiny"), run)
    for level in (1, 0):
        prior_run(run, level, log=lambda msg: None)
    return run


def test_bits_per_image_count_every_code_of_a_residual_level(residual_run):
    model = hiervq.load(residual_run)
    kind = prior_kind_for(model)
    bottom, top = model.levels
    assert (bottom.depth, top.depth, bottom.grid, top.grid) == (2, 2, (8, 8), (4, 4))
    assert model.budget().bits_per_image == pytest.approx(8 * 8 * 2 * math.log2(32) + 4 * 4 * 2 * math.log2(16))
    info = kind.level_info(model, 0)
    assert info["codes_per_image"] == 8 * 8 * 2 and info["depth"] == 2
    summary = RunDir(residual_run).prior(0).read_summary()
    assert summary["codes_per_image"] == 128
    assert summary["uniform_bits_per_image"] == pytest.approx(128 * math.log2(32))
    assert summary["bits_per_image"] == pytest.approx(summary["bits_per_code"] * 128)
    prior = hiervq.load(RunDir(residual_run).prior(0).model)
    assert (prior.config.depth, prior.config.cond_depth) == (2, 2)


def test_residual_level_samples_and_round_trips_exactly(residual_run):
    from hiervq.codec import header_bytes
    from hiervq.priors.sampling import sample_run

    samples = sample_run(residual_run, n=3, seed=0)
    assert samples.images.shape == (3, 1, 16, 16)
    assert [tuple(c.shape) for c in samples.codes] == [(3, 8, 8, 2), (3, 4, 4, 2)]

    codec, result, x, codes = codec_round_trip(residual_run, 8, ((4, 4, 2), (8, 8, 2)), (16, 16))
    # file size = header + the priors' estimate, within 2 % over the batch
    headers = [header_bytes(f) for f in result.files]
    estimate = float(result.bits.sum()) + 8 * sum(headers)
    actual = 8 * sum(len(f) for f in result.files)
    assert abs(actual / estimate - 1) < 0.02, (actual, estimate)
    # deterministic across thread counts and batch sizes, byte for byte
    torch.set_num_threads(2)
    try:
        files2 = codec.compress(x, batch_size=3)
        codes2, _ = codec.decompress_codes(result.files)
    finally:
        torch.set_num_threads(1)
    assert files2 == result.files
    assert all(torch.equal(a, b) for a, b in zip(codes2, codes))


def test_cli_prior_sample_compress_for_a_residual_level(residual_run, tmp_path, capsys):
    from PIL import Image

    from hiervq.cli import main

    out = tmp_path / "prior0"
    assert main(["prior", str(residual_run), "--level", "0", "--out", str(out), "--set", "train.epochs=1"]) == 0
    assert main(["sample", str(residual_run), "-n", "2", "-o", str(tmp_path / "s.png")]) == 0
    x = hiervq.load(residual_run).decode(hiervq.load(residual_run).encode(torch.rand(1, 1, 16, 16)))
    Image.fromarray((x[0, 0].clamp(0, 1) * 255).round().byte().numpy()).save(tmp_path / "a.png")
    assert main(["compress", str(residual_run), str(tmp_path / "a.png"), "-o", str(tmp_path / "a.hvq")]) == 0
    assert main(["decompress", str(residual_run), str(tmp_path / "a.hvq"), "-o", str(tmp_path / "b")]) == 0
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["a.png"]


@pytest.mark.parametrize("section,key", [({"levels": [{"downsample": 2}]}, "model.levels"),
                                         ({"quantizer": {"kind": "fsq", "levels": [4, 4]}}, "model.quantizer.kind")])
def test_pqvae_refuses_quantizer_switches(section, key):
    from hiervq.train import config_from_dict

    from .test_compress import TINY_PQ

    raw = copy.deepcopy(TINY_PQ)
    raw["model"].update(section)
    with pytest.raises(ConfigError, match=f"^x.yaml: {key}: .*progressive") as err:
        config_from_dict(raw, "x.yaml")
    assert "\n" not in str(err.value)
