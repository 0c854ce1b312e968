"""Experiments: capacity-matching arithmetic, compare/sweep runs (restart skips finished points), the collapse
ablation switches, training snapshots."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from hiervq.errors import ConfigError, HierVQError
from hiervq.experiments import capacity
from hiervq.experiments.capacity import match_capacity
from hiervq.models.base import QuantizerConfig
from hiervq.pretrained import build
from hiervq.train import config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def hier(image_size, levels, **extra):
    return {"name": "hvqvae", "image_size": image_size, "in_channels": 3, "channels": 16, **extra,
            "levels": [dict(zip(("downsample", "codebook_size", "dim", "code_dim"), lv)) for lv in levels]}


# ---------------------------------------------------------------------- capacity matching
def test_published_case_64x64_plus_32x32_ch128_gives_cs160():
    # ImageNet 256x256: 64x64 + 32x32 grids, Ch = 128, Dh = 8, Kh = 4096 -> Cs = 160, Ds = 8, Ks = 8192
    m = match_capacity(hier(256, [(4, 4096, 128, 8), (2, 4096, 128, 8)]))
    lv = m.single["levels"][0]
    assert (lv["dim"], lv["code_dim"], lv["codebook_size"], lv["downsample"]) == (160, 8, 8192, 4)
    assert [x.grid for x in m.single_levels] == [(64, 64)]
    assert m.hier_budget.continuous == m.single_budget.continuous == 64 * 64 * 128 + 32 * 32 * 128 == 64 * 64 * 160
    assert m.hier_budget.discrete == m.single_budget.discrete == 2 * 4096 * 8 == 8192 * 8
    assert m.single["name"] == "vqvae" and m.single["channels"] == 16
    text = m.describe()
    assert "655,360" in text and "65,536" in text and "64x64x160" in text and "8192x8" in text


@pytest.mark.parametrize(
    "image, levels, kwargs, expected",
    [
        # CPU recipe: 8x8 + 4x4, Ch = 64 -> Cs = 80; Ds = 8 -> Ks = 2*Kh
        (32, [(4, 256, 64, 8), (2, 256, 64, 8)], {}, (80, 8, 512)),
        # no low-dimensional codes: Ds = Cs, Ks = 2*80*64 / 80
        (32, [(4, 80, 64, None), (2, 80, 64, None)], {}, (80, None, 128)),
        # explicit Ks: Ds derived
        (32, [(4, 256, 64, 8), (2, 256, 64, 8)], {"codebook_size": 1024}, (80, 4, 1024)),
        # explicit Ds
        (32, [(4, 256, 64, 8), (2, 256, 64, 8)], {"code_dim": 16}, (80, 16, 256)),
        # three levels 16x16 + 8x8 + 4x4 with 16 channels: Cs = 16 + 4 + 1
        (32, [(2, 64, 16, 4), (2, 64, 16, 4), (2, 64, 16, 4)], {}, (21, 4, 192)),
        # unequal levels: Cs = 32 + 64/4, sum K*D = 128*8 + 32*8
        (32, [(4, 128, 32, 8), (2, 32, 64, 8)], {}, (48, 8, 160)),
    ],
)
def test_matching_arithmetic(image, levels, kwargs, expected):
    m = match_capacity(hier(image, levels), **kwargs)
    lv = m.single["levels"][0]
    assert (lv["dim"], lv["code_dim"], lv["codebook_size"]) == expected
    # the budgets agree with the real models' own budget()
    for model_dict, budget in ((m.hier, m.hier_budget), (m.single, m.single_budget)):
        model = build(model_dict["name"], {k: v for k, v in model_dict.items() if k != "name"})
        assert (model.budget().continuous, model.budget().discrete) == (budget.continuous, budget.discrete)
    assert m.hier_budget.continuous == m.single_budget.continuous
    assert m.hier_budget.discrete == m.single_budget.discrete


def test_matching_errors_say_what_would_match():
    with pytest.raises(ConfigError, match=r"Cs = 80.5.*level 1 dim a multiple of 4"):
        match_capacity(hier(32, [(4, 64, 64, 8), (2, 64, 66, 8)]))
    # 2*64*64 = 8192 is not a multiple of Ds = Cs = 80
    with pytest.raises(ConfigError, match=r"Ks would be 102.4.*Ds in \[.*64.*\].*multiples of 5"):
        match_capacity(hier(32, [(4, 64, 64, None), (2, 64, 64, None)]))
    with pytest.raises(ConfigError, match=r"Ks = 300 does not divide.*Ks in \["):
        match_capacity(hier(32, [(4, 256, 64, 8), (2, 256, 64, 8)]), codebook_size=300)
    with pytest.raises(ConfigError, match="different code dimensions"):
        match_capacity(hier(32, [(4, 256, 64, 8), (2, 256, 64, 4)]))
    with pytest.raises(ConfigError, match="at least 2 levels"):
        match_capacity({"name": "vqvae", "image_size": 32, "levels": [{"downsample": 4}]})


# ---------------------------------------------------------------------- compare, with study snapshots
TINY = {
    "seed": 0,
    "data": {"name": "digits", "image_size": 16, "train_limit": 32, "test_limit": 16},
    "model": {
        "name": "hvqvae", "channels": 8, "blocks": 0, "res_channels": 8,
        "levels": [{"downsample": 2, "codebook_size": 16, "dim": 8, "code_dim": 4},
                   {"downsample": 2, "codebook_size": 16, "dim": 8, "code_dim": 4}],
        "quantizer": {"init": "data", "dead_threshold": 2, "dead_window": 2},
    },
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.002, "progress": False, "eval_batch_size": 64},
}


def test_compare_trains_both_identically_and_reports(tmp_path):
    from hiervq.experiments.compare import run_compare

    raw = copy.deepcopy(TINY)
    raw["compare"] = {}
    raw["study"] = {"fractions": [0, 0.5, 1], "fixed_batch": 4, "usage_images": 16, "tsne_iterations": 250}
    result = run_compare(config_from_dict(raw, "tiny"), tmp_path / "cmp")
    out = tmp_path / "cmp"
    for name in ("compare.json", "lorenz.png", "psnr_scatter.png", "report.md", "hier/summary.json",
                 "single/summary.json", "hier/study/reconstructions.png", "single/study/tsne_level0.png",
                 "hier/study/tsne_level1.png", "hier/study/epoch_0000.npz", "hier/study/epoch_0002.npz"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "hier" / "study").glob("epoch_*.npz")) == [
        "epoch_0000.npz", "epoch_0001.npz", "epoch_0002.npz"]
    h, s = result["hier"], result["single"]
    assert h["K"] == [16, 16] and h["D"] == [4, 4] and h["C"] == [8, 8]
    assert (s["K"], s["D"], s["C"]) == (32, 4, 10)
    assert h["continuous_budget"] == s["continuous_budget"] == 8 * 8 * 10
    assert h["discrete_budget"] == s["discrete_budget"] == 128
    for e in (h, s):
        assert set(e) >= {"psnr", "psnr_std", "mse", "perplexity", "used_fraction", "params", "train_s"}
    # identical training: the run configs differ only in the model section
    cfg_h = (out / "hier" / "config.yaml").read_text().split("\ndata:")[1]
    cfg_s = (out / "single" / "config.yaml").read_text().split("\ndata:")[1]
    assert cfg_h == cfg_s
    # snapshots do not change training: the epoch-2 snapshot's codebook is the saved model's
    snap = torch.from_numpy(__import__("numpy").load(out / "single" / "study" / "epoch_0002.npz")["codes0"])
    import hiervq

    assert torch.equal(snap, hiervq.load(out / "single").vq[0].codebook.weight)
    # a second call reuses the finished runs
    again = run_compare(config_from_dict(raw, "tiny"), out)
    assert again["hier"]["psnr"] == h["psnr"]
    # but refuses a changed config for the same folder
    raw["train"]["lr"] = 0.001
    with pytest.raises(Exception, match="different config"):
        run_compare(config_from_dict(raw, "tiny"), out)


def test_snapshot_epochs():
    from hiervq.experiments.study import snapshot_epochs

    assert snapshot_epochs([0, 0.25, 0.5, 0.75, 1], 8) == [0, 2, 4, 6, 8]
    assert snapshot_epochs([0, 0.25, 0.5, 0.75, 1], 5) == [0, 1, 3, 4, 5]


# ---------------------------------------------------------------------- sweep
def test_sweep_expansion_and_grid_parsing():
    from hiervq.experiments.sweep import expand_points, expand_wildcards, parse_grid

    grid = parse_grid(["model.levels.*.codebook_size=8,16", "model.quantizer.beta=0.1"])
    assert grid == {"model.levels.*.codebook_size": [8, 16], "model.quantizer.beta": [0.1]}
    points = expand_points(grid, {"a": ["model.quantizer.init=random"], "b": []})
    assert [p.name for p in points] == [
        "a__levels.all.codebook_size=8__quantizer.beta=0.1", "a__levels.all.codebook_size=16__quantizer.beta=0.1",
        "b__levels.all.codebook_size=8__quantizer.beta=0.1", "b__levels.all.codebook_size=16__quantizer.beta=0.1"]
    assert points[0].values == {"variant": "a", "model.levels.*.codebook_size": 8, "model.quantizer.beta": 0.1}
    raw = {"model": {"levels": [{"dim": 1}, {"dim": 2}, {"dim": 3}]}}
    assert expand_wildcards(raw, ["model.levels.*.dim=4", "seed=1"]) == [
        "model.levels.0.dim=4", "model.levels.1.dim=4", "model.levels.2.dim=4", "seed=1"]
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid(["nonsense"])


def test_sweep_restart_skips_finished_points(tmp_path, monkeypatch):
    from hiervq.experiments import compare as compare_mod
    from hiervq.experiments.sweep import run_sweep

    raw = copy.deepcopy(TINY)
    raw["train"]["epochs"] = 1
    raw["sweep"] = {"grid": {"model.levels.*.codebook_size": [8, 16]}}
    config = config_from_dict(raw, "tiny")
    calls = []
    real = compare_mod.train_run

    def spy(cfg, run_dir, resume=False, **kwargs):
        calls.append((Path(run_dir).name, resume))
        return real(cfg, run_dir, resume=resume, **kwargs)

    monkeypatch.setattr(compare_mod, "train_run", spy)
    out = tmp_path / "sweep"
    # keep: a subset of the points runs (and is the table); the others are left for a later call
    table = run_sweep(config, out, grid={"model.quantizer.beta": [0.5]},
                      keep=lambda p: p.values["model.levels.*.codebook_size"] == 16)
    assert [c[0] for c in calls] == table["points"] == ["levels.all.codebook_size=16__quantizer.beta=0.5"]
    calls.clear()
    table = run_sweep(config, out, grid={"model.quantizer.beta": [0.5]})
    names = ["levels.all.codebook_size=8__quantizer.beta=0.5", "levels.all.codebook_size=16__quantizer.beta=0.5"]
    assert [c[0] for c in calls] == names[:1] and table["points"] == names  # the kept point was finished
    assert [r["K"] for r in table["rows"]] == [[8, 8], [16, 16]]
    assert (out / "sweep.csv").read_text().count("\n") == 3
    assert (out / "heatmap_psnr_hvqvae.png").is_file()  # two axes -> heat maps
    # restart: nothing left to do
    calls.clear()
    run_sweep(config, out, grid={"model.quantizer.beta": [0.5]})
    assert calls == []
    # an interrupted point (checkpoint, no summary) is resumed; the finished one is skipped
    second = out / "points" / names[1]
    (second / "point.json").unlink()
    (second / "summary.json").unlink()
    table = run_sweep(config, out, grid={"model.quantizer.beta": [0.5]})
    assert calls == [(names[1], True)]
    assert len(table["rows"]) == 2
    assert json.loads((out / "sweep.json").read_text())["points"] == names
    # a finished point is reused only for the config it ran (issue 29): another seed, same point names, is refused
    changed = config_from_dict({**raw, "seed": 7}, "tiny")
    with pytest.raises(HierVQError, match="another config"):
        run_sweep(changed, out, grid={"model.quantizer.beta": [0.5]})


def test_a_finished_points_hash_survives_new_optional_keys():
    """config_hash leaves out None-valued keys, so a key a later hiervq adds with a None default (as
    train.time_limit was) keeps every finished point's hash; a point.json of the older format (config_hash over
    every key) is still matched by that hash; a real change (a set optional key) is not."""
    from hiervq.experiments.sweep import config_hash, dict_hash, ran_config

    config = config_from_dict(copy.deepcopy(TINY), "tiny")
    older = config.to_dict()  # the config as a hiervq before train.time_limit and train.plateau wrote it
    assert older["train"].pop("time_limit") is None and older["train"].pop("plateau") is None
    assert ran_config({"config_key": dict_hash(older)}, config)
    assert dict_hash(older, unset=True) != config_hash(config, unset=True)  # what the old hash could not survive
    assert ran_config({"config_hash": config_hash(config, unset=True)}, config)  # point.json of the old format
    limited = config_from_dict({**copy.deepcopy(TINY), "train": {**TINY["train"], "time_limit": 60}}, "tiny")
    assert not ran_config({"config_key": config_hash(config)}, limited) and not ran_config({}, config)


# ---------------------------------------------------------------------- collapse ablation switches
def ablation_points():
    from hiervq.experiments.sweep import expand_points, point_config

    base = load_config(REPO / "configs" / "collapse-ablation-cifar10.yaml")
    points = expand_points(base.sweep.grid, base.sweep.variants)
    return {p.name: point_config(base, p) for p in points}


def test_ablation_recipe_steps_switch_one_mitigation_each():
    from hiervq.experiments.compare import arch_configs

    steps = ablation_points()
    assert list(steps) == ["none", "data_init", "dead_reset", "low_dim"]
    q = {name: cfg.model["quantizer"] for name, cfg in steps.items()}
    assert (q["none"]["init"], q["none"]["dead_threshold"]) == ("random", 0)
    assert (q["data_init"]["init"], q["data_init"]["dead_threshold"]) == ("data", 0)
    assert (q["dead_reset"]["init"], q["dead_reset"]["dead_threshold"]) == ("data", 2)
    assert (q["low_dim"]["init"], q["low_dim"]["dead_threshold"]) == ("data", 2)
    discrete = set()
    for name, cfg in steps.items():
        match = match_capacity(cfg.model, image_size=32, in_channels=3)
        archs = arch_configs(cfg, match)
        for arch, arch_cfg in archs.items():
            model = capacity.describe_model(arch_cfg.model, 32, 3)
            discrete.add(model.budget().discrete)
            for vq in model.quantizers():
                book = vq.codebook
                assert book.init == ("random" if name == "none" else "data"), (name, arch)
                assert book.dead_threshold == (2.0 if name in ("dead_reset", "low_dim") else 0.0), (name, arch)
                low = name == "low_dim"
                assert (vq.code_dim == 8) == low and (vq.code_dim == vq.dim) == (not low), (name, arch)
    assert discrete == {10240}  # constant K*D over the steps and both architectures


def skewed_batches(steps, dim, n=256, seed=0):
    """Inputs far from the origin, in one tight cluster: most codes of a random codebook are never used."""
    g = torch.Generator().manual_seed(seed)
    return [50.0 + 0.1 * torch.randn(n, dim, generator=g) for _ in range(steps)]


@pytest.mark.parametrize("init", ["random", "data"])
@pytest.mark.parametrize("dead_threshold", [0, 2])
def test_quantizer_switches_really_switch(init, dead_threshold):
    torch.manual_seed(0)
    vq = QuantizerConfig(init=init, dead_threshold=dead_threshold, dead_window=3).make(8, 32)
    book = vq.codebook
    assert bool(book.initialized) == (init == "random")  # random init never looks at data
    vq.train()
    resets = 0
    for i, z in enumerate(skewed_batches(12, 8)):
        out = vq(z)
        resets += int(out.stats["resets"])
        if i == 0:
            norms = book.weight.norm(dim=1)
            if init == "data":  # the codes were taken from the data (norm ~ 50 * sqrt(8))
                assert norms.min() > 100
            else:  # still the unit-Gaussian codes, one EMA step moved them by ~1 %
                assert norms.median() < 10
    if dead_threshold == 0:
        assert resets == 0 and int(book.reset_count.sum()) == 0  # no code is ever re-seeded
    elif init == "random":
        assert resets > 0 and int(book.reset_count.sum()) == resets
        # re-seeded codes come from the data
        assert (book.weight[book.reset_count > 0].norm(dim=1) > 100).all()


def test_low_dim_switch_projects_to_code_dim():
    vq = QuantizerConfig().make(64, 640, code_dim=8)
    assert vq.codebook.weight.shape == (640, 8)
    assert isinstance(vq.project_in, torch.nn.Linear) and vq.project_in.out_features == 8
    full = QuantizerConfig().make(64, 80)
    assert full.codebook.weight.shape == (80, 64) and isinstance(full.project_in, torch.nn.Identity)


# ---------------------------------------------------------------------- recipes and CLI
@pytest.mark.parametrize("name", ["capacity-match-cifar10", "collapse-ablation-cifar10", "estimators-cifar10"])
def test_recipes_validate(name):
    from hiervq.experiments.sweep import expand_points, point_config

    base = load_config(REPO / "configs" / f"{name}.yaml")
    points = expand_points(base.sweep.grid, base.sweep.variants)
    for p in points:
        cfg = point_config(base, p)
        if cfg.compare is not None:
            match_capacity(cfg.model, image_size=32, in_channels=3)
    assert len(points) >= 3


def test_cli_compare_dry_run_and_errors(capsys, tmp_path):
    from hiervq.cli import main

    path = tmp_path / "c.yaml"
    raw = copy.deepcopy(TINY)
    path.write_text(json.dumps(raw))
    assert main(["compare", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "hierarchical" in out and "single-level" in out and "8x8x10" in out and "32x4" in out
    assert main(["compare", str(path), "--dry-run", "--set", "model.levels.1.dim=6"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "level 1 dim a multiple of 4" in err
    assert main(["sweep", str(path), "--dry-run", "--grid", "model.quantizer.beta=0.1,1"]) == 0
    assert "2 points" in capsys.readouterr().out
    assert main(["sweep", str(path), "--dry-run", "--grid", "model.quantizer.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


# ---------------------------------------------------------------------- committed study results
def _check_entry(e: dict, per_level: bool) -> None:
    keys = {"K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse", "perplexity",
            "used_fraction", "params"}
    assert keys <= set(e) <= keys | {"train_s"}  # train_s: written since the audit, absent from older JSONs
    if "train_s" in e:
        assert isinstance(e["train_s"], float) and e["train_s"] > 0
    for k in ("K", "D", "C"):
        if per_level:
            assert isinstance(e[k], list) and len(e[k]) >= 2 and all(isinstance(v, int) for v in e[k]), k
        else:
            assert isinstance(e[k], int), k
    for k in ("continuous_budget", "discrete_budget", "params"):
        assert isinstance(e[k], int), k
    for k in ("psnr", "psnr_std", "mse", "perplexity", "used_fraction"):
        assert isinstance(e[k], float), k
    assert 0.0 < e["used_fraction"] <= 1.0 and e["perplexity"] >= 1.0
    K = e["K"] if per_level else [e["K"]]
    D = e["D"] if per_level else [e["D"]]
    assert e["discrete_budget"] == sum(k * d for k, d in zip(K, D))


def test_committed_capacity_results_have_the_issue_format():
    data = json.loads((REPO / "benchmarks" / "results" / "capacity_match_cifar10.json").read_text())
    assert {"pairs", "ablation", "mode", "d_sweep"} <= set(data) and len(data["pairs"]) >= 3
    assert data["mode"] == "unconditioned"
    assert [row["D"] for row in data["d_sweep"]] == [4, 8, 16, 32]
    for row in data["d_sweep"]:
        assert isinstance(row["K"], int) and isinstance(row["psnr"], float) and row["perplexity"] >= 1.0
    assert list(data["ablation"]) == ["none", "data_init", "dead_reset", "low_dim"]
    for pair in data["pairs"] + list(data["ablation"].values()):
        per_image = {"single_better_fraction", "paired_psnr_diff_std"}  # need the runs: absent from older JSONs
        assert {"single", "hier", "psnr_gap_db"} <= set(pair) <= {"single", "hier", "psnr_gap_db"} | per_image
        _check_entry(pair["single"], per_level=False)
        _check_entry(pair["hier"], per_level=True)
        assert pair["psnr_gap_db"] == pair["hier"]["psnr"] - pair["single"]["psnr"]
        if "single_better_fraction" in pair:
            assert 0.0 <= pair["single_better_fraction"] <= 1.0 and pair["paired_psnr_diff_std"] >= 0.0
        # capacity matched: equal continuous and discrete budgets, single grid = bottom grid
        for key in ("continuous_budget", "discrete_budget"):
            assert pair["single"][key] == pair["hier"][key], key
    assert len({p["hier"]["discrete_budget"] for p in data["pairs"]}) == len(data["pairs"])  # distinct budgets
    assert len({s["hier"]["discrete_budget"] for s in data["ablation"].values()}) == 1  # constant K*D


def _benchmark(name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_capacity_benchmark_writes_train_s_and_the_per_image_keys_from_compare_json(tmp_path):
    """A full run's pairs carry each model's train_s and the point's per-image numbers from its compare.json; the
    --summarize path derives the same psnr_gap_db from a JSON without them."""
    bench = _benchmark("capacity_match_cifar10")
    entry = {k: 1 for k in bench.KEYS}
    rows = [{"point": "p", "arch": "hier", **entry, "psnr": 21.5, "train_s": 12.5, "extra": 0},
            {"point": "p", "arch": "single", **entry, "psnr": 22.0, "train_s": 10.25}]
    point = tmp_path / "points" / "p"
    point.mkdir(parents=True)
    (point / "compare.json").write_text(json.dumps({"single_better_fraction": 0.75, "paired_psnr_diff_std": 0.4,
                                                    "psnr_gap_db": -0.5}))
    pair = bench.pairs_of({"rows": rows}, tmp_path)["p"]
    assert pair["hier"]["train_s"] == 12.5 and pair["single"]["train_s"] == 10.25 and "extra" not in pair["hier"]
    assert (pair["single_better_fraction"], pair["paired_psnr_diff_std"], pair["psnr_gap_db"]) == (0.75, 0.4, -0.5)
    committed = tmp_path / "committed.json"
    committed.write_text(json.dumps({"pairs": [{"hier": pair["hier"], "single": pair["single"]}], "ablation": {}}))
    assert bench.summarize(committed)["pairs"][0]["psnr_gap_db"] == pair["psnr_gap_db"]


def test_estimator_benchmark_writes_the_per_image_psnr_and_the_derived_keys(tmp_path):
    bench = _benchmark("estimators_cifar10")
    row = {"test_losses": {"recon": 0.01, "commitment": 0.5}, "perplexity": 3.0, "used_codes": 4,
           "train_final": {"perplexity": 2.0}, "train_s": 5.0, "psnr": 21.0, "psnr_std": 1.5}
    e = bench.entry(row)
    assert (e["test_recon"], e["test_codebook"], e["psnr"], e["psnr_std"], e["train_s"]) == (0.01, 0.5, 21.0, 1.5, 5.0)
    result = {"ste": bench.entry(row), "rotation": bench.entry(row), "rotation_lowdim": bench.entry(row),
              "beta": {beta: bench.entry(row) for beta in bench.BETAS}}
    result["beta"]["1"]["train_s"] = 7.0
    derived = bench.derive(result)
    assert derived["ste"]["psnr_of_mean_mse"] == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert derived["train_s_total"] == pytest.approx(6 * 5.0 + 7.0)  # 7 runs: beta 0.25 is the rotation run
    result["settings"] = {"train_images": 1000, "batch_size": 128, "epochs": 3}
    derived = bench.derive(result)
    assert derived["settings"]["steps_per_epoch"] == 1000 // 128  # full batches only, as the trainer draws them
    assert derived["settings"]["steps"] == 3 * (1000 // 128)
    path = tmp_path / "estimators.json"
    bench.write(path, {k: v for k, v in result.items()})
    assert json.loads(path.read_text())["train_s_total"] == derived["train_s_total"]


def test_committed_estimator_results_have_the_issue_format():
    path = REPO / "benchmarks" / "results" / "estimators_cifar10_fixes.json"
    data = json.loads(path.read_text())
    assert {"ste", "rotation", "beta", "settings"} <= set(data)
    assert list(data["beta"]) == ["0.1", "0.25", "0.5", "1", "2"]
    for e in [data["ste"], data["rotation"], *data["beta"].values()]:
        assert {"test_recon", "test_codebook", "perplexity", "train_perplexity", "used_codes"} <= set(e)
        assert all(isinstance(e[k], float) and e[k] > 0 for k in ("test_recon", "test_codebook", "perplexity",
                                                                   "train_perplexity"))
        assert isinstance(e["used_codes"], int) and e["used_codes"] > 0
    assert data["beta"]["0.25"] == data["rotation"]  # the beta sweep uses the rotation model; its 0.25 point
    # derived keys (written by a full run and by --summarize): the PSNR of the mean MSE, the total training time
    for e in [data["ste"], data["rotation"], data["rotation_lowdim"], *data["beta"].values()]:
        assert e["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(1 / e["test_recon"]))
        if "psnr" in e:  # mean of per-image PSNRs: needs the runs, absent from older JSONs; never below the other
            assert e["psnr"] >= e["psnr_of_mean_mse"] - 1e-9 and e["psnr_std"] >= 0
    runs = [data["ste"], data["rotation_lowdim"], *data["beta"].values()]
    assert data["train_s_total"] == pytest.approx(sum(e["train_s"] for e in runs))
    settings = data["settings"]
    assert settings["beta_sweep_estimator"] == "rotation" and isinstance(settings["dead_threshold"], float)
    assert isinstance(settings["lr"], float) and all(
        isinstance(settings[k], int) for k in ("codebook_size", "code_dim", "epochs"))
    # derived keys (a full run and --summarize): full batches per epoch, steps in all, each model's parameters
    assert settings["steps_per_epoch"] == settings["train_images"] // settings["batch_size"]
    assert settings["steps"] == settings["steps_per_epoch"] * settings["epochs"]
    same = {e["params"] for e in [data["ste"], data["rotation"], *data["beta"].values()]}
    assert len(same) == 1 and isinstance(data["rotation_lowdim"]["params"], int)
    assert data["rotation_lowdim"]["params"] != same.pop()  # the 32-d run's projections


def test_committed_faithful_estimator_results_have_the_issue_format():
    """Issue 29: the study in the paper's setting (no data init, no dead-code reset), 2 seeds, the reset variant
    beside it, perplexity against beta for both, per-seed curves over every epoch."""
    path = REPO / "benchmarks" / "results" / "estimators_cifar10.json"
    if not path.is_file():
        pytest.skip("the faithful study has not been committed yet")
    data = json.loads(path.read_text())
    settings = data["settings"]
    assert settings["faithful"] is True and settings["dead_threshold"] == 0 and settings["init"] in ("random", "uniform")
    assert data["seeds"] == 2 and settings["epochs"] >= 15
    assert data["beta"]["0.25"] == data["rotation"] and set(data["beta"]) == {"0.25", "1", "2"}
    assert data["reset_variant"]["settings"]["dead_threshold"] > 0 and set(data["reset_variant"]["beta"]) == {"0.25", "2"}
    reset = data["reset_variant"]
    assert reset["seeds"] >= 1
    for entry, seeds in [(data["ste"], 2), *[(e, 2) for e in data["beta"].values()],
                         *[(e, reset["seeds"]) for e in reset["beta"].values()]]:
        assert entry["seeds"] == len(entry["per_seed"]) == seeds
        assert entry["test_recon"] == pytest.approx(sum(r["test_recon"] for r in entry["per_seed"]) / seeds)
        for run in entry["per_seed"]:
            assert [c["epoch"] for c in run["curve"]] == list(range(1, settings["epochs"] + 1))
            assert run["curve"][-1]["train_perplexity"] == pytest.approx(run["train_perplexity"])
    ppl = data["perplexity_vs_beta"]
    assert ppl["faithful"] == {b: e["train_perplexity"] for b, e in data["beta"].items()}
    assert ppl["reset"] == {b: e["train_perplexity"] for b, e in data["reset_variant"]["beta"].items()}


def test_estimator_benchmark_params_are_the_models_the_sweep_builds():
    """--summarize's params: each sweep point's model built from its config, as a run's summary counts it."""
    from hiervq.experiments.sweep import expand_points, point_config
    from hiervq.train import load_config

    bench = _benchmark("estimators_cifar10")
    config = load_config(bench.CONFIG, ["data.train_limit=64", "data.test_limit=16"])
    if not Path(config.data.path).is_file():
        pytest.skip(f"{config.data.path} not here")
    params = bench.point_params(config)
    sweep = config.sections["sweep"]
    assert list(params) == [p.name for p in expand_points(sweep.grid, sweep.variants)]
    lowdim = point_config(config, next(p for p in expand_points(sweep.grid, sweep.variants)
                                       if p.name == "rotation_lowdim"))
    assert params["rotation_lowdim"] == lowdim.build_model(in_channels=3, image_size=32).num_parameters()
    assert params["ste"] == params["rotation"] == params["beta_2"] != params["rotation_lowdim"]


def test_committed_pqvae_results_have_the_issue_format():
    data = json.loads((REPO / "benchmarks" / "results" / "recon_pqvae_equal_steps.json").read_text())
    mnist = data["mnist"]
    assert {"pqvae", "vqvae_plain", "vqvae"} <= set(mnist)
    steps = {e["steps"] for e in mnist.values()}
    assert len(steps) == 1 and steps.pop() > 0  # equal steps for every model
    for entry in [*mnist.values(), *data["cifar10"].values()]:
        assert isinstance(entry["steps"], int) and 0 < entry["mse"] < 1 and entry["bits_per_image"] == 512.0


def test_committed_pqvae_comparisons_are_their_rows_quotients():
    """recon_pqvae_equal_steps[_published].json's pqvae_over_plain (written after every model and by --summarize) follows from
    its rows."""
    bench = _benchmark("recon_pqvae")
    for name in ("recon_pqvae_equal_steps.json", "recon_pqvae_equal_steps_published.json"):
        data = json.loads((REPO / "benchmarks" / "results" / name).read_text())
        derived = bench.summarize({k: v for k, v in data.items() if k != "pqvae_over_plain"})
        assert data["pqvae_over_plain"] == derived["pqvae_over_plain"] and set(derived["pqvae_over_plain"]) == {"mnist", "cifar10"}
    toy = {"d": {"pqvae": {"mse": 3.0, "train_s": 4.0}, "vqvae_plain": {"mse": 2.0, "train_s": 1.0}}}
    assert bench.summarize(toy) == {"pqvae_over_plain": {"d": {"mse": 1.5, "train_s": 4.0}}}


def test_recon_benchmarks_write_wall_s_beside_train_s(tmp_path, monkeypatch):
    """recon_mnist.py (and recon_cifar10.py, which runs it) writes each model's wall_s, the whole train_run, which
    the docs used to quote only from printed output; with --seeds, one run per seed and the model's entry their
    mean with every seed's numbers and how each run's weights were selected; train_run is faked (no training)."""
    import argparse
    import types

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    bench = _benchmark("recon_mnist")
    level = {"perplexity": 2.0, "used_fraction": 1.0}
    summary = {"mse": 0.1, "psnr": 10.0, "epochs": 1, "train_s": 0.5, "levels": [level], "bits_per_image": 8.0,
               "params": 3, "test_images": 4}
    monkeypatch.setattr(bench, "train_run", lambda config, run_dir, overwrite: summary)
    monkeypatch.setattr(bench, "load_config", lambda path, sets: types.SimpleNamespace(seed=0))
    monkeypatch.setattr(bench.RunDir, "read_metrics", lambda self: [])
    args = argparse.Namespace(only=None, set=[], runs=str(tmp_path / "runs"))
    out = bench.run_models({"vqvae": bench.MODELS["vqvae"]}, args, tmp_path / "r.json")
    assert out["vqvae"]["train_s"] == 0.5 and out["vqvae"]["wall_s"] >= 0
    assert json.loads((tmp_path / "r.json").read_text())["vqvae"]["wall_s"] == out["vqvae"]["wall_s"]
    assert "selected_on" not in out["vqvae"] and "seed_mse" not in out["vqvae"]  # no val split, one run

    seen, numbers = [], iter([(0.3, 2.0, 4), (0.1, 3.0, 5)])

    def train(config, run_dir, overwrite):
        mse, train_s, best = next(numbers)
        seen.append((config.seed, run_dir.name))
        return {**summary, "mse": mse, "train_s": train_s, "selected_on": "val", "selected_epoch": best,
                "val": {"mse": mse / 2}, "val_images": 5, "train_images": 6}

    monkeypatch.setattr(bench, "train_run", train)
    monkeypatch.setattr(bench, "load_config", lambda path, sets: types.SimpleNamespace(seed=int(sets[-1][5:])))
    metrics = [{"epoch": 1, "train_s": 1.0, "val": {"mse": 0.5}}, {"epoch": 2, "train_s": 2.0, "val": {"mse": 0.4}}]
    monkeypatch.setattr(bench.RunDir, "read_metrics", lambda self: metrics)
    args = argparse.Namespace(only=None, set=["train.epochs=2"], runs=str(tmp_path / "runs"), seeds="3,4")
    entry = bench.run_models({"vqvae": bench.MODELS["vqvae"]}, args, tmp_path / "s.json")["vqvae"]
    assert seen == [(3, "vqvae-seed3"), (4, "vqvae-seed4")]
    assert entry["seed_mse"] == [0.3, 0.1] and entry["mse"] == pytest.approx(0.2) and entry["seeds"] == [3, 4]
    assert entry["train_s"] == 3.0 and entry["seed_train_s"] == [2.0, 3.0] and entry["selected_on"] == "val"
    assert entry["seed_val_mse"] == [0.15, 0.05] and [r["selected_epoch"] for r in entry["runs"]] == [4, 5]
    assert entry["curve"] == [{"epoch": 1, "train_s": 1.0, "val_mse": 0.5}, {"epoch": 2, "train_s": 2.0, "val_mse": 0.4}]
    assert entry["runs"][1]["overrides"] == ["train.epochs=2", "seed=4"]
    assert json.loads((tmp_path / "s.json").read_text())["vqvae"] == entry


def test_estimators_faithful_means_over_seeds_and_keeps_each_run():
    bench = _benchmark("estimators_cifar10")
    runs = [{"test_recon": 1.0, "perplexity": 10.0, "seed": 0, "curve": []},
            {"test_recon": 3.0, "perplexity": 20.0, "seed": 1, "curve": []}]
    out = bench.over_seeds(runs)
    assert out["test_recon"] == 2.0 and out["perplexity"] == 15.0 and out["seeds"] == 2
    assert abs(out["test_recon_std"] - 2 ** 0.5) < 1e-12 and out["per_seed"] == runs
    assert bench.over_seeds(runs[:1])["perplexity_std"] == 0.0


def test_gpu_driver_runs_the_published_schedules_within_the_budget():
    """benchmarks/gpu_studies.py: 100 epochs for the estimator study and the SVQVAE fine-tuning, the published
    PQ-VAE size, and per-run time limits that keep each study inside its budget (runs sharing the GPU)."""
    import argparse

    bench = _benchmark("gpu_studies")
    args = argparse.Namespace(results="r", runs="u", workers=6, threads=4, pq_epochs=20, budget_s=600.0, smoke=False)

    def limit(argv):
        return float(next(a for a in argv if "train.time_limit=" in a).split("=")[-1])

    est = bench.commands("estimators", args)[0]
    assert "--faithful" in est and "--set=train.epochs=100" in est and limit(est) * 12 / 6 <= 600
    svq = bench.commands("svqvae", args)[0]
    assert "--set=classify.head.epochs=100" in svq and "--set=data.image_size=32" in svq
    pq = bench.commands("pqvae", args)[0]
    assert {"--set=model.channels=512", "--set=model.blocks=3", "--set=train.lr=1e-3"} <= set(pq)
    assert limit(pq) * 4 <= 600  # 2 datasets x 2 models one after another
    assert not any("train_limit" in a for a in est + svq + pq)  # the whole data unless --smoke


def test_committed_converged_pqvae_results_have_the_issue_format():
    """recon_pqvae.py --converged: per run converged/stopped/curve, per model the seed mean, step_ratio from the runs."""
    path = REPO / "benchmarks" / "results" / "recon_pqvae.json"
    if not path.is_file():
        pytest.skip("the converged PQ-VAE comparison has not been committed yet")
    data = json.loads(path.read_text())
    assert data["script"] == "benchmarks/recon_pqvae.py" and data["protocol"]["selected_on"] == "val"
    for dataset, ratio in data["step_ratio"].items():
        models = data[dataset]
        for entry in models.values():
            runs = entry["runs"]
            assert entry["seed_mse"] == [r["mse"] for r in runs] and entry["converged"] == all(r["converged"] for r in runs)
            for r in runs:
                assert isinstance(r["converged"], bool) and r["converged"] == (r["stopped"] == "plateau")
                assert len(r["curve"]) == r["epochs"] and r["curve"][-1][0] == pytest.approx(r["train_s"], abs=1)
                if r["stopped"] == "time_limit":
                    assert r["curve"][-2][0] < data["protocol"]["budget_s"] <= r["train_s"]
        per_step = {m: sum(r["s_per_step"] for r in e["runs"]) / len(e["runs"]) for m, e in models.items()}
        assert ratio == pytest.approx(per_step["pqvae"] / per_step["vqvae_plain"])
