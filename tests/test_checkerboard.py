"""The two-pass checkerboard prior: which codes each position's logits see, two network passes per map at any
size, sampling, saving, and how ``model.arch`` picks it (the codec's round trips are in test_compress.py)."""

from types import SimpleNamespace

import pytest
import torch

import hiervq
from hiervq.errors import ConfigError, HierVQError
from hiervq.priors import CheckerboardConfig, CheckerboardPrior, PixelCNN, prior_kind_for
from hiervq.priors.checkerboard import PASSES, anchors
from hiervq.priors.hierarchical import prior_class

pytestmark = pytest.mark.usefixtures("one_thread")


def _prior(**kw):
    torch.manual_seed(0)
    return CheckerboardPrior(CheckerboardConfig(**{"codebook_size": 7, "channels": 8, "blocks": 1, **kw})).double()


def test_anchors_see_only_the_conditioning_and_the_rest_only_anchors():
    prior = _prior(cond_codebook_size=3, num_classes=2).eval()
    H, W = 6, 5
    codes = torch.randint(0, 7, (2, H, W))
    cond = torch.randint(0, 3, (2, 3, 5))
    labels = torch.tensor([0, 1])
    base = prior(codes, cond, labels)
    mask = anchors((H, W))
    for i in range(H):
        for j in range(W):
            for shift in (1, 3):
                other = codes.clone()
                other[:, i, j] = (other[:, i, j] + shift) % 7
                changed = (prior(other, cond, labels) - base).abs().amax(dim=(0, 1)) > 0
                assert not changed[mask].any(), "an anchor's logits depend on a code"
                if not mask[i, j]:
                    assert not changed.any(), "a non-anchor's code reaches another position"
                else:  # an anchor reaches the non-anchors next to it
                    assert all(changed[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                               if 0 <= a < H and 0 <= b < W)
    other_cond = cond.clone()
    other_cond[:, 0, 0] = (other_cond[:, 0, 0] + 1) % 3
    assert not torch.equal(prior(codes, other_cond, labels)[:, :, mask], base[:, :, mask])
    assert not torch.equal(prior(codes, cond, 1 - labels)[:, :, mask], base[:, :, mask])


@pytest.mark.parametrize("size", [(1, 1), (3, 4), (40, 24)])
def test_walk_takes_two_passes_at_any_size_and_agrees_with_forward(size):
    prior = _prior().eval()
    calls = []
    real = prior._pass
    prior._pass = lambda *a: calls.append(1) or real(*a)
    seen = []
    codes = prior.walk(3, size, None, None, lambda lg: seen.append(lg) or lg.argmax(-1))
    assert len(calls) == PASSES == 2 and codes.shape == (3, *size)
    n = size[0] * size[1]
    assert [s.shape for s in seen] == [(3, (n + 1) // 2, 7), (3, n // 2, 7)]
    order = prior.order(size)  # the logits walk gives, in coding order, are forward's (teacher forcing)
    full = prior(codes).flatten(2).transpose(1, 2)[:, order]
    assert torch.allclose(torch.cat(seen, 1), full, atol=1e-12)
    assert sorted(order.tolist()) == list(range(n))
    g = torch.Generator().manual_seed(0)
    assert prior.sample(2, size, generator=g).shape == (2, *size)


def test_save_load_and_config(tmp_path):
    prior = _prior(cond_codebook_size=4)
    prior.float().save_pretrained(tmp_path / "p")
    back = hiervq.load(tmp_path / "p")
    assert isinstance(back, CheckerboardPrior) and back.config == prior.config
    with pytest.raises(ValueError, match="one code per position"):
        CheckerboardConfig(codebook_size=8, depth=2).validate()
    with pytest.raises(ValueError, match="codebook_size"):
        CheckerboardConfig(codebook_size=1).validate()


def test_model_arch_picks_the_prior():
    model = hiervq.HierarchicalVQVAE(hiervq.models.HierarchicalConfig(in_channels=1, image_size=16, channels=8))
    kind = prior_kind_for(model)
    # PixelCNN-only keys of a run's priors section are ignored, so --set model.arch=checkerboard just works
    p = kind.build_prior(model, 0, {"arch": "checkerboard", "channels": 4, "layers": 3, "blocks": 1}, 10, "w")
    assert isinstance(p, CheckerboardPrior) and p.config.cond_codebook_size == model.levels[1].codebook_size
    assert p.config.num_classes == 10 and p.config.channels == 4
    assert isinstance(kind.build_prior(model, 1, {"arch": "pixelcnn"}, None, "w"), PixelCNN)
    with pytest.raises(HierVQError, match="^w: arch must be one of pixelcnn, checkerboard, got 'pixel'"):
        kind.build_prior(model, 0, {"arch": "pixel"}, None, "w")
    with pytest.raises(ConfigError, match="blokcs"):
        kind.build_prior(model, 0, {"arch": "checkerboard", "blokcs": 1}, None, "w")
    with pytest.raises(HierVQError, match="residual"):
        prior_class(SimpleNamespace(scales=None, depth=2), "checkerboard", "w")
    with pytest.raises(HierVQError, match="multi-scale"):
        prior_class(SimpleNamespace(scales=[[1, 1]], depth=1), "checkerboard", "w")
