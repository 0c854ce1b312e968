"""Issue 18 (usability): recipes shipped in the package, versions and data in saved models, a light core with
extras, logging with --quiet/--verbose and progress lines, --threads, SSIM/MS-SSIM and the perceptual-metric hook,
report figures, --help defaults, TensorBoard."""

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hiervq.cli import NO_THREADS, build_parser, main

from .conftest import REPO, TINY_RUN


def tiny(**train):
    cfg = json.loads(json.dumps(TINY_RUN))
    cfg["train"].update(epochs=1, **train)
    return cfg


def write_config(tmp_path, cfg, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True)
def restore_logging_and_threads():
    logger = logging.getLogger("hiervq")
    level, threads = logger.level, torch.get_num_threads()
    yield
    logger.setLevel(level)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("usability")
    assert main(["train", str(write_config(root, tiny())), "--out", str(root / "run")]) == 0
    return root / "run"


# ---------------------------------------------------------------------- 1. recipes inside the package
def test_the_recipes_are_shipped_with_one_source_of_truth():
    from hiervq.recipes import describe_recipes, recipe_names, recipes_dir

    assert recipes_dir().resolve() == (REPO / "configs").resolve()  # src/hiervq/configs links to configs/
    assert recipe_names() == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    described = dict(describe_recipes())
    assert described["demo"].startswith("The README's main job")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"configs/*.yaml"' in pyproject and '"data/digits.npz"' in pyproject


def test_hiervq_configs_lists_names_and_first_comment_lines(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert set(lines) >= {"demo", "vqvae-mnist", "hvqvae2-cifar10"}
    assert "embedded" in lines["demo"] and "Single-level VQ-VAE on MNIST" in lines["vqvae-mnist"]
    assert main(["configs", "--path"]) == 0
    assert Path(capsys.readouterr().out.strip(), "demo.yaml").is_file()


def test_train_a_recipe_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    quick = ["--set", "train.epochs=1", "--set", "data.train_limit=64", "--set", "data.test_limit=16",
             "--set", "model.channels=16", "--set", "model.res_channels=8", "--set", "train.progress=false"]
    assert main(["train", "demo", "--out", str(tmp_path / "x"), *quick]) == 0
    assert (tmp_path / "x" / "summary.json").is_file()
    assert main(["train", "demo.yaml", *quick]) == 0  # the default run directory is runs/<recipe name>
    assert (tmp_path / "runs" / "demo" / "summary.json").is_file()
    capsys.readouterr()
    # a relative data path in a recipe is relative to the working directory, and the error says where it looked
    code = main(["train", "vqvae-mnist", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "data.path" in err and str(tmp_path.parent / "shared") in err, err


def test_a_local_file_wins_over_a_recipe_and_unknown_names_list_the_recipes(tmp_path, monkeypatch, capsys):
    from hiervq.train import load_config

    monkeypatch.chdir(tmp_path)
    cfg = tiny()
    cfg["seed"] = 123
    write_config(tmp_path, cfg, "demo.yaml")
    assert load_config("demo.yaml").seed == 123  # the file in the working directory
    assert load_config("demo").data.image_size == 32  # the recipe (no file called "demo")
    code = main(["train", "no-such-recipe"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no such config file, nor a shipped recipe" in err and "demo, " in err and "vqvae-mnist" in err
    code = main(["train", str(tmp_path / "sub" / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "no such config file" in err and "recipes" not in err


# ---------------------------------------------------------------------- 2. versions and data in config.json
def test_saved_models_record_versions_and_data_and_old_ones_still_load(finished_run, tmp_path):
    import shutil

    import hiervq

    meta = json.loads((finished_run / "model" / "config.json").read_text())
    assert meta["hiervq_version"] == hiervq.__version__ and meta["torch_version"] == torch.__version__
    assert meta["data"] == {"name": "digits", "path": None, "absolute_path": None, "image_size": 16, "fit": "resize",
                            "channels": 1, "classes": None}
    old = tmp_path / "old"
    shutil.copytree(finished_run / "model", old)
    for key in ("hiervq_version", "torch_version", "data"):
        meta.pop(key)
    (old / "config.json").write_text(json.dumps(meta))
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(hiervq.load(old).encode(x)[0], hiervq.load(finished_run).encode(x)[0])


def test_data_description_resolves_relative_paths(tmp_path, monkeypatch):
    from hiervq.data import DataConfig

    monkeypatch.chdir(tmp_path)
    described = DataConfig(name="npz", path="d/x.npz", image_size=32, fit="pad", channels=3).describe((1, 32, 32))
    assert described["path"] == "d/x.npz" and described["absolute_path"] == str(tmp_path / "d" / "x.npz")
    assert described["fit"] == "pad" and described["channels"] == 1 and described["image_size"] == 32


def test_encode_reads_the_fit_of_a_bare_saved_model(finished_run, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(finished_run / "model", model)
    meta = json.loads((model / "config.json").read_text())
    meta["data"]["fit"] = "pad"
    (model / "config.json").write_text(json.dumps(meta))
    Image.fromarray(np.zeros((12, 20), dtype=np.uint8)).save(tmp_path / "wide.png")
    code = main(["encode", str(model), str(tmp_path / "wide.png"), "-o", str(tmp_path / "c.npz"), "--resize"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot pad 12x20 images to 16x16" in err and "data.fit: pad" in err, err


# ---------------------------------------------------------------------- 3. a light core, extras
def test_the_core_imports_neither_matplotlib_nor_sklearn():
    code = (
        "import sys\n"
        "import hiervq.quantize\n"
        "light = not {'matplotlib', 'sklearn', 'tensorboard'} & set(sys.modules)\n"
        "import hiervq, hiervq.train, hiervq.metrics, hiervq.cli\n"
        "print(light, sorted({'matplotlib', 'sklearn', 'tensorboard', 'pytorch_msssim'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True []", result.stdout


def test_embedded_digits_are_scikit_learns():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from hiervq.data.datasets import DIGITS_FILE

    bunch = sklearn_datasets.load_digits()
    with np.load(DIGITS_FILE) as archive:
        assert np.array_equal(archive["images"], bunch.images) and np.array_equal(archive["labels"], bunch.target)


def test_a_missing_extra_is_named_in_one_line(monkeypatch):
    from hiervq.errors import MissingExtraError
    from hiervq.extras import require

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"^drawing charts needs matplotlib, which is not installed "
                                                r"\(pip install 'hiervq\[plots\]'\)$"):
        require("matplotlib", "drawing charts")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'hiervq\[sklearn\]'"):
        require("sklearn.manifold", "t-SNE")


def test_without_matplotlib_a_run_still_finishes_with_its_report(tmp_path, monkeypatch, capsys):
    import hiervq.extras

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(hiervq.extras, "_warned", set())
    code = main(["train", str(write_config(tmp_path, tiny())), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
    run = tmp_path / "run"
    assert err.count("pip install 'hiervq[plots]'") == 1, err  # one warning, not one per figure
    assert (run / "reconstructions.png").is_file()  # Pillow only
    assert not (run / "curves.png").exists() and not (run / "usage.png").exists()
    report = (run / "report.md").read_text()
    assert "matplotlib is not installed" in report and "![curves]" not in report


def test_the_study_skips_tsne_without_sklearn(tmp_path, monkeypatch, capsys):
    import hiervq.extras
    from hiervq.data import load_data
    from hiervq.experiments.config import StudyConfig
    from hiervq.experiments.study import TrainingSnapshots, finish_study
    from hiervq.train import config_from_dict, train_run

    cfg = tiny()
    config = config_from_dict(cfg, "tiny")
    data = load_data(config.data)
    study = StudyConfig(fractions=[0.0, 1.0], fixed_batch=4, usage_images=32, tsne=True)
    train_run(config, tmp_path / "run", callbacks=[TrainingSnapshots(study, tmp_path / "run", data.test, 1)], data=data)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setattr(hiervq.extras, "_warned", set())
    capsys.readouterr()
    written = finish_study(study, tmp_path / "run", data.test)
    assert [p.name for p in written] == ["reconstructions.png"]
    assert "pip install 'hiervq[sklearn]'" in capsys.readouterr().err


# ---------------------------------------------------------------------- 4. logging, --quiet/--verbose, progress
def test_quiet_shows_nothing_but_results_and_verbose_shows_debug(finished_run, tmp_path, capsys):
    code = main(["-q", "train", str(write_config(tmp_path, tiny(progress=True))), "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "" and captured.out == "", captured
    code = main(["eval", str(finished_run), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "" and json.loads(captured.out)["images"] == 32
    code = main(["eval", str(finished_run)])
    assert code == 0 and "evaluated 32 images (test)" in capsys.readouterr().err
    code = main(["--verbose", "--threads", "1", "eval", str(finished_run)])
    assert code == 0 and "debug: torch threads: 1" in capsys.readouterr().err


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HIERVQ_PROGRESS_INTERVAL", "0")  # a line after every batch but the last
    code = main(["train", str(write_config(tmp_path, tiny(progress=True))), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("all epoch 1: ")]
    assert len(lines) == 5, err  # 96 images / batch 16 = 6 batches
    assert lines[0].startswith("all epoch 1: 1/6 batches (17%), ") and "batches/s, loss " in lines[0]
    assert "psnr" in lines[0] and "ppl" in lines[0]


def test_progress_helper():
    from hiervq.log import ProgressLines, progress

    logger = logging.getLogger("hiervq.test")
    lines = ProgressLines(list(range(10)), "x", interval=0.0, logger=logger)
    assert list(lines) == list(range(10)) and lines.lines == 9 and len(lines) == 10
    assert isinstance(progress([1, 2], "x", enabled=True), ProgressLines)  # pytest's stderr is not a terminal
    assert progress([1, 2], "x", enabled=False) == [1, 2]
    logging.getLogger("hiervq").setLevel(logging.WARNING)
    assert progress([1, 2], "x", enabled=True) == [1, 2]


def test_library_prints_go_through_logging():
    """No print() outside the CLI (results) and the error line of main: everything else is logged."""
    offenders = []
    for path in (REPO / "src" / "hiervq").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "print(" in line and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(REPO)}:{i}")
    allowed = {"src/hiervq/experiments/sweep.py", "src/hiervq/experiments/compare.py"}  # dry-run list, final result
    assert {o.split(":")[0] for o in offenders} <= allowed, offenders


# ---------------------------------------------------------------------- 5. --threads
def test_threads_is_applied_before_the_work(finished_run, capsys):
    torch.set_num_threads(2)
    assert main(["eval", str(finished_run), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["--threads", "0", "eval", str(finished_run)]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        has = any("--threads" in a.option_strings for a in command._actions)
        assert has == (name not in NO_THREADS), name
    assert NO_THREADS == ("configs", "models")  # the listings compute nothing


# ---------------------------------------------------------------------- 6. SSIM / MS-SSIM, perceptual hook
def test_ssim_settings_are_valid_for_small_images():
    from hiervq.metrics import MS_SSIM_WEIGHTS, ssim_setting

    for side, scales, win in ((32, 3, 7), (28, 3, 7), (16, 2, 7), (64, 4, 7), (128, 5, 7), (8, 1, 7), (5, 1, 5)):
        s = ssim_setting(side, side)
        assert (len(s.ms_weights), s.ms_win_size) == (scales, win), side
        assert abs(sum(s.ms_weights) - 1) < 1e-12 and s.win_size == min(11, side if side % 2 else side - 1)
    assert ssim_setting(256, 256).standard_ms_ssim and ssim_setting(256, 256).ms_weights == MS_SSIM_WEIGHTS
    assert "3 scales, 7-tap window" in ssim_setting(32, 32).describe()


def test_ssim_per_image_uses_pytorch_msssim():
    from pytorch_msssim import ms_ssim, ssim

    from hiervq.metrics import ssim_per_image, ssim_setting

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 192, 192, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s, ms = ssim_per_image(x, y)
    assert torch.allclose(s, ssim(x, y, data_range=1.0, size_average=False).double())
    assert torch.allclose(ms, ms_ssim(x, y, data_range=1.0, size_average=False).double())
    # the small-image path is the same computation: with the standard setting forced it gives the same numbers
    import hiervq.metrics as m

    standard = m.SSIMSetting(11, 11, tuple(w * 1.0000001 for w in m.MS_SSIM_WEIGHTS))
    original = m.ssim_setting
    try:
        m.ssim_setting = lambda h, w: standard
        _, ms_loop = ssim_per_image(x, y)
    finally:
        m.ssim_setting = original
    assert torch.allclose(ms_loop, ms.double(), atol=1e-5)
    for side in (32, 28, 16):
        a = torch.rand(4, 1, side, side, generator=g)
        s, ms = ssim_per_image(a, a)
        assert torch.allclose(s, torch.ones(4, dtype=torch.float64), atol=1e-5) and torch.allclose(ms, torch.ones(4, dtype=torch.float64), atol=1e-5)
        s2, ms2 = ssim_per_image(a, (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1))
        assert (s2 < 0.99).all() and (ms2 < 0.99).all() and (ms2 >= 0).all() and ssim_setting(side, side)


def test_summary_eval_and_report_have_ssim(finished_run, capsys):
    summary = json.loads((finished_run / "summary.json").read_text())
    for key in ("ssim", "ssim_std", "ms_ssim", "ms_ssim_std"):
        assert 0 <= summary[key] <= 1, key
    assert "MS-SSIM 2 scales" in summary["ssim_setting"]
    report = (finished_run / "report.md").read_text()
    assert "| SSIM | MS-SSIM |" in report and f"{summary['ssim']:.4f}" in report and f"{summary['ms_ssim']:.4f}" in report
    assert main(["eval", str(finished_run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["ssim"] - summary["ssim"]) < 1e-6 and abs(result["ms_ssim"] - summary["ms_ssim"]) < 1e-6
    metrics = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert "ssim" in metrics[-1]["val"] and "ms_ssim" in metrics[-1]["val"]


STANDIN = '''
import torch
from torch import nn

from hiervq.metrics.perceptual import PerceptualMetric

WEIGHTS = {weights!r}


class Features(nn.Module):
    """A tiny stand-in for a pretrained feature network (VGG/Inception): conv + pooled features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x.expand(-1, 3, -1, -1) * 2 - 1))


class Distance(nn.Module):
    """LPIPS-like: mean squared difference of unit-normalised features."""

    def __init__(self):
        super().__init__()
        self.features = Features()

    def forward(self, x, y):
        fx, fy = (nn.functional.normalize(self.features(v), dim=1) for v in (x, y))
        return (fx - fy).pow(2).sum(1).mean((1, 2))


def lpips_like():
    net = Distance()
    net.features.load_state_dict(torch.load(WEIGHTS))  # weights present locally
    return PerceptualMetric("lpips_like", net, kind="distance")


def fid_like():
    net = Features()
    net.load_state_dict(torch.load(WEIGHTS))
    return PerceptualMetric("fid_like", lambda x: net(x).mean((2, 3)), kind="features")


def broken():
    return 42
'''


@pytest.fixture
def standin(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "standin.pt"
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    torch.save({"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()}, weights)
    path = tmp_path / "standin_metrics.py"
    path.write_text(STANDIN.format(weights=str(weights)))
    return path


def test_perceptual_metric_hook_with_stand_in_networks(finished_run, standin, capsys):
    from hiervq.metrics.perceptual import frechet_distance, load_metric
    from hiervq.train.run import evaluate_run

    code = main(["eval", str(finished_run), "--metric", f"{standin}:lpips_like", "--metric", f"{standin}:fid_like"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["lpips_like"] > 0 and result["lpips_like_std"] >= 0 and result["fid_like"] > 0
    # the numbers are the networks': identical inputs give 0, and the library call gives the same result
    lpips = load_metric(f"{standin}:lpips_like")
    x = torch.rand(4, 1, 16, 16)
    assert torch.allclose(lpips.network(x, x), torch.zeros(4))
    again = evaluate_run(finished_run, metrics=[lpips])
    assert abs(again["lpips_like"] - result["lpips_like"]) < 1e-9
    a = torch.randn(50, 3, dtype=torch.float64)
    assert frechet_distance(a, a) < 1e-8
    assert abs(frechet_distance(a, a + 2.0) - 12.0) < 1e-6  # a pure mean shift of 2 in 3 dimensions
    for spec, needle in ((f"{standin}:broken", "not a PerceptualMetric"), (f"{standin}:nope", "has no 'nope'"),
                         ("no_such_module_xyz:f", "cannot import"), ("nocolon", "expected MODULE:FACTORY")):
        code = main(["eval", str(finished_run), "--metric", spec])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------- 7. reports and --help
def test_reconstructions_have_row_labels(tmp_path):
    from hiervq.metrics.plots import plot_reconstructions

    x = torch.rand(16, 1, 16, 16)
    plot_reconstructions(x, x, tmp_path / "r.png")
    img = np.asarray(Image.open(tmp_path / "r.png"))
    grid_width = (8 * 17 + 1) * 3
    margin = img.shape[1] - grid_width
    assert margin > 20 and img.shape[0] == (4 * 17 + 1) * 3
    assert (img[:, :margin] < 128).any()  # text in the margin
    plot_reconstructions(x[:5], x[:5], tmp_path / "short.png")  # fewer images than a row: still orig/recon rows
    assert np.asarray(Image.open(tmp_path / "short.png")).shape[0] == (2 * 17 + 1) * 3


def test_curves_have_y_labels_and_the_codebook_size(finished_run, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from hiervq.metrics.plots import plot_curves
    from hiervq.train.report import read_metrics

    seen = {"ylabels": [], "hlines": []}
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel", lambda self, t, *a, **k: seen["ylabels"].append(t))
    original = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda self, y=0, *a, **k: seen["hlines"].append((y, k.get("label"))) or original(self, y, *a, **k))
    plot_curves(read_metrics(finished_run), finished_run / "c.png", codebook_sizes=[32, 16])
    assert len(seen["ylabels"]) == 3 and all(seen["ylabels"])
    assert seen["hlines"] == [(32, "K = 32 (level 0)"), (16, "K = 16 (level 1)")]


def test_class_conditional_sample_grids_name_their_rows(monkeypatch, tmp_path):
    from hiervq.metrics import plots

    calls = []
    monkeypatch.setattr(plots, "_label_rows", lambda img, labels, **k: calls.append(labels) or img)
    plots.save_image_grid(torch.rand(6, 3, 8, 8), tmp_path / "g.png", nrow=2, row_labels=["cat", "dog", "eel"])
    assert calls == [["cat", "dog", "eel"]]


def test_help_shows_every_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in [("hiervq", parser), *sub.choices.items()]:
        text = " ".join(command.format_help().split())
        for action in command._actions:
            default = action.default
            if default is None or default is False or default == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            shown = {str(default), f"{default:g}" if isinstance(default, float) else str(default)}
            assert any(s in text for s in shown), f"{name} {action.option_strings or action.dest}: {default!r}"


# ---------------------------------------------------------------------- 8. TensorBoard
def test_tensorboard_logs_the_metrics_scalars_and_the_reconstruction_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hiervq.train import config_from_dict, train_run
    from hiervq.train.report import read_metrics
    from hiervq.train.tensorboard import scalars

    cfg = tiny(tensorboard=True, log_every=2)
    cfg["train"]["epochs"] = 2
    train_run(config_from_dict(cfg, "tiny"), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    history = read_metrics(tmp_path / "run")
    expected = dict(scalars(history[-1]))
    per_step = {t for t in events.Tags()["scalars"] if t.startswith("train_step/")}
    assert set(events.Tags()["scalars"]) - per_step == set(expected)
    # the training loss of every train.log_every-th step, not one point per epoch
    assert {"train_step/loss", "train_step/psnr"} <= per_step
    assert [e.step for e in events.Scalars("train_step/loss")] == list(range(2, history[-1]["step"] + 1, 2))
    for tag in ("train/loss", "val/psnr", "val/ssim", "train/perplexity/0", "val/levels/1/used_fraction"):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [r["step"] for r in history]
        assert abs(logged[-1].value - expected[tag]) <= 1e-6 * max(1.0, abs(expected[tag]))
    assert [e.step for e in events.Images("reconstructions")] == [r["step"] for r in history]


def test_tensorboard_is_off_by_default_and_its_absence_is_one_line(tmp_path, monkeypatch, capsys):
    from hiervq.train import TrainConfig

    assert TrainConfig().tensorboard is False
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code = main(["train", str(write_config(tmp_path, tiny(tensorboard=True))), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'hiervq[tensorboard]'" in err, err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- 9. small things (issue 26, item 5)
def test_every_command_has_a_description():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert command.description, f"hiervq {name} --help has no description"


def test_resuming_a_finished_cosine_run_with_more_epochs_warns_of_the_lr_jump(finished_run, tmp_path, caplog):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with caplog.at_level(logging.WARNING, logger="hiervq"):
        assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    warned = [r.getMessage() for r in caplog.records if "back up" in r.getMessage()]
    assert len(warned) == 1 and "cosine schedule" in warned[0] and "set train.lr" in warned[0], warned
    assert "goes from 0 (where the checkpoint left it) back up to 0.00" in warned[0]  # tiny()'s lr 0.002
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hiervq"):  # a finished run resumed as it is: no word
        assert main(["train", "--resume", str(run)]) == 0
    assert not [r for r in caplog.records if "back up" in r.getMessage()]


def test_torchrun_logs_the_processes_and_the_global_batch():
    from hiervq.train.distributed import DistInfo, describe_processes

    line = describe_processes(DistInfo(rank=0, world_size=4, device=torch.device("cpu")), 32)
    assert "4 processes" in line and "32 per process" in line and "global batch of 128" in line


def test_log_every_is_checked(tmp_path, capsys):
    assert main(["train", str(write_config(tmp_path, tiny(log_every=0))), "--out", str(tmp_path / "r")]) == 2
    assert "log_every" in capsys.readouterr().err


def test_prior_level_all_with_out_writes_a_folder_of_levels(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    quick = ["--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model.channels=8",
             "--set", "model.layers=1"]
    assert main(["prior", str(run), "--level", "all", "--out", str(tmp_path / "p"), *quick]) == 0
    assert all((tmp_path / "p" / f"level{i}" / "model" / "config.json").is_file() for i in (0, 1))
    assert not (run / "priors").exists() and (run / "codes.npz").is_file()  # a run keeps its codes cache
