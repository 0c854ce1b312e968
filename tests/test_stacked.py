"""Stacked VQ-VAEs: stage shapes, phases that really freeze, resume mid-phase, round trips, raw-input stages."""

import copy

import pytest
import torch

import hiervq
from hiervq.data import DataSplits, ImageSet
from hiervq.errors import ConfigError
from hiervq.models import (
    DualStackConfig,
    DualStackVQVAE,
    HierarchicalConfig,
    HierarchicalVQVAE,
    LevelConfig,
    StackedConfig,
    StackedVQVAE,
    StageConfig,
)
from hiervq.pretrained import build
from hiervq.train import PhaseConfig, TrainConfig, Trainer, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def small_stage(down=2, k=2, K=16, channels=8):
    return StageConfig(channels=channels, blocks=1, res_channels=4,
                       levels=[LevelConfig(down, K, k), LevelConfig(2, K, k)])


@pytest.mark.parametrize(
    "size, down, grids",
    [(64, 2, [32, 16, 8]), (512, 4, [128, 32, 8])],  # 64x64 with /2 stages; the published 512x512 with /4 stages
)
def test_stage_shapes(size, down, grids):
    torch.manual_seed(0)
    model = DualStackVQVAE(DualStackConfig(image_size=size, stage=small_stage(down))).eval()
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        latents = model.stack1.latents(x)
        assert [tuple(z.shape) for z in latents] == [(1, 4, g, g) for g in grids]  # 2k channels, k = 2
        second = model.stack2.latents(model.second_input(latents[0], latents[-1]))
        assert [tuple(z.shape) for z in second] == [(1, 4, g, g) for g in grids[1:]]
        assert tuple(model.stack1.features(x).shape) == (1, 4, 8, 8)
        assert tuple(model.features(x).shape) == (1, 8, 8, 8)  # 4k x 8 x 8
    assert model.latent_shape == (8, 8, 8)
    assert model.stack2.config.in_channels == 8 and model.stack2.config.image_size == [grids[0], grids[0]]


def test_published_defaults_describe_512():
    """The default stage is the published one: K = 512, k = 2, 128 channels, levels at 1/4 and 1/8."""
    model = StackedVQVAE(StackedConfig(image_size=512))
    assert [lv.grid for lv in model.levels] == [(128, 128), (64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    assert all(lv.codebook_size == 512 and lv.code_dim == 2 for lv in model.levels)
    assert model.latent_shape == (4, 8, 8)
    assert model.stages[0].config.channels == 128 and model.stages[1].config.raw_input
    assert not model.stages[0].config.raw_input
    assert model.budget().discrete == 6 * 512 * 2


def test_invalid_stacks_name_the_problem():
    with pytest.raises(ConfigError, match="stage 3 gets a 4x4 input"):
        build("svqvae", {"image_size": 64, "stages": 3, "stage": {"channels": 8}})
    with pytest.raises(ConfigError, match="stack2 must be stack1 - 1"):
        build("svqvae-dual", {"image_size": 64, "stack1": 3, "stack2": 1,
                              "stage": {"levels": [{"downsample": 2, "dim": 2}, {"downsample": 2, "dim": 2}]}})
    with pytest.raises(ConfigError, match="unknown key"):
        build("svqvae", {"stage": {"chanels": 8}})


def test_raw_input_stage_skips_the_image_mapping():
    torch.manual_seed(0)
    cfg = HierarchicalConfig(image_size=8, in_channels=4, channels=8, blocks=1, res_channels=4,
                             levels=[LevelConfig(2, 16, 2), LevelConfig(2, 16, 2)])
    image_model = HierarchicalVQVAE(cfg).eval()
    raw_model = HierarchicalVQVAE(HierarchicalConfig(**{**vars(cfg), "raw_input": True})).eval()
    raw_model.load_state_dict(image_model.state_dict())
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(image_model.features(x), raw_model.features(x * 2 - 1))
        latent = raw_model.features(x)
        assert torch.allclose(raw_model.decode_latent(latent) * 0.5 + 0.5, image_model.decode_latent(latent))
        out = raw_model(x * 5)  # a latent on any scale: reconstructed on that scale, MSE against it
    assert torch.allclose(out.losses["recon"], torch.mean((out.recon - x * 5) ** 2))
    assert [lv.grid for lv in raw_model.levels] == [lv.grid for lv in image_model.levels]
    assert raw_model.budget() == image_model.budget()


@pytest.mark.parametrize("name", ["svqvae", "svqvae-dual"])
def test_encode_decode_round_trip_and_save_load(tmp_path, name):
    torch.manual_seed(0)
    params = {"image_size": 32, "stage": vars(small_stage())}
    model = build(name, copy.deepcopy(params))
    model.set_phase(model.phases()[0])
    model.train()
    model(torch.rand(8, 3, 32, 32))  # initialise the first codebooks from data
    model.set_phase("all")
    model.eval()
    x = torch.rand(3, 3, 32, 32)
    codes = model.encode(x)
    assert len(codes) == len(model.levels)
    assert [tuple(c.shape[1:]) for c in codes] == [lv.grid for lv in model.levels]
    with torch.no_grad():
        assert torch.equal(model.decode(codes), model(x).recon)
    model.save_pretrained(tmp_path / "m")
    again = hiervq.load(tmp_path / "m")
    assert type(again) is type(model)
    with torch.no_grad():
        assert torch.equal(again.features(x), model.features(x))


def _images(n=32, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet((torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_phases_really_freeze():
    """After stage 1's phase, training stage 2 leaves stage 1's weights and EMA codebooks bit for bit alone."""
    torch.manual_seed(0)
    model = DualStackVQVAE(DualStackConfig(image_size=16, stage=small_stage()))
    snaps = {}

    def snapshot(trainer, record):
        snaps[record["phase"]] = (_snapshot(model.stack1.stages[0]), _snapshot(model.stack1.stages[1]),
                                  _snapshot(model.stack2))

    untouched = _snapshot(model.stack2)
    config = TrainConfig(phases=[PhaseConfig("stack1.stage1", 1), PhaseConfig("stack1.stage2", 2)],
                         batch_size=8, lr=1e-2, optimizer="adamw", weight_decay=0.05, progress=False)
    data = DataSplits(train=_images(32), test=_images(8, seed=1))
    Trainer(config, callbacks=[snapshot]).fit(model, data)
    stage1_after_phase1, stage2_after_phase1, _ = snaps["stack1.stage1"]
    stage1_now, stage2_now = _snapshot(model.stack1.stages[0]), _snapshot(model.stack1.stages[1])
    ema = [k for k in stage1_now if "codebook" in k]
    assert ema, "the stage should hold EMA codebook buffers"
    for key, value in stage1_after_phase1.items():
        assert torch.equal(value, stage1_now[key]), key
    changed = [k for k in stage2_now if not torch.equal(stage2_now[k], stage2_after_phase1[k])]
    assert any("codebook" in k for k in changed) and any("encoders" in k for k in changed)
    for key, value in _snapshot(model.stack2).items():  # never trained
        assert torch.equal(value, untouched[key]), key
    # a later-stage phase trains only that stage's parameters
    model.set_phase("stack2.stage1")
    assert model.trainable_modules() == [model.stack2.stages[0]]


def test_resume_in_the_middle_of_a_phase_is_exact(tmp_path):
    def fresh():
        torch.manual_seed(0)
        return StackedVQVAE(StackedConfig(image_size=16, stages=2, stage=small_stage()))

    config = TrainConfig(phases=[PhaseConfig("stage1", 1), PhaseConfig("stage2", 3, lr=1e-3)], batch_size=16,
                         optimizer="adamw", lr=3e-3, progress=False)
    data = DataSplits(train=_images(48), test=_images(16, seed=1))
    for name in ("full", "cut"):
        (tmp_path / name).mkdir()
    full = fresh()
    Trainer(config, tmp_path / "full", seed=0).fit(full, data)

    class Stop(KeyboardInterrupt):
        pass

    def stop(trainer, record):
        if record["epoch"] == 2:  # stage2, phase epoch 1 of 3
            raise Stop

    with pytest.raises(Stop):
        Trainer(config, tmp_path / "cut", seed=0, callbacks=[stop]).fit(fresh(), data)
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["phase_index"], state["phase_epoch"]) == (1, 1)
    torch.manual_seed(123)  # the checkpoint restores the RNG state
    resumed = StackedVQVAE(StackedConfig(image_size=16, stages=2, stage=small_stage()))
    history = Trainer(config, tmp_path / "cut", seed=0).fit(resumed, data, resume=state)
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert [r["phase"] for r in history] == ["stage1", "stage2", "stage2", "stage2"]


def test_stack1_of_the_dual_model_is_the_svqvae():
    """Trained with the same seed and phases, the dual model's stack 1 equals an SVQVAE trained alone, bit for bit:
    the SVQVAE row of a comparison can use stack 1 of the dual model (paired, and pretrained only once)."""
    data = DataSplits(train=_images(32), test=_images(8, seed=1))
    names = ["stage1", "stage2"]
    trained = []
    for prefix, build_model in (("", lambda: StackedVQVAE(StackedConfig(image_size=16, stages=2, stage=small_stage()))),
                                ("stack1.", lambda: DualStackVQVAE(DualStackConfig(image_size=16, stack1=2, stack2=1,
                                                                                   stage=small_stage())))):
        torch.manual_seed(0)
        model = build_model()
        config = TrainConfig(phases=[PhaseConfig(prefix + n, 1) for n in names], batch_size=8, lr=1e-2, progress=False)
        Trainer(config, seed=0).fit(model, data)
        trained.append(model)
    alone, dual = trained
    for key, value in alone.state_dict().items():
        assert torch.equal(value, dual.stack1.state_dict()[key]), key


def test_stage_input_standardisation_uses_training_inputs_only_and_is_saved(tmp_path):
    """Stages 2.. standardise their input latent with statistics of the training batches of their own phase:
    exact running mean/var, untouched by evaluation or by frozen use, saved and loaded with the model."""
    from hiervq import load
    from hiervq.nn import Standardize

    torch.manual_seed(0)
    stage = StageConfig(channels=8, blocks=1, res_channels=4, levels=[LevelConfig(2, 16, 2), LevelConfig(2, 16, 2)],
                        input_norm=True)
    model = StackedVQVAE(StackedConfig(image_size=16, stages=2, stage=stage))
    assert model.stages[0].input_norm is None and isinstance(model.stages[1].input_norm, Standardize)
    model.set_phase("stage1")
    model.train()
    model(torch.rand(8, 3, 16, 16))
    norm = model.stages[1].input_norm
    assert norm.count == 0  # stage 2 does not run while stage 1 trains
    model.set_phase("stage2")
    a, b = torch.rand(8, 3, 16, 16), torch.rand(6, 3, 16, 16)
    model.eval()
    for stage_ in model.stages[1:]:
        stage_.train()
    model(a)
    model(b)
    latents = torch.cat([model.encode_latents(a)[1][0], model.encode_latents(b)[1][0]])
    flat = latents.double().transpose(0, 1).reshape(latents.shape[1], -1)
    assert torch.allclose(norm.mean, flat.mean(1), atol=1e-9)
    assert torch.allclose(norm.var, flat.var(1, unbiased=False), atol=1e-9)
    snapshot = (norm.count.clone(), norm.mean.clone(), norm.var.clone())
    model.eval()
    model(torch.rand(5, 3, 16, 16) * 3)  # evaluation (e.g. on test images) does not move the statistics
    model.features(torch.rand(5, 3, 16, 16))
    assert torch.equal(norm.count, snapshot[0]) and torch.equal(norm.mean, snapshot[1])
    # the stage reconstructs the standardised latent; decode returns the latent's own scale
    h = model.encode_latents(a)[1][0]
    out = model.stages[1](h)
    assert torch.allclose(norm.inverse(norm(h)), h, atol=1e-5)
    assert out.recon.shape == h.shape
    model.save_pretrained(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert torch.equal(loaded.stages[1].input_norm.mean, norm.mean) and torch.equal(loaded.stages[1].input_norm.var, norm.var)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.decode(loaded.encode(x)), model.decode(model.encode(x)))
