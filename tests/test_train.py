"""Training runs: outputs of a run, exact resume, phases, the trainer's schedule."""

import json
import math

import pytest
import torch

import hiervq
from hiervq.train import config_from_dict, load_checkpoint, lr_factor, train_run


class Interrupt(KeyboardInterrupt):
    pass


def stop_after(epoch):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise Interrupt

    return callback


def test_run_writes_everything(tmp_path, tiny_run_config):
    cfg = config_from_dict(tiny_run_config, "tiny")
    summary = train_run(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "reconstructions.png", "curves.png",
                 "usage.png", "report.md", "model/config.json", "model/model.safetensors", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("mse", "psnr", "bits_per_image"):
        assert isinstance(on_disk[key], float)
    assert len(on_disk["levels"]) == 2
    for lv in on_disk["levels"]:
        assert set(lv) >= {"codebook_size", "perplexity", "used_fraction", "dead_codes"}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # per-epoch numbers on val only; test evaluated once, at the end, beside the val numbers of the selected epoch
    last = json.loads(lines[-1])
    assert len(lines) == 2 and "test" not in last and last["val"]["images"] == on_disk["val_images"] >= 1
    assert on_disk["selected_on"] == "val" and on_disk["selected_epoch"] in (1, 2)
    assert on_disk["test"]["images"] == on_disk["test_images"] == 32 and on_disk["test"]["mse"] == on_disk["mse"]
    model = hiervq.load(run)
    assert model.budget().bits_per_image == on_disk["bits_per_image"] == 8 * 8 * 5 + 4 * 4 * 4
    # a finished run is not overwritten silently
    with pytest.raises(hiervq.HierVQError, match="already exists"):
        train_run(cfg, run)


def test_best_epoch_is_chosen_in_the_last_phase_only(tmp_path):
    """A stacked model reconstructs best after its first stage (the later ones are untrained then): keep: best
    must choose among the last phase's epochs, or the run ships an unfinished model."""
    cfg = config_from_dict({
        "seed": 0,
        "data": {"name": "digits", "image_size": 16, "train_limit": 96, "test_limit": 32},
        "model": {"name": "svqvae", "stages": 2, "stage": {"channels": 8, "blocks": 1, "res_channels": 4,
                  "levels": [{"downsample": 2, "codebook_size": 8, "dim": 2}]}},
        "train": {"batch_size": 16, "lr": 3.0e-3, "progress": False,
                  "phases": [{"name": "stage1", "epochs": 2}, {"name": "stage2", "epochs": 2}]},
    }, "stacked")
    summary = train_run(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["stage1", "stage1", "stage2", "stage2"]
    assert summary["selected_on"] == "val" and summary["selected_epoch"] in (3, 4)
    last = [r for r in records if r["phase"] == "stage2"]
    assert summary["val"]["mse"] == min(r["val"]["mse"] for r in last)


def test_time_limit_ends_the_run_and_a_resume_trains_no_further(tmp_path, tiny_run_config):
    tiny_run_config["train"]["epochs"] = 4
    tiny_run_config["train"]["eval_every"] = 3  # the stopping epoch is evaluated all the same
    tiny_run_config["train"]["time_limit"] = 1e-6  # reached during the first epoch
    cfg = config_from_dict(tiny_run_config, "tiny")
    summary = train_run(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1] and records[0]["stopped"] == "time_limit" and "val" in records[0]
    assert summary["stopped"] == "time_limit" and summary["selected_epoch"] == 1
    step = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"]
    (tmp_path / "run" / "summary.json").unlink()  # as if interrupted after the last checkpoint
    train_run(cfg, tmp_path / "run", resume=True)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == step
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_plateau_rule():
    from hiervq.train.trainer import plateaued

    assert not plateaued([3.0, 2.0, 2.0], 0.02)  # fewer than 4 evaluations
    assert plateaued([4.0, 2.0, 1.5, 1.49], 0.02)  # the last quarter improved by 0.7 %
    assert not plateaued([4.0, 2.0, 1.5, 1.4], 0.02)  # by 6.7 %
    assert plateaued([4.0, 3.0, 2.0, 1.0, 1.1, 1.2, 1.3, 1.01], 0.02)  # worse over the last 2 of 8
    assert not plateaued([4.0, 3.0, 2.0, 1.5, 1.5, 1.5, 1.5, 1.0], 0.02)


def test_plateau_ends_the_phase(tmp_path, tiny_run_config, monkeypatch):
    """Scripted val MSEs: 1.0, 0.5, 0.4, 0.399 plateau at the 4th epoch of 6 (0.25 % < 2 %)."""
    from hiervq.train import trainer as trainer_module

    scripted = [1.0, 0.5, 0.4, 0.399, 0.3, 0.2]
    monkeypatch.setattr(trainer_module.AutoencoderTask, "monitored",
                        lambda self, record: scripted[record["epoch"] - 1] if "val" in record else None)
    tiny_run_config["train"]["epochs"] = 6
    tiny_run_config["train"]["plateau"] = 0.02
    summary = train_run(config_from_dict(tiny_run_config, "tiny"), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("stopped") for r in records] == [None, None, None, "plateau"]
    assert summary["stopped"] == "plateau"


@pytest.mark.parametrize("key, value", [("time_limit", 0), ("time_limit", -5), ("plateau", 0), ("plateau", 1.5)])
def test_time_limit_and_plateau_are_checked(tiny_run_config, key, value):
    tiny_run_config["train"][key] = value
    with pytest.raises(hiervq.HierVQError, match=key):
        config_from_dict(tiny_run_config, "tiny")


def test_resume_is_exact(tmp_path, tiny_run_config):
    tiny_run_config["train"]["epochs"] = 3
    # gumbel sampling and dead-code re-seeding draw random numbers: the RNG state must be restored too
    tiny_run_config["model"]["quantizer"]["estimator"] = "gumbel"
    cfg = config_from_dict(tiny_run_config, "tiny")
    train_run(cfg, tmp_path / "full")
    with pytest.raises(Interrupt):
        train_run(cfg, tmp_path / "cut", callbacks=[stop_after(1)])
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["phase_epoch"] == 1
    train_run(cfg, tmp_path / "cut", resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert full["step"] == cut["step"]
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    strip = lambda hist: [{k: v for k, v in r.items() if k != "train_s"} for r in hist]  # noqa: E731
    assert strip(full["history"]) == strip(cut["history"])
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_lr_schedules():
    assert lr_factor(0, 100, "cosine", 0, 0.0, 1) == pytest.approx(1.0)
    assert lr_factor(50, 100, "cosine", 0, 0.0, 1) == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine", 0, 0.1, 1) == pytest.approx(0.1)
    assert lr_factor(4, 100, "constant", 10, 0.0, 1) == pytest.approx(0.5)
    assert lr_factor(25000, 100, "exponential", 0, 0.0, 25000) == pytest.approx(1 / 2.718281828, rel=1e-6)


def test_unknown_phase_is_rejected(tmp_path, tiny_run_config):
    tiny_run_config["train"]["phases"] = [{"name": "stage9", "epochs": 1}]
    cfg = config_from_dict(tiny_run_config, "tiny")
    with pytest.raises(ValueError, match="train.phases: 'stage9' is not a phase of hvqvae"):
        train_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_exponential_schedule_decays_every_step_with_its_time_constant(tmp_path, tiny_run_config):
    """The PQ-VAE schedule, lr * exp(-step / 25000), is the ``exponential`` schedule with ``decay_steps``."""
    tiny_run_config["train"].update(epochs=2, schedule="exponential", decay_steps=25000, warmup_steps=0, lr=1e-3)
    cfg = config_from_dict(tiny_run_config, "tiny")
    train_run(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and 0 < records[0]["step"] < records[1]["step"]
    for record in records:  # the lr the next step would use: decayed once per step taken
        assert record["lr"] == pytest.approx(1e-3 * math.exp(-record["step"] / 25000), rel=1e-9)
    tiny_run_config["train"]["decay_steps"] = 0
    with pytest.raises(hiervq.HierVQError, match="decay_steps"):
        config_from_dict(tiny_run_config, "tiny")
