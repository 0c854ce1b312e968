"""The transformer prior over PQ-VAE code sequences, and the PQ-VAE commands end to end on a tiny run."""

import json

import pytest
import torch

import hiervq
from hiervq.cli import main
from hiervq.priors import TransformerPrior, TransformerPriorConfig, prior_kind_for
from hiervq.train import train_run
from hiervq.train.config import config_from_dict


def test_prior_is_causal_and_position_specific():
    torch.manual_seed(0)
    prior = TransformerPrior(TransformerPriorConfig(codebook_size=16, length=10, dim=32, layers=2, heads=4, dropout=0.0))
    prior.eval()
    codes = torch.randint(0, 16, (3, 10))
    base = prior.logits(codes)
    for j in (0, 4, 9):
        changed = codes.clone()
        changed[:, j] = (changed[:, j] + 1) % 16
        out = prior.logits(changed)
        # logits at l predict z_l from z_<l: positions <= j cannot see z_j
        torch.testing.assert_close(out[:, : j + 1], base[:, : j + 1])
        if j < 9:
            assert (out[:, j + 1 :] - base[:, j + 1 :]).abs().max() > 1e-6
    # the same hidden state at two positions gives different logits (position-specific output transform)
    assert prior.out_weight.shape == (10, 32, 16)
    nll = prior.nll(codes)
    torch.testing.assert_close(nll, prior.nll_per_position(codes).sum(1))


def test_sampling_keeps_the_prefix_and_checks_labels():
    torch.manual_seed(1)
    prior = TransformerPrior(codebook_size=8, length=6, dim=16, layers=1, heads=2, num_classes=3)
    prefix = torch.tensor([[1, 2], [3, 4]])
    g = torch.Generator().manual_seed(0)
    out = prior.sample(2, torch.tensor([0, 2]), generator=g, prefix=prefix)
    assert out.shape == (2, 6) and torch.equal(out[:, :2], prefix)
    assert int(out.min()) >= 0 and int(out.max()) < 8
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        prior.sample(2)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        prior.sample(2, torch.tensor([0, 3]))
    with pytest.raises(ValueError):
        TransformerPriorConfig(dim=30, heads=4).validate()


TINY_PQ = {
    "seed": 0,
    "data": {"name": "digits", "image_size": 16, "train_limit": 64, "test_limit": 32},
    "model": {
        "name": "pqvae", "channels": 16, "blocks": 1, "res_channels": 8, "downsample": 2, "latent_channels": 8,
        "map_size": 8, "steps": 8, "codebook_size": 16, "spatial_dim": 8, "channel_dim": 2,
    },
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.002, "progress": False, "eval_batch_size": 64},
    "priors": {"model": {"dim": 16, "layers": 1, "heads": 2}, "train": {"epochs": 1, "batch_size": 32, "progress": False}},
}


def test_pqvae_run_prior_sample_and_analyses(tmp_path, capsys):
    run = tmp_path / "pq"
    summary = train_run(config_from_dict(TINY_PQ, "tiny"), run)
    assert summary["model"] == "pqvae" and summary["bits_per_image"] == 8 * 4
    model = hiervq.load(run)
    assert type(prior_kind_for(model)).__name__ == "SequencePriorKind"

    assert main(["prior", str(run)]) == 0
    prior_summary = json.loads((run / "priors" / "level0" / "summary.json").read_text())
    assert prior_summary["codes_per_image"] == 8 and prior_summary["bits_per_image"] > 0
    assert main(["sample", str(run), "--prior", str(run / "priors" / "level0"), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()

    assert main(["bayes", str(run)]) == 0
    bayes = json.loads((run / "analysis" / "bayes.json").read_text())
    assert bayes["prefix_lengths"] == list(range(1, 9)) and len(bayes["conditional"]) == 8
    assert main(["info", str(run), "--limit", "8"]) == 0
    info = json.loads((run / "analysis" / "info.json").read_text())
    assert len(info["removal"]["removed_mse"]) == 8 and len(info["entropy"]["conditional_entropy_bits"]) == 8
    out = tmp_path / "prog.png"
    assert main(["progressive", str(run), "-n", "2", "--lengths", "1,4,8", "-o", str(out)]) == 0
    assert out.is_file()

    # encode/decode through the CLI: one level0 array, a prefix decodes
    import numpy as np
    from PIL import Image

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8)).save(img_dir / f"{i}.png")
    codes_path = tmp_path / "codes.npz"
    assert main(["encode", str(run), str(img_dir), "-o", str(codes_path)]) == 0
    arr = np.load(codes_path)
    assert arr["level0"].shape == (3, 8)
    np.savez(tmp_path / "prefix.npz", level0=arr["level0"][:, :3])
    assert main(["decode", str(run), str(tmp_path / "prefix.npz"), "-o", str(tmp_path / "dec")]) == 0
    assert len(list((tmp_path / "dec").glob("*.png"))) == 4  # 3 images + grid
