"""Priors over code maps: PixelCNN causality and conditioning, sampling, the code cache, prior runs, end to end."""

import copy
import json
import math

import numpy as np
import pytest
import torch

import hiervq
from hiervq.errors import ConfigError, HierVQError
from hiervq.metrics.plots import have_matplotlib
from hiervq.priors import (
    PixelCNN,
    PixelCNNConfig,
    PriorKind,
    cached_codes,
    load_codes,
    prior_kind_for,
    register_prior_kind,
)
from hiervq.priors.kinds import PRIOR_KINDS

from .conftest import REPO, TINY_RUN, shared_file

pytestmark = pytest.mark.usefixtures("one_thread")


def _raster_dependence(prior, codes, cond=None, labels=None):
    """dep[p, q] = True when changing the code at raster position p changes the logits at position q."""
    prior = prior.double().eval()
    _, H, W = codes.shape
    K = prior.config.codebook_size
    base = prior(codes, cond, labels)
    dep = torch.zeros(H * W, H * W, dtype=torch.bool)
    for p in range(H * W):
        i, j = divmod(p, W)
        for shift in (1, K // 2):  # two different perturbations, so a change cannot cancel by chance
            other = codes.clone()
            other[:, i, j] = (other[:, i, j] + shift) % K
            diff = (prior(other, cond, labels) - base).abs().amax(dim=(0, 1)).flatten()
            dep[p] |= diff > 0
    return dep


@pytest.mark.parametrize("kernel_size,layers,depth", [(3, 2, 1), (5, 1, 1), (3, 1, 2)])
def test_pixelcnn_walk_over_a_window_gives_the_whole_maps_logits(kernel_size, layers, depth):
    """walk() runs the network on the window that can reach each position (rows i - R..i, columns j - R..j + R);
    on maps wider and taller than the window every position's logits equal those of one pass over the whole map
    (float64), and the reach R covers the receptive field measured by perturbation (a code just outside it
    changes nothing, one at its edge does)."""
    torch.manual_seed(0)
    prior = PixelCNN(7, channels=8, layers=layers, kernel_size=kernel_size, cond_codebook_size=3, num_classes=2,
                     depth=depth).double().eval()
    R = prior.reach
    H, W = 2 * R + 3, 3 * R + 2
    codes = torch.randint(0, 7, (2, H, W, *((depth,) if depth > 1 else ())))
    cond = torch.randint(0, 3, (2, 1, 1))
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        full = prior(codes, cond, labels)  # (B, K, H, W[, L])
    seen = []

    def replay(logits):  # the true code at each step, so the walk sees the map `full` was computed on
        step = len(seen)
        i, j, d = step // (W * depth), step // depth % W, step % depth
        seen.append((logits, full[:, :, i, j] if depth == 1 else full[:, :, i, j, d]))
        return codes[:, i, j] if depth == 1 else codes[:, i, j, d]

    assert torch.equal(prior.walk(2, (H, W), cond, labels, replay), codes)
    assert max(float((a - b).abs().max()) for a, b in seen) < 1e-12 and len(seen) == H * W * depth
    if depth == 1:  # the reach is the receptive field: the farthest codes that matter are exactly R away
        dep = _raster_dependence(prior, codes, cond, labels)
        q = (H - 1) * W + W // 2  # the bottom row's middle
        rows = [p // W for p in range(H * W) if dep[p, q]]
        cols = [p % W - W // 2 for p in range(H * W) if dep[p, q]]
        assert H - 1 - min(rows) == R and -min(cols) == R and max(cols) <= R


@pytest.mark.parametrize("kernel_size,layers", [(3, 4), (5, 2)])
def test_pixelcnn_causal_at_every_position_by_perturbation(kernel_size, layers):
    torch.manual_seed(0)
    prior = PixelCNN(7, channels=8, layers=layers, kernel_size=kernel_size, cond_codebook_size=3, num_classes=2)
    H = W = 5
    codes = torch.randint(0, 7, (2, H, W))
    cond = torch.randint(0, 3, (2, 1, 1))
    dep = _raster_dependence(prior, codes, cond, torch.tensor([0, 1]))
    later_or_same = torch.ones(H * W, H * W, dtype=torch.bool).tril()  # p >= q: must not influence q
    earlier = ~later_or_same  # p < q: must influence q (no blind spot)
    assert not dep[later_or_same].any(), "a code influences its own or an earlier position's logits"
    assert dep[earlier].all(), "blind spot: an earlier code does not reach a later position"


def test_pixelcnn_causal_by_gradients():
    torch.manual_seed(1)
    prior = PixelCNN(5, channels=6, layers=5, kernel_size=3).double()
    H, W = 4, 6
    codes = torch.randint(0, 5, (1, H, W))
    embedded = []
    handle = prior.embed.register_forward_hook(lambda m, i, out: embedded.append(out) or out.retain_grad())
    logits = prior(codes)
    handle.remove()
    emb = embedded[0]  # (1, H, W, C)
    for q in range(H * W):
        i, j = divmod(q, W)
        emb.grad = None
        logits[0, :, i, j].sum().backward(retain_graph=True)
        reach = emb.grad[0].abs().sum(-1).flatten() > 0
        assert not reach[q:].any(), f"position {q} sees itself or later codes"
        assert reach[:q].all(), f"position {q} misses an earlier code"


def test_pixelcnn_conditioning_on_code_map_and_class():
    torch.manual_seed(2)
    prior = PixelCNN(16, channels=8, layers=2, cond_codebook_size=4, num_classes=3).eval()
    codes = torch.randint(0, 16, (2, 4, 4))
    cond = torch.randint(0, 4, (2, 2, 2))
    labels = torch.tensor([0, 1])
    out = prior(codes, cond, labels)
    assert out.shape == (2, 16, 4, 4)
    cond2 = cond.clone()
    cond2[:, 1, 1] = (cond2[:, 1, 1] + 1) % 4
    changed = (prior(codes, cond2, labels) - out).abs().amax(1)
    assert changed[:, 0, 0].gt(0).all(), "the code map above conditions every position, the first one included"
    assert (prior(codes, cond, torch.tensor([2, 2])) - out).abs().amax(dim=(1, 2, 3)).gt(0).all()
    with pytest.raises(ValueError, match="cond"):
        prior(codes, None, labels)
    with pytest.raises(ValueError, match="labels"):
        prior(codes, cond, None)
    with pytest.raises(ValueError, match="divide"):
        prior(codes, torch.zeros(2, 3, 3, dtype=torch.long), labels)
    with pytest.raises(ValueError, match="no labels"):
        PixelCNN(16, channels=4, layers=1)(codes, None, labels)


def test_pixelcnn_nll_is_summed_cross_entropy():
    torch.manual_seed(3)
    prior = PixelCNN(9, channels=4, layers=2).eval()
    codes = torch.randint(0, 9, (3, 3, 4))
    logp = torch.log_softmax(prior(codes), 1)
    manual = -logp.gather(1, codes[:, None]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(prior.nll(codes), manual)


def test_pixelcnn_sampling_equals_full_forward_sampling():
    """The cache-free loop only recomputes rows 0..i; it must draw exactly what full forwards would."""
    torch.manual_seed(4)
    prior = PixelCNN(6, channels=8, layers=3, cond_codebook_size=3, num_classes=2).eval()
    n, H, W = 5, 4, 3
    cond = torch.randint(0, 3, (n, 2, 1))
    labels = torch.randint(0, 2, (n,))
    fast = prior.sample(n, (H, W), cond, labels, temperature=0.7, generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    slow = torch.zeros(n, H, W, dtype=torch.long)
    with torch.no_grad():
        for i in range(H):
            for j in range(W):
                probs = torch.softmax(prior(slow, cond, labels)[:, :, i, j] / 0.7, 1)
                slow[:, i, j] = torch.multinomial(probs, 1, generator=gen)[:, 0]
    assert torch.equal(fast, slow)
    assert fast.shape == (n, H, W) and fast.min() >= 0 and fast.max() < 6
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(n, (H, W), cond, labels, temperature=0)


def test_pixelcnn_config_and_save_load(tmp_path):
    prior = PixelCNN(12, channels=4, layers=2, cond_codebook_size=5, num_classes=3)
    assert PixelCNN(PixelCNNConfig(codebook_size=12, channels=4, layers=2)).config.codebook_size == 12
    prior.save_pretrained(tmp_path / "p", extra={"level": 0})
    back = hiervq.load(tmp_path / "p")
    assert isinstance(back, PixelCNN) and back.config == prior.config
    for (k, a), (_, b) in zip(prior.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="odd"):
        PixelCNN(12, kernel_size=4)


class _CountingModel(torch.nn.Module):
    """Stands in for an autoencoder: 'codes' are pixel buckets; counts encode calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode(self, x):
        self.calls += 1
        return [(x[:, 0] * 3.99).long(), (x[:, 0, ::2, ::2] * 1.99).long()]

    def codes_to_list(self, codes):
        return list(codes)


def test_codes_are_extracted_once_and_cached(tmp_path):
    from hiervq.data import ImageSet

    images = ImageSet(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8), torch.arange(10) % 3, ["a", "b", "c"])
    model = _CountingModel()
    path = tmp_path / "codes.npz"
    first = cached_codes(path, "k1", model, {"train": images, "test": images.subset([0, 1])}, batch_size=4, log=print)
    assert model.calls == 3 + 1
    again = cached_codes(path, "k1", model, load_images=lambda: pytest.fail("the cache must be used"), log=print)
    assert model.calls == 4
    assert [c.shape for c in again["train"].codes] == [(10, 4, 4), (10, 2, 2)]
    assert torch.equal(again["train"].codes[0], first["train"].codes[0])
    assert torch.equal(again["train"].labels, images.labels) and again["train"].class_names == ["a", "b", "c"]
    cached_codes(path, "k2", model, {"train": images}, log=print)  # stale key: recomputed
    assert model.calls == 4 + 1
    assert load_codes(path)[0] == "k2"
    path.write_bytes(b"garbage")
    with pytest.raises(hiervq.DataError, match="not a codes cache .*delete it to recompute"):
        load_codes(path)


def test_prior_kind_dispatch_and_levels():
    model = hiervq.HierarchicalVQVAE(hiervq.models.HierarchicalConfig(in_channels=1, image_size=16, channels=8))
    kind = prior_kind_for(model)
    assert kind.prior_levels(model) == [1, 0]
    assert kind.parse_level(model, "top") == 1 and kind.parse_level(model, "bottom") == 0
    assert kind.parse_level(model, "0") == 0
    with pytest.raises(HierVQError, match="--level"):
        kind.parse_level(model, None)
    with pytest.raises(HierVQError, match="does not exist"):
        kind.parse_level(model, 2)
    single = hiervq.VQVAE(hiervq.models.VQVAEConfig(in_channels=1, image_size=16, channels=8))
    assert prior_kind_for(single).parse_level(single, None) == 0
    bottom = kind.build_prior(model, 0, {"channels": 4, "layers": 1}, 10, "test")
    assert bottom.config.cond_codebook_size == model.levels[1].codebook_size and bottom.config.num_classes == 10
    assert kind.build_prior(model, 1, {}, None, "test").config.cond_codebook_size is None
    with pytest.raises(HierVQError, match="follow from"):
        kind.build_prior(model, 0, {"num_codes": 3}, None, "test")  # the old name of codebook_size
    with pytest.raises(HierVQError, match="codebook_size follow from"):
        kind.build_prior(model, 0, {"codebook_size": 3}, None, "test")
    with pytest.raises(ConfigError, match="chanels"):
        kind.build_prior(model, 0, {"chanels": 3}, None, "test")

    class Unknown(torch.nn.Module):
        registry_name = "nothing"

    with pytest.raises(HierVQError, match="no prior is defined"):
        prior_kind_for(Unknown())

    @register_prior_kind("test-only-model")
    class Plugin(PriorKind):
        pass

    class Sub(Unknown):
        registry_name = "test-only-model"

    try:
        assert isinstance(prior_kind_for(Sub()), Plugin)
    finally:
        PRIOR_KINDS.pop("test-only-model")


def test_resolve_prior_config_merges_levels_and_overrides():
    from hiervq.priors.config import PriorsConfig
    from hiervq.train.config import config_from_dict
    from hiervq.train.priors import resolve_prior_config

    raw = copy.deepcopy(TINY_RUN)
    raw["priors"] = {
        "model": {"channels": 8, "layers": 2},
        "train": {"epochs": 3, "lr": 0.01},
        "levels": [{"model": {"layers": 5}, "train": {"epochs": 7}}],
    }
    priors = config_from_dict(raw, "x.yaml").priors
    bottom = resolve_prior_config(priors, "run", 0, overrides=["train.batch_size=8"], class_conditional=True)
    assert bottom.model == {"channels": 8, "layers": 5} and bottom.train.epochs == 7 and bottom.train.lr == 0.01
    assert bottom.train.batch_size == 8 and bottom.class_conditional
    top = resolve_prior_config(priors, "run", 1)
    assert top.model == {"channels": 8, "layers": 2} and top.train.epochs == 3 and not top.class_conditional
    with pytest.raises(ConfigError, match="epoks"):
        resolve_prior_config(priors, "run", 1, overrides=["train.epoks=1"])
    raw["priors"]["levels"] = [{"modle": {}}]
    with pytest.raises(ConfigError, match="modle"):
        config_from_dict(raw, "x.yaml")
    assert resolve_prior_config(PriorsConfig(), "run", 0).train.epochs == 10


def _run_flow(tmp_path, raw):
    from hiervq.cli import main
    from hiervq.train import config_from_dict, train_run

    run = tmp_path / "ae"
    train_run(config_from_dict(raw, "tiny"), run)
    assert main(["prior", str(run), "--level", "all"]) == 0
    return run


def test_prior_runs_and_sampling_on_digits(tmp_path, capsys):
    from hiervq.cli import main
    from hiervq.priors.sampling import sample_run

    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    raw["priors"] = {"class_conditional": True, "model": {"channels": 8, "layers": 2},
                     "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress": False}}
    run = _run_flow(tmp_path, raw)
    for level in (0, 1):
        d = run / "priors" / f"level{level}"
        summary = json.loads((d / "summary.json").read_text())
        model = hiervq.load(run)
        info = model.levels[level]
        assert summary["uniform_bits_per_image"] == pytest.approx(info.positions * math.log2(info.codebook_size))
        assert summary["bits_per_image"] == pytest.approx(summary["bits_per_code"] * info.positions)
        assert summary["class_conditional"] and summary["grid"] == list(info.grid)
        lines = (d / "metrics.jsonl").read_text().splitlines()
        # per-epoch numbers on the validation split; the test split once, in summary.json, beside val
        assert len(lines) == 2 and "val" in json.loads(lines[-1]) and "test" not in json.loads(lines[-1])
        assert (d / "codes.npz").is_file() and isinstance(hiervq.load(d), PixelCNN)
        meta = json.loads((d / "model" / "config.json").read_text())["extra"]
        assert meta["level"] == level and meta["class_conditional"] and meta["num_classes"] == 10
        report = (d / "report.md").read_text()  # the prior run's report: final NLL and the per-epoch curve/table
        assert f"{summary['bits_per_code']:.4f}" in report and "| 2 |" in report and "val bits/code" in report
        assert summary["selected_on"] == "val" and summary["test"]["bits_per_image"] == summary["bits_per_image"]
        assert summary["val"]["images"] >= 1 and summary["selected_epoch"] in (1, 2)
        assert (d / "nll.png").is_file() == have_matplotlib()
        assert ("nll.png" in report) == have_matplotlib()
    # codes were extracted once, for both levels
    assert (run / "codes.npz").stat().st_nlink >= 2 or (run / "codes.npz").is_file()

    out = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "20", "-o", str(out)]) == 0
    assert out.is_file() and "samples/s" in capsys.readouterr().out
    assert main(["sample", str(run), "-n", "20", "-o", str(out)]) == 2  # never over an existing file
    assert "already exists" in capsys.readouterr().err
    assert main(["sample", str(run), "--prior", str(run / "priors" / "level1"), "-n", "2", "-o", str(out),
                 "--overwrite"]) == 2
    assert "no prior for level(s) 0" in capsys.readouterr().err
    assert main(["sample", str(run), "--class", "12", "-n", "2", "-o", str(out), "--overwrite"]) == 2
    assert main(["prior", str(run), "--level", "top"]) == 2  # exists already
    assert "--overwrite" in capsys.readouterr().err
    before = json.loads((run / "priors" / "level0" / "summary.json").read_text())
    assert main(["prior", str(run), "--level", "all", "--resume"]) == 0  # finished: nothing left to train
    after = json.loads((run / "priors" / "level0" / "summary.json").read_text())
    assert after["bits_per_image"] == before["bits_per_image"] and after["train_s"] == before["train_s"]
    assert len((run / "priors" / "level0" / "metrics.jsonl").read_text().splitlines()) == 2
    rows = sample_run(run, n=20)
    assert rows.images.shape == (20, 1, 16, 16) and rows.nrow == 2
    assert torch.equal(rows.labels, torch.arange(10).repeat_interleave(2))


def test_prior_report_without_matplotlib(tmp_path, monkeypatch, caplog):
    """Without the plots extra a prior run's report.md still holds the numbers and says why the curve is missing."""
    from hiervq.metrics import plots
    from hiervq.train import report
    from hiervq.train.report import write_prior_report

    for module in (plots, report):  # where the charts are drawn, and where report.md says whether they were
        monkeypatch.setattr(module, "have_matplotlib", lambda: False)
    summary = {"autoencoder": "runs/x", "level": 0, "grid": [4, 4], "codebook_size": 16, "class_conditional": False,
               "bits_per_code": 2.5, "bits_per_image": 40.0, "uniform_bits_per_code": 4.0,
               "uniform_bits_per_image": 64.0, "saved_fraction": 0.375, "params": 10, "epochs": 1, "train_s": 1.0,
               "train_images": 8, "test_images": 4}
    history = [{"epoch": 1, "step": 3, "train_s": 1.0, "train": {"bits_per_code": 3.0}, "test": {"bits_per_code": 2.6}}]
    write_prior_report(tmp_path, summary, history)
    text = (tmp_path / "report.md").read_text()
    assert "| 1 | 3 | 3.0000 | 2.6000 | 1 |" in text and "hiervq[plots]" in text and not (tmp_path / "nll.png").exists()


def test_a_run_with_priors_ships_as_a_tokenizer_sampled_by_name(tmp_path, monkeypatch, capsys):
    """benchmarks/ship_tokenizer.py turns a run with priors into a tokenizer folder with its card; in the user's
    $HIERVQ_MODELS, `hiervq sample NAME` finds its priors and `hiervq models` counts them."""
    import importlib.util

    from hiervq import zoo
    from hiervq.cli import main

    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    raw["priors"] = {"class_conditional": True, "model": {"channels": 8, "layers": 2},
                     "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False}}
    run = _run_flow(tmp_path, raw)
    spec = importlib.util.spec_from_file_location("ship_tokenizer", REPO / "benchmarks" / "ship_tokenizer.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    monkeypatch.setattr("sys.argv", ["ship", str(run), "tiny-prior", "--out", str(tmp_path / "zoo"), "--check", "8"])
    ship.main()
    folder = tmp_path / "zoo" / "tiny-prior"
    card = json.loads((folder / "card.json").read_text())
    assert [p["level"] for p in card["priors"]] == [0, 1] and card["check"]["first"] == 8
    assert card["size_bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert "## Priors" in (folder / "card.md").read_text()
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "zoo"))
    out = tmp_path / "s.png"
    assert main(["sample", "tiny-prior", "-n", "10", "-o", str(out)]) == 0
    assert out.is_file() and "one row per class" in capsys.readouterr().out
    assert main(["models"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("tiny-prior "))
    assert row.split()[1] == "user" and row.split()[6] == "2"


def test_unigram_baseline_benchmark_writes_its_json(tmp_path):
    """benchmarks/priors_unigram.py: add-one-smoothed per-position frequencies, scored on the test codes of a
    run's codes.npz, written as a JSON that names the script (the docs quote it from there)."""
    import importlib.util

    from hiervq.data import load_data
    from hiervq.layout import RunDir
    from hiervq.train import config_from_dict, train_run

    spec = importlib.util.spec_from_file_location("priors_unigram", REPO / "benchmarks" / "priors_unigram.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # one position, K = 4: train counts (2, 1, 0, 0) + 1 -> p = (3, 2, 1, 1) / 7
    train, test = np.array([[0], [0], [1]]), np.array([[0], [2]])
    assert bench.unigram_bits(train, test, 4) == pytest.approx((math.log2(7 / 3) + math.log2(7)) / 2)

    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    config = config_from_dict(raw, "tiny")
    run = tmp_path / "ae"
    train_run(config, run)
    data = load_data(config.data)
    cached_codes(RunDir(run).codes, "k", hiervq.load(run), {"train": data.train, "test": data.test}, log=print)
    out = tmp_path / "unigram.json"
    bench.main([str(run), "--output", str(out)])
    result = json.loads(out.read_text())
    assert result["script"] == "benchmarks/priors_unigram.py" and result["run"] == str(run)
    assert (result["train_images"], result["test_images"]) == (len(data.train), len(data.test))
    _, splits = load_codes(RunDir(run).codes)
    model = hiervq.load(run)
    for row, info in zip(result["levels"], model.levels, strict=True):
        level = row["level"]
        tr, te = (splits[s].codes[level].reshape(len(splits[s].codes[level]), -1).numpy() for s in ("train", "test"))
        assert row["unigram_bits_per_code"] == pytest.approx(bench.unigram_bits(tr, te, info.codebook_size))
        assert row["unigram_bits_per_image"] == pytest.approx(row["unigram_bits_per_code"] * info.codes_per_image)
        assert row["uniform_bits_per_image"] == pytest.approx(info.codes_per_image * math.log2(info.codebook_size))
    assert result["unigram_bits_per_image"] == pytest.approx(sum(r["unigram_bits_per_image"] for r in result["levels"]))


def test_end_to_end_mnist_recipe_tiny(tmp_path):
    """The MNIST recipe's flow at a tiny size: autoencoder, both priors, 4 samples; class conditioning matters."""
    from hiervq.priors.sampling import sample_run
    from hiervq.train.config import load_config

    path = shared_file("mnist")
    overrides = [
        f"data.path={path}", "data.train_limit=256", "data.test_limit=64",
        "model.channels=16", "model.res_channels=8", "train.epochs=1", "train.batch_size=64", "train.progress=false",
        "train.eval_limit=64", "priors.model.channels=8", "priors.model.layers=2", "priors.levels.0.model.channels=8",
        "priors.levels.0.model.layers=2", "priors.train.epochs=1", "priors.train.batch_size=64",
        "priors.train.progress=false",
    ]
    config = load_config(REPO / "configs" / "hvqvae2-prior-mnist.yaml", overrides)
    assert config.priors.class_conditional
    run = _run_flow(tmp_path, config.to_dict())
    model = hiervq.load(run)
    assert [lv.grid for lv in model.levels] == [(8, 8), (4, 4)]
    a = sample_run(run, n=4, class_label=3, seed=5)
    b = sample_run(run, n=4, class_label=7, seed=5)
    assert a.images.shape == (4, 1, 32, 32) and a.images.dtype == torch.float32
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert [c.shape for c in a.codes] == [(4, 8, 8), (4, 4, 4)]
    assert not torch.equal(a.codes[0], b.codes[0]), "the class label must change the samples"
    assert not torch.allclose(a.images, b.images)
    again = sample_run(run, n=4, class_label=3, seed=5)
    assert torch.equal(again.codes[0], a.codes[0])  # seeded
    assert np.isfinite(a.samples_per_s) and a.samples_per_s > 0


def test_prior_resume_is_exact(tmp_path):
    """A prior run interrupted after epoch 1 and resumed ends with the weights of an uninterrupted run."""
    from hiervq.errors import CheckpointError
    from hiervq.train import config_from_dict, train_run
    from hiervq.train.priors import prior_run

    raw = copy.deepcopy(TINY_RUN)
    raw["train"]["epochs"] = 1
    run = tmp_path / "ae"
    train_run(config_from_dict(raw, "tiny"), run)
    sets = ["model.channels=8", "model.layers=2", "model.dropout=0.2", "train.epochs=2", "train.batch_size=32",
            "train.lr=0.01", "train.progress=false"]
    quiet = lambda msg: None  # noqa: E731
    prior_run(run, "top", overrides=sets, out=tmp_path / "full", log=quiet)

    def interrupt_in_epoch_2(msg):
        if "epoch 2:" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prior_run(run, "top", overrides=sets, out=tmp_path / "cut", log=interrupt_in_epoch_2)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "cut" / "model").exists()
    with pytest.raises(HierVQError, match="saved config"):
        prior_run(run, "top", overrides=sets, out=tmp_path / "cut", resume=True, log=quiet)
    with pytest.raises(HierVQError, match="belongs to"):
        prior_run(run, "bottom", out=tmp_path / "cut", resume=True, log=quiet)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        prior_run(run, "top", out=tmp_path / "nothing", resume=True, log=quiet)
    summary = prior_run(run, "top", out=tmp_path / "cut", resume=True, log=quiet)

    full, cut = hiervq.load(tmp_path / "full").state_dict(), hiervq.load(tmp_path / "cut").state_dict()
    assert all(torch.equal(full[k], cut[k]) for k in full)

    def nll_per_epoch(d):
        return [(r["epoch"], r["train"], r["val"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]

    assert nll_per_epoch(tmp_path / "cut") == nll_per_epoch(tmp_path / "full")
    assert summary["epochs"] == 2


def test_priors_benchmark_log_follows_its_results_file_and_totals_are_sums(monkeypatch):
    """benchmarks/priors_cifar10.py: the default results keep the committed log's name; another --results gets its
    own log, so a run with other settings does not overwrite the committed one; the committed totals are the
    levels' sums."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the script sets it at import; keep the process's own
    spec = importlib.util.spec_from_file_location("priors_cifar10", REPO / "benchmarks" / "priors_cifar10.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = REPO / "benchmarks" / "results"
    assert bench.log_path(results / "priors_cifar10.json") == results / "priors_cifar10_log.json"
    assert bench.log_path(Path("out/priors_cifar10_k128.json")) == Path("out/priors_cifar10_k128_log.json")
    assert (results / "priors_cifar10_log.json").is_file()
    committed = json.loads((results / "priors_cifar10.json").read_text())  # totals: a full run and --summarize
    assert {k: committed[k] for k in ("bits_per_image", "uniform_bits_per_image")} == bench.totals(committed)
    assert bench.totals(committed)["bits_per_image"] == sum(lv["bits_per_image"] for lv in committed["levels"])
