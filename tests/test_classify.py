"""Classification with scarce labels: label subsets, tile selection, the MLP head, the classify command end to end."""

import json

import numpy as np
import pytest
import torch

from hiervq.classify import ClassifierConfig, FeatureClassifier, MLPHead
from hiervq.cli import main
from hiervq.data import label_subset
from hiervq.data.tiles import cut_tiles, laplacian_variance, pixel_std, select_tiles, tile_image
from hiervq.metrics import confusion_matrix, per_class_accuracy
from hiervq.models import DualStackConfig, DualStackVQVAE, LevelConfig, StageConfig
from hiervq.train import fit_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- label subsets
def test_label_subsets_are_stratified_reproducible_and_nested():
    labels = np.repeat(np.arange(5), [974, 2494, 971, 1136, 2663])  # the PBC white-cell train counts
    np.random.default_rng(1).shuffle(labels)
    subsets = {f: label_subset(labels, f, seed=3) for f in (1.0, 0.5, 0.1, 0.01, 0.0001)}
    counts = np.bincount(labels)
    for f, idx in subsets.items():
        assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
        per_class = np.bincount(labels[idx], minlength=5)
        assert per_class.tolist() == [max(1, round(f * n)) for n in counts]  # stratified, >= 1 per class
    assert len(subsets[1.0]) == len(labels)
    assert np.array_equal(subsets[0.1], label_subset(labels, 0.1, seed=3))  # same subset for every model
    assert not np.array_equal(subsets[0.1], label_subset(labels, 0.1, seed=4))
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[0.5])  # nested
    with pytest.raises(ValueError, match="label fraction"):
        label_subset(labels, 0.0)


# ---------------------------------------------------------------------- tiles
def test_tile_filter_keeps_and_drops_the_right_tiles():
    rng = np.random.default_rng(0)
    size = 32
    flat = np.full((size, size, 3), 200, np.uint8)  # background: std 0
    tissue = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)  # contrast and detail
    ramp = np.repeat(np.linspace(0, 255, size)[None, :, None], size, 0).repeat(3, 2).round().astype(np.uint8)
    checker = (128 + 2 * (np.indices((size, size)).sum(0) % 2 * 2 - 1)).astype(np.uint8)  # +-2: sharp, no contrast
    tiles = np.stack([flat, tissue, ramp, np.repeat(checker[..., None], 3, 2)])
    std, lap = pixel_std(tiles), laplacian_variance(tiles)
    assert std[0] == 0 and std[1] > 60 and std[2] > 60 and std[3] == pytest.approx(2.0)
    assert lap[3] == pytest.approx(64 * 4.0)  # the Laplacian of a +-a checkerboard is -+8a everywhere
    assert lap[2] < 20 < lap[1]  # a smooth ramp (blur) has almost no Laplacian energy
    assert select_tiles(tiles).tolist() == [False, True, False, False]
    assert select_tiles(tiles, min_std=1.0, min_laplacian=20).tolist() == [False, True, False, True]
    assert select_tiles(tiles, min_std=10, min_laplacian=0).tolist() == [False, True, True, False]
    # cutting a slide: a 2x3 grid of tiles, the tissue one kept with its corner
    slide = np.concatenate([np.concatenate([flat, tissue, ramp], 1), np.concatenate([flat, flat, flat], 1)], 0)
    cut, corners = cut_tiles(slide, size)
    assert cut.shape == (6, size, size, 3) and corners.tolist()[:3] == [[0, 0], [0, 32], [0, 64]]
    kept, where = tile_image(slide, size)
    assert len(kept) == 1 and where.tolist() == [[0, 32]] and np.array_equal(kept[0], tissue)
    assert cut_tiles(slide, size, stride=16)[0].shape[0] == 3 * 5


# ---------------------------------------------------------------------- the head
def test_confusion_and_per_class_accuracy():
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 1, 2, 2, 2, 0])
    m = confusion_matrix(pred, target, 4)
    assert m.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(m)
    assert acc[:3].tolist() == [0.5, 1.0, 2 / 3] and torch.isnan(acc[3])


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    return (centres[y] + torch.randn(n, 4, generator=g)).view(n, 2, 2) * 10 + 50, y


def test_mlp_head_learns_and_selects_on_validation():
    torch.manual_seed(0)
    train, val, test = _blobs(60, 0), _blobs(60, 1), _blobs(90, 2)
    head = MLPHead(4, 3, [16])
    head.set_standardization(train[0])
    assert torch.allclose(head.mean, train[0].flatten(1).mean(0), atol=1e-4)
    cfg = ClassifierConfig(hidden=[16], epochs=3, min_steps=160, batch_size=8, lr=3e-3)
    res = fit_classifier(head, train, val, test, cfg, num_classes=3, seed=0)
    assert res.epochs == 20 and res.steps == 160  # min_steps raises the epochs of a small subset
    assert res.test_acc > 0.9 and res.val_acc > 0.9
    best = res.history[res.best_epoch - 1]
    assert best["val_acc"] == max(r["val_acc"] for r in res.history) and best["test_acc"] == res.test_acc
    assert res.final_test_acc == res.history[-1]["test_acc"]
    assert np.array(res.test_confusion).sum() == 90 and len(res.per_class) == 3


@pytest.mark.parametrize("finetune", [False, True])
def test_feature_classifier_freezes_or_finetunes_the_encoder(finetune):
    torch.manual_seed(0)
    stage = StageConfig(channels=8, blocks=1, res_channels=4, levels=[LevelConfig(2, 16, 2), LevelConfig(2, 16, 2)])
    encoder = DualStackVQVAE(DualStackConfig(image_size=16, stage=stage))
    encoder.set_phase("all")
    encoder.train()
    encoder(torch.rand(16, 3, 16, 16))  # initialise the codebooks
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = MLPHead(8 * 2 * 2, 2, [8])
    model = FeatureClassifier(encoder, head, finetune=finetune)
    images = (torch.rand(12, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.arange(12) % 2
    cfg = ClassifierConfig(hidden=[8], epochs=2, batch_size=4, lr=1e-2, finetune=finetune)
    fit_classifier(model, (images, labels), (images, labels), (images, labels), cfg, num_classes=2)
    after = encoder.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any("codebook" in k for k in changed)  # codebooks never move
    if finetune:
        assert any("encoders" in k for k in changed)
    else:
        assert not changed


# ---------------------------------------------------------------------- end to end
TINY = """
seed: 0
data: {{name: {name}, path: {path}, image_size: {size}, val_fraction: 0.25, classes: [0, 1, 2]}}
model:
  name: svqvae-dual
  stage:
    channels: 8
    blocks: 1
    res_channels: 4
    levels: [{{downsample: 2, codebook_size: 16, dim: 2}}, {{downsample: 2, codebook_size: 16, dim: 2}}]
train:
  batch_size: 16
  optimizer: adamw
  lr: 3.0e-3
  progress: false
  phases: [{{name: stack1.stage1, epochs: 1}}, {{name: stack1.stage2, epochs: 1}}, {{name: stack1.stage3, epochs: 1}},
           {{name: stack2.stage1, epochs: 1}}, {{name: stack2.stage2, epochs: 1}}]
classify:
  models: {{svqvae: stack1, dual_stack: ""}}
  head: {{hidden: [16], epochs: 2, min_steps: 4, batch_size: 16}}
"""


def _npz(path, size, n_train=60, n_test=24):
    """A MedMNIST-layout .npz of ``size`` x ``size`` RGB images with 4 classes of different brightness."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % 4
        x = rng.integers(0, 60, (n, size, size, 3)) + (y * 60)[:, None, None, None]
        return x.astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    np.savez(path, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte,
             class_names=np.array(["a", "b", "c", "d"]))
    return path


def test_classify_command_end_to_end(tmp_path, capsys):
    """The recipe shape runs on a larger (64x64) .npz, only data.path/image_size changed; results and report."""
    npz = _npz(tmp_path / "big_64.npz", 64)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(name="npz", path=npz, size=32))
    out = tmp_path / "out"
    assert main(["classify", str(cfg), "--fractions", "1,0.1", "--out", str(out), "--set", "data.image_size=64"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["fractions"] == [1.0, 0.1]
    assert list(result["models"]) == ["svqvae", "dual_stack", "pixels_mlp"]
    assert result["class_names"] == ["a", "b", "c"]
    assert result["data"]["subset_sizes"][1] == 3  # 1 per class at 10 % of 11-12 per class
    rows = result["models"]
    assert rows["svqvae"]["feature_shape"] == [4, 8, 8] and rows["dual_stack"]["feature_shape"] == [8, 8, 8]
    assert rows["pixels_mlp"]["feature_shape"] == [3, 64, 64] and rows["pixels_mlp"]["pretrain_s"] == 0.0
    assert rows["dual_stack"]["pretrain_s"] > rows["svqvae"]["pretrain_s"] > 0
    assert rows["dual_stack"]["encoder_params"] > rows["svqvae"]["encoder_params"] > 0
    for row in rows.values():
        assert len(row["test_acc"]) == 2 and all(0 <= a <= 1 for a in row["test_acc"] + row["final_test_acc"])
        # the reported point of every run is where its validation accuracy peaked, and that is what selected_on says
        for runs, histories in zip(row["runs"], row["history"]):
            for run, history in zip(runs, histories):
                chosen = [h for h in history if h["epoch"] == run["best_epoch"]]
                assert chosen and chosen[0]["val_acc"] == max(h["val_acc"] for h in history)
                assert run["test_acc"] == chosen[0]["test_acc"]
        assert row["selected_on"] == "val"
        assert np.array(row["confusion"][0]).shape == (3, 3) and np.array(row["confusion"][0]).sum() == 18
    assert result["selected_on"] == "val" and result["data"]["val"] > 0
    for name in ("report.md", "confusion_100.png", "confusion_10.png", "pretrain/model/config.json"):
        assert (out / name).is_file(), name
    assert "val-selected" in (out / "report.md").read_text() or "validation" in (out / "report.md").read_text()
    # results are not overwritten silently; --overwrite reuses the finished pretraining run
    assert main(["classify", str(cfg), "--out", str(out), "--set", "data.image_size=64"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["classify", str(cfg), "--fractions", "0.5", "--out", str(out), "--overwrite",
                 "--set", "data.image_size=64"]) == 0
    assert "reusing the pretrained model" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["fractions"] == [0.5]


# ---------------------------------------------------------------------- fine-tuning, from scratch, augmentation
def _tiny_dual(seed=0):
    torch.manual_seed(seed)
    stage = StageConfig(channels=8, blocks=1, res_channels=4, levels=[LevelConfig(2, 16, 2), LevelConfig(2, 16, 2)],
                        input_norm=True)
    model = DualStackVQVAE(DualStackConfig(image_size=16, stage=stage))
    model.set_phase("all")
    model.train()
    model(torch.rand(16, 3, 16, 16))  # initialise the codebooks and the stage statistics
    return model


def test_finetune_on_continuous_latents_trains_encoders_and_keeps_codebooks_and_statistics():
    encoder = _tiny_dual()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = MLPHead(8 * 2 * 2, 2, [8], batch_norm=True)
    model = FeatureClassifier(encoder, head, finetune=True, quantize=False)
    assert all(vq.bypass for vq in encoder.quantizers())
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    model.train()
    feats = encoder.features(x)
    assert not torch.equal(feats, _frozen_features(encoder, x))  # continuous, not the code vectors
    images = (torch.rand(12, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.arange(12) % 2
    cfg = ClassifierConfig(hidden=[8], epochs=2, batch_size=4, lr=1e-2, augment=True, quantize=False)
    fit_classifier(model, (images, labels), (images, labels), (images, labels), cfg, num_classes=2)
    after = encoder.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("encoders" in k for k in changed)
    assert not any("codebook" in k or "input_norm" in k for k in changed), changed  # frozen codebooks and stats


def _frozen_features(encoder, x):
    bypass = [vq.bypass for vq in encoder.quantizers()]
    for vq in encoder.quantizers():
        vq.bypass = False
    with torch.no_grad():
        was = encoder.training
        out = encoder.eval().features(x)
        encoder.train(was)
    for vq, b in zip(encoder.quantizers(), bypass):
        vq.bypass = b
    return out


def test_finetune_with_trained_codebooks_moves_them():
    encoder = _tiny_dual()
    book = encoder.stack1.stages[0].vq[0].codebook.weight.clone()
    model = FeatureClassifier(encoder, MLPHead(32, 2, [8]), finetune=True, train_codebooks=True)
    images = (torch.rand(12, 3, 16, 16) * 255).to(torch.uint8)
    cfg = ClassifierConfig(hidden=[8], epochs=1, batch_size=4, lr=1e-2)
    fit_classifier(model, (images, torch.arange(12) % 2), (images, torch.arange(12) % 2),
                   (images, torch.arange(12) % 2), cfg, num_classes=2)
    assert not torch.equal(book, encoder.stack1.stages[0].vq[0].codebook.weight)


def test_dihedral_augment_applies_one_of_eight_symmetries_per_image():
    from hiervq.classify.mlp import dihedral_augment

    x = torch.arange(64 * 2 * 5 * 5, dtype=torch.float32).view(64, 2, 5, 5)
    out = dihedral_augment(x, torch.Generator().manual_seed(0))
    images = []
    for img, aug in zip(x, out):
        candidates = [torch.rot90(img, k, (-2, -1)) for k in range(4)]
        candidates += [c.flip(-1) for c in candidates]
        matches = [i for i, c in enumerate(candidates) if torch.equal(c, aug)]
        assert len(matches) == 1
        images.append(matches[0])
    assert len(set(images)) == 8  # all eight elements drawn over 64 images
    again = dihedral_augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # reproducible from the generator
    with pytest.raises(ValueError, match="square"):
        dihedral_augment(torch.zeros(1, 1, 4, 5), torch.Generator())


ROWS = """
classify:
  models:
    dual_finetune: {{source: "", mode: finetune}}
    svqvae_frozen: {{source: stack1, mode: frozen}}
    scratch: {{source: "", mode: scratch}}
  pixels_baseline: false
  seeds: 2
  scarce_fraction: 0.5
  head: {{hidden: [16], epochs: 2, min_steps: 4, batch_size: 16, augment: true, quantize: false, evals: 1}}
"""


def test_classify_rows_seeds_and_scratch_never_sees_pretrained_weights(tmp_path, monkeypatch):
    npz = _npz(tmp_path / "d.npz", 16)
    cfg = tmp_path / "rows.yaml"
    cfg.write_text(TINY.format(name="npz", path=npz, size=16).split("classify:")[0] + ROWS.format())
    import hiervq.experiments.label_fractions as label_fractions

    seen = []

    real = label_fractions.FeatureClassifier

    def spy(encoder, head, **kwargs):
        seen.append({k: v.clone() for k, v in encoder.state_dict().items()})
        return real(encoder, head, **kwargs)

    monkeypatch.setattr(label_fractions, "FeatureClassifier", spy)
    out = tmp_path / "out"
    assert main(["classify", str(cfg), "--fractions", "1,0.5", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    rows = result["models"]
    assert list(rows) == ["dual_finetune", "svqvae_frozen", "scratch"]
    for row in rows.values():
        assert row["seeds"] == [1, 2] and len(row["test_acc_std"]) == 2 and row["test_acc_std"][0] == 0.0
        assert len(row["best_on_test"]) == 2 and all(b >= 0 for b in row["best_on_test"])
        assert all(best >= sel - 1e-12 for best, sel in zip(row["best_on_test"], row["test_acc"]))
    assert rows["dual_finetune"]["finetune"] is True and rows["scratch"]["finetune"] is False
    assert rows["scratch"]["mode"] == "scratch" and rows["scratch"]["pretrain_s"] == 0.0
    from hiervq import load

    pretrained = load(out / "pretrain").state_dict()
    assert len(seen) == 6  # (1 + 2 seeds) x the two rows that train an encoder
    finetune_starts, scratch_starts = seen[:3], seen[3:]
    for start in finetune_starts:
        assert all(torch.equal(start[k], pretrained[k]) for k in pretrained)
    for start in scratch_starts:  # no weight of the scratch network equals its pretrained counterpart
        weights = [k for k in pretrained if k.endswith("weight") and "codebook" not in k and pretrained[k].numel() > 1]
        assert weights and not any(torch.equal(start[k], pretrained[k]) for k in weights)
    assert "best epoch on the test split" in (out / "report.md").read_text()


ROW_OPTIONS = """
classify:
  models:
    dual_finetune: {{source: "", mode: finetune}}
    longer: {{source: "", mode: finetune, fractions: [1.0], seeds: 1, head: {{epochs: 3, evals: 3}}}}
    cnn: {{mode: cnn, widths: [4, 4, 8], fractions: [1.0, 0.25], head: {{epochs: 1, min_steps: 5, lr: 1.0e-3}}}}
  pixels_baseline: false
  seeds: 2
  seeds_full: 2
  scarce_fraction: 0.25
  head: {{hidden: [16], epochs: 1, min_steps: 2, batch_size: 16, quantize: false, evals: 1}}
"""


def test_classify_row_options_head_fractions_seeds_and_the_reference_cnn(tmp_path):
    """A row's own head settings, fractions and seeds; a cnn row trains a plain CNN on the pixels; seeds_full
    repeats the 100 % runs; the rows it skips are null at those fractions."""
    from hiervq.classify import ConvClassifier

    npz = _npz(tmp_path / "d.npz", 16)
    cfg = tmp_path / "rows.yaml"
    cfg.write_text(TINY.format(name="npz", path=npz, size=16).split("classify:")[0] + ROW_OPTIONS.format())
    out = tmp_path / "out"
    assert main(["classify", str(cfg), "--fractions", "1,0.5,0.25", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["models"]
    assert rows["dual_finetune"]["seeds"] == [2, 1, 2]
    longer = rows["longer"]
    assert longer["seeds"] == [1, None, None] and longer["test_acc"][1:] == [None, None]
    assert longer["epochs"][0] == 3 and rows["dual_finetune"]["epochs"][0] == 1  # the row's own head.epochs
    cnn = rows["cnn"]
    assert cnn["mode"] == "cnn" and cnn["source"] == "pixels" and cnn["seeds"] == [2, None, 2]
    assert cnn["params"] == sum(p.numel() for p in ConvClassifier(3, 3, [4, 4, 8]).parameters())
    assert cnn["epochs"][0] == 2 and len(cnn["seed_test_acc"][0]) == 2
    report = (out / "report.md").read_text()
    assert "| longer | " in report and " - |" in report  # skipped fractions print as "-"

    # a table of rows that all skip a fraction (the CNN alone, run apart from the table) still reports
    only_cnn = ROW_OPTIONS.format().replace("    dual_finetune: {source: \"\", mode: finetune}\n", "").replace(
        "    longer: {source: \"\", mode: finetune, fractions: [1.0], seeds: 1, head: {epochs: 3, evals: 3}}\n", "")
    cfg.write_text(TINY.format(name="npz", path=npz, size=16).split("classify:")[0] + only_cnn)
    assert main(["classify", str(cfg), "--fractions", "1,0.5", "--out", str(tmp_path / "cnn")]) == 0
    assert "No row runs at this fraction" in (tmp_path / "cnn" / "report.md").read_text()


def test_classify_row_head_overrides_are_checked(tmp_path):
    npz = _npz(tmp_path / "d.npz", 16)
    cfg = tmp_path / "rows.yaml"
    bad = ROW_OPTIONS.format().replace("head: {epochs: 3, evals: 3}", "head: {epoch: 3}")
    cfg.write_text(TINY.format(name="npz", path=npz, size=16).split("classify:")[0] + bad)
    assert main(["classify", str(cfg), "--fractions", "1", "--out", str(tmp_path / "out")]) == 2


def test_cosine_schedule_decays_every_group_to_zero(monkeypatch):
    """``schedule: cosine`` anneals the head's and the encoder's learning rates to 0 over the run's steps."""
    seen = []
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    encoder = _tiny_dual()
    model = FeatureClassifier(encoder, MLPHead(32, 2, [8]), finetune=True, quantize=False)
    images = (torch.rand(16, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.arange(16) % 2
    cfg = ClassifierConfig(hidden=[8], epochs=4, batch_size=4, lr=1e-2, encoder_lr=1e-3, schedule="cosine")
    fit_classifier(model, (images, labels), (images, labels), (images, labels), cfg, num_classes=2)
    assert len(seen) == 16 and seen[0] == [1e-2, 1e-3]
    assert seen[-1][0] < 0.02 * seen[0][0] and seen[-1][1] < 0.02 * seen[0][1]  # near 0 at the last step
    assert all(a[0] >= b[0] for a, b in zip(seen, seen[1:]))  # monotone
    with pytest.raises(ValueError, match="schedule"):
        ClassifierConfig(schedule="step").validate()


def test_cosine_schedule_through_the_engine_matches_adamw_with_torch_cosine_annealing():
    """The engine's ``cosine_annealing`` is torch's CosineAnnealingLR over epochs * ceil(n / batch_size) steps,
    stepped after every optimiser step: the weights equal those of the plain AdamW loop bit for bit."""
    import math

    import torch.nn.functional as F

    from hiervq.classify.mlp import as_inputs

    images = (torch.rand(18, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    labels = torch.arange(18) % 2
    cfg = ClassifierConfig(hidden=[8], epochs=3, batch_size=4, lr=1e-2, encoder_lr=1e-3, schedule="cosine")
    assert cfg.grad_clip is None  # (the reference loop does not clip)

    def classifier():
        return FeatureClassifier(_tiny_dual(), MLPHead(32, 2, [8]), finetune=True, quantize=False)

    ours = classifier()
    fit_classifier(ours, (images, labels), (images, labels), (images, labels), cfg, num_classes=2, seed=5)

    ref = classifier()
    encoder = {id(p) for p in ref.encoder.parameters() if p.requires_grad}
    params = [p for p in ref.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in encoder]},
              {"params": [p for p in params if id(p) in encoder], "lr": cfg.encoder_lr}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * math.ceil(18 / 4))
    gen = torch.Generator().manual_seed(5)
    for _ in range(cfg.epochs):
        ref.train()
        for idx in torch.randperm(18, generator=gen).split(cfg.batch_size):
            loss = F.cross_entropy(ref(as_inputs(images[idx])), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name


def _run(best_epoch, history):
    from types import SimpleNamespace

    return SimpleNamespace(best_epoch=best_epoch, history=[{"epoch": e, "val_acc": v, "test_acc": t}
                                                           for e, v, t in history])


def test_selected_on_reads_the_split_from_what_ran():
    """selected_on is "val" only when a val split existed and every run's reported epoch is a validation peak."""
    from hiervq.experiments.label_fractions import selected_on

    on_val = _run(2, [(1, 0.5, 0.9), (2, 0.7, 0.6), (3, 0.6, 0.8)])
    tie = _run(3, [(1, 0.5, 0.9), (2, 0.7, 0.6), (3, 0.7, 0.8)])  # another epoch at the same val peak
    on_test = _run(1, [(1, 0.5, 0.9), (2, 0.7, 0.6), (3, 0.6, 0.8)])  # the test peak, not the val peak
    assert selected_on([[on_val], [tie]], val_images=10) == "val"
    assert selected_on([[on_val], [on_test]], val_images=10) is None
    assert selected_on([[on_val]], val_images=0) is None
    assert selected_on([[]], val_images=10) is None


def test_committed_label_fraction_results_have_the_issue_format():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "label_fractions_pbc.json"
    data = json.loads(path.read_text())
    assert data["fractions"] == [1.0, 0.5, 0.1, 0.01]
    names = {"svqvae_finetune", "dual_finetune", "svqvae_frozen", "dual_frozen", "scratch", "pixels_mlp", "reference_cnn",
             "dual_finetune_40ep"}  # issue 29: the 40-epoch fine-tuning and the reference CNN are rows of the table
    assert names <= set(data["models"]) and data["complete"] and "merged_rows" not in data  # one whole run
    for name, row in data["models"].items():
        ran = [s is not None for s in row["seeds"]]  # a row may skip fractions (null there)
        for key in ("test_acc", "test_acc_std", "best_on_test"):
            values = row[key]
            assert len(values) == 4 and [v is not None for v in values] == ran, (name, key)
            assert all(isinstance(v, float) and 0 <= v <= 1 for v in values if v is not None), (name, key)
        assert isinstance(row["finetune"], bool) and row["selected_on"] == "val", name
        # each row at the fractions its recipe row names, with the recipe's seeds (seeds_full at 100 %, one seed at
        # 50 %, seeds below), every seed's accuracy kept
        fractions = data["rows"][name]["fractions"] if name in data["rows"] else data["fractions"]
        fractions = fractions or data["fractions"]
        settings = data["settings"]
        expected = [None if f not in fractions else settings["seeds_full"] if f == 1.0 else
                    settings["seeds"] if f <= settings["scarce_fraction"] else 1 for f in data["fractions"]]
        assert row["seeds"] == expected, name
        assert all(len(accs) == n for accs, n in zip(row["seed_test_acc"], row["seeds"]) if n is not None), name
    assert data["models"]["reference_cnn"]["mode"] == "cnn" and data["models"]["dual_finetune_40ep"]["finetune"]
    assert data["data"]["val"] > 0 and data["script"] == "benchmarks/label_fractions_pbc.py"
    assert data["models"]["dual_finetune"]["finetune"] and not data["models"]["dual_frozen"]["finetune"]
