"""The next-scale prior of a multi-scale level's (B, T) tokens and the conditioning across a multi-scale level:
block causality token by token, nll = the logits' cross-entropy, one forward per scale when sampling (= teacher
forcing), class conditioning, a PixelCNN conditioned on multi-scale tokens, and hierarchies with a multi-scale top
over a vq bottom and a vq top over a multi-scale bottom: priors trained (`hiervq prior`), samples decoded, and
compression round trips exactly."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import hiervq
from hiervq.errors import HierVQError
from hiervq.layout import RunDir
from hiervq.priors import NextScaleConfig, NextScalePrior, PixelCNN, prior_kind_for

from .conftest import TINY_RUN, codec_round_trip

pytestmark = pytest.mark.usefixtures("one_thread")

SCALES = [[1, 1], [2, 2], [3, 3], [4, 4]]  # a 3x3 scale: area/bilinear resizing that is not a factor of 2
OFFSETS = [0, 1, 5, 14, 30]


def _prior(**kw) -> NextScalePrior:
    torch.manual_seed(0)
    cfg = dict(codebook_size=7, scales=SCALES, channels=16, layers=2, heads=2, dropout=0.0)
    return NextScalePrior(NextScaleConfig(**{**cfg, **kw})).double().eval()


def _scale_of(t: int) -> int:
    return next(s for s in range(len(SCALES)) if t < OFFSETS[s + 1])


def test_logits_of_a_scale_depend_only_on_earlier_scales():
    """Changing token p (scale s) leaves the logits of every token of scales <= s unchanged, and changes logits of
    every later scale (the level above and the class are given)."""
    prior = _prior(num_classes=3, cond_codebook_size=5)
    tokens = torch.randint(0, 7, (2, 30))
    cond, labels = torch.randint(0, 5, (2, 2, 2)), torch.tensor([0, 2])
    base = prior(tokens, cond, labels)
    assert base.shape == (2, 30, 7)
    for p in range(30):
        other = tokens.clone()
        other[:, p] = (other[:, p] + 3) % 7
        changed = (prior(other, cond, labels) - base).abs().amax(dim=(0, 2)) > 0  # (T,)
        s = _scale_of(p)
        assert not changed[: OFFSETS[s + 1]].any(), f"token {p} (scale {s}) reaches its own or an earlier scale"
        for later in range(s + 1, len(SCALES)):
            assert changed[OFFSETS[later] : OFFSETS[later + 1]].any(), f"token {p} does not reach scale {later}"


def test_nll_is_the_cross_entropy_of_the_logits_and_walk_is_teacher_forcing():
    prior = _prior(num_classes=2)
    tokens, labels = torch.randint(0, 7, (3, 30)), torch.tensor([1, 0, 1])
    logits = prior(tokens, None, labels)
    expected = -torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0].sum(1)
    assert torch.allclose(prior.nll(tokens, None, labels), expected, atol=1e-10, rtol=0)
    # the class reaches every scale; a different class changes the first scale's logits
    assert (prior(tokens, None, 1 - labels) - logits).abs().amax(dim=(0, 2)).gt(0).all()

    calls, seen = [], []
    inner = prior._logits
    prior._logits = lambda *a: calls.append(a[1]) or inner(*a)

    def choose(lg):
        seen.append(lg)
        return tokens[:, len(seen) - 1]

    assert torch.equal(prior.walk(3, None, labels, choose), tokens)
    assert calls == [1, 2, 3, 4], "sampling must take one forward per scale"
    assert torch.allclose(torch.stack(seen, 1), logits, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        prior(tokens)
    with pytest.raises(ValueError, match=r"tokens must be \(B, 30\)"):
        prior(tokens[:, :29], None, labels)


def test_multiscale_tokens_condition_a_pixelcnn_and_a_next_scale_prior():
    """A prior below a multi-scale level reads its (B, T) tokens: every token of every scale reaches the logits;
    and the key that says so is left out of the codec's model id at its default."""
    from hiervq.schema import with_old_keys as _id_config

    torch.manual_seed(0)
    cond = torch.randint(0, 5, (2, 30))
    pixel = PixelCNN(6, channels=8, layers=2, cond_codebook_size=5, cond_scales=SCALES).double().eval()
    nexts = _prior(cond_codebook_size=5, cond_scales=SCALES)
    codes = torch.randint(0, 6, (2, 8, 8))
    for prior, args in ((pixel, (codes,)), (nexts, (torch.randint(0, 7, (2, 30)),))):
        base = prior(*args, cond)
        for t in range(30):
            other = cond.clone()
            other[:, t] = (other[:, t] + 2) % 5
            assert (prior(*args, other) - base).abs().max() > 0, f"token {t} of the level above is not read"
    with pytest.raises(ValueError, match=r"cond must be \(B, 30\)"):
        pixel(codes, cond[:, :5])
    assert "cond_scales" not in _id_config(PixelCNN(6, channels=8, layers=2).config)


def _run(top: bool) -> dict:
    """TINY_RUN with the top (``top``) or the bottom level quantized by kind multiscale."""
    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    level, scales = (1, [1, 2, 4]) if top else (0, [1, 2, 4, 8])
    raw["model"]["levels"][level]["quantizer"] = {"kind": "multiscale", "scales": scales}
    raw["priors"] = {"model": {"channels": 8, "layers": 2},
                     "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False}}
    return raw


@pytest.fixture(scope="module", params=["multiscale_top", "multiscale_bottom"])
def ms_run(request, tmp_path_factory):
    from hiervq.cli import main
    from hiervq.train import config_from_dict, train_run

    run = tmp_path_factory.mktemp(request.param) / "run"
    train_run(config_from_dict(_run(request.param == "multiscale_top"), "tiny"), run)
    assert main(["prior", str(run), "--level", "all"]) == 0
    return run


def test_priors_model_every_token_of_the_multiscale_level(ms_run):
    model = hiervq.load(ms_run)
    kind = prior_kind_for(model)
    ms = next(lv for lv, info in enumerate(model.levels) if info.scales is not None)
    info = model.levels[ms]
    t = sum(h * w for h, w in info.scales)
    assert info.tokens == t and kind.level_info(model, ms)["grid"] == [t]
    other_info = model.levels[1 - ms]
    assert model.budget().bits_per_image == pytest.approx(
        t * math.log2(info.codebook_size) + math.prod(other_info.grid) * math.log2(other_info.codebook_size))
    summary = RunDir(ms_run).prior(ms).read_summary()
    assert summary["codes_per_image"] == t
    assert summary["uniform_bits_per_image"] == pytest.approx(t * math.log2(info.codebook_size))
    assert summary["bits_per_image"] == pytest.approx(summary["bits_per_code"] * t)
    priors = {lv: hiervq.load(RunDir(ms_run).prior(lv).model) for lv in (0, 1)}
    assert isinstance(priors[ms], NextScalePrior) and [list(p) for p in info.scales] == priors[ms].config.scales
    other = 1 - ms
    assert isinstance(priors[other], PixelCNN)
    # the level below the multi-scale level is conditioned on its tokens; the one above conditions it
    assert (priors[0].config.cond_scales is not None) == (ms == 1)
    assert priors[ms].config.cond_codebook_size == (model.levels[1].codebook_size if ms == 0 else None)
    # the kind's nll is the sum of its logits' cross-entropy, in walk order
    from hiervq.priors.codes import load_codes

    codes = [torch.as_tensor(c[:4]).long() for c in load_codes(RunDir(ms_run).codes)[1]["test"].codes]
    for lv in (0, 1):
        logits = kind.logits(priors[lv], codes, None, lv)
        flat = codes[lv].reshape(4, -1)
        assert logits.shape == (4, flat.shape[1], model.levels[lv].codebook_size)
        nll = F.cross_entropy(logits.transpose(1, 2), flat, reduction="none").sum(1)
        assert torch.allclose(kind.nll(priors[lv], codes, None, lv), nll, atol=1e-4)
    # a prior of the wrong family for the level is refused with one line
    swapped = {0: priors[1], 1: priors[0]}
    with pytest.raises(HierVQError, match="^the level-1 prior is a"):
        kind.sample(model, swapped, 1, None)


def test_sampled_tokens_decode_and_compression_round_trips_exactly(ms_run):
    from hiervq.codec import header_bytes
    from hiervq.priors.sampling import sample_run

    model = hiervq.load(ms_run)
    samples = sample_run(ms_run, n=3, seed=0)
    shapes = [(3, t) if info.scales else (3, *info.grid) for info, t in zip(model.levels, [lv.tokens for lv in model.levels])]
    assert [tuple(c.shape) for c in samples.codes] == shapes
    assert all(int(c.min()) >= 0 and int(c.max()) < info.codebook_size for c, info in zip(samples.codes, model.levels))
    with torch.no_grad():
        images = model.decode(model.codes_from_list(samples.codes))
    assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all()

    expected_grids = tuple((lv.tokens,) if lv.scales else tuple(lv.grid) for lv in reversed(model.levels))
    codec, result, x, codes = codec_round_trip(ms_run, 6, expected_grids, (16, 16))
    headers = [header_bytes(f) for f in result.files]
    estimate = float(result.bits.sum()) + 8 * sum(headers)
    actual = 8 * sum(len(f) for f in result.files)
    assert abs(actual / estimate - 1) < 0.03, (actual, estimate)


def test_class_conditional_next_scale_prior_codes_the_label(ms_run, tmp_path):
    """A class-conditional prior of the multi-scale level: fitted, sampled per class, and the codec codes each
    image under its cheapest class and round-trips its codes exactly."""
    from hiervq.codec import Codec
    from hiervq.data import load_data
    from hiervq.priors.sampling import sample_run
    from hiervq.train import read_run_config
    from hiervq.train.priors import prior_run

    model = hiervq.load(ms_run)
    ms = next(lv for lv, info in enumerate(model.levels) if info.scales is not None)
    out = tmp_path / f"level{ms}-cc"
    prior_run(ms_run, ms, class_conditional=True, out=out, log=lambda msg: None)
    prior = hiervq.load(RunDir(out).model)
    assert isinstance(prior, NextScalePrior) and prior.config.num_classes == 10
    dirs = [out, RunDir(ms_run).prior(1 - ms).path]
    samples = sample_run(ms_run, dirs, n=2, class_label=3, seed=0)
    assert samples.labels.tolist() == [3, 3]
    codec = Codec.from_run(ms_run, dirs)
    x = load_data(read_run_config(ms_run).data).test.batch(slice(0, 4))[0]
    result = codec.compress_batch(x)
    assert result.labels is not None and result.labels.shape == (4,)
    back, _ = codec.decompress_codes(result.files)
    assert all(torch.equal(a, b) for a, b in zip(back, result.codes))


def test_nextscale_benchmark_writes_what_the_docs_quote(tmp_path, monkeypatch):
    """benchmarks/nextscale_prior.py on a tiny 1-level multi-scale run: besides the timings, the autoencoder's
    summary numbers, the prior's per-epoch test bits, the sampling rate and the codec's file sizes, each taken
    from the run (the summaries, metrics.jsonl) or measured, and an exact codec round trip."""
    import importlib.util
    import json
    import sys

    from hiervq.cli import main
    from hiervq.train import config_from_dict, train_run

    from .conftest import REPO

    raw = copy.deepcopy(TINY_RUN)
    raw["model"] = {"name": "vqvae", "channels": 16, "blocks": 1, "res_channels": 8,
                    "levels": [{"downsample": 4, "codebook_size": 16, "dim": 8, "code_dim": 4}],
                    "quantizer": {"kind": "multiscale", "scales": [1, 2, 4], "init": "kmeans"}}
    raw["train"]["epochs"] = 1
    raw["priors"] = {"model": {"channels": 8, "layers": 2, "heads": 2},
                     "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress": False}}
    run = tmp_path / "run"
    train_run(config_from_dict(raw, "tiny"), run)
    assert main(["prior", str(run)]) == 0
    spec = importlib.util.spec_from_file_location("nextscale_prior", REPO / "benchmarks" / "nextscale_prior.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "nextscale.json"
    monkeypatch.setattr(sys, "argv", ["nextscale_prior.py", str(run), "--n", "2", "--repeats", "1",
                                      "--codec-images", "3", "--out", str(out)])
    bench.main()
    row = json.loads(out.read_text())
    summary, prior = RunDir(run).read_summary(), RunDir(run).prior(0)
    assert (row["autoencoder_psnr"], row["autoencoder_epochs"], row["autoencoder_train_s"]) == (
        summary["psnr"], summary["epochs"], summary["train_s"])
    split = row["prior_epoch_split"]
    assert split == "val"  # the tiny run holds out a validation split; a run without one is evaluated on test
    history = [r[split]["bits_per_image"] for r in prior.read_metrics() if split in r]
    assert len(history) == prior.read_summary()["epochs"]
    assert row["prior_bits_per_image_per_epoch"] == [round(b, 1) for b in history]
    assert row["samples_per_s"] > 0 and row["codec_images"] == 3 and row["codec_exact"] is True
    assert row["codec_bytes_per_image"] > row["codec_header_bytes"] > 0 and row["codec_estimate_bits_per_image"] > 0
    assert row["tokens_per_image"] == 1 + 4 + 16 and row["nextscale_forwards_per_sample"] == 3
