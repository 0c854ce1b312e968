"""Metrics: reconstruction error and codebook health on hand-checkable inputs."""

import math

import pytest
import torch

from hiervq.metrics import EvalAccumulator, codebook_health, gini, lorenz_curve, mse_per_image, perplexity, psnr


def test_psnr_and_mse():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.1)
    assert torch.allclose(mse_per_image(x, y), torch.full((2,), 0.01))
    assert float(psnr(0.01)) == pytest.approx(20.0)
    assert float(psnr(1e-3)) == pytest.approx(30.0)


def test_perplexity_bounds():
    assert float(perplexity(torch.ones(64))) == pytest.approx(64.0)
    assert float(perplexity(torch.tensor([5.0, 0, 0, 0]))) == pytest.approx(1.0)
    p = torch.tensor([1.0, 1.0, 2.0])
    probs = p / p.sum()
    assert float(perplexity(p)) == pytest.approx(math.exp(-(probs * probs.log()).sum().item()))


def test_lorenz_and_gini():
    x, y = lorenz_curve(torch.ones(10))
    assert torch.allclose(x, y)
    assert gini(torch.ones(10)) == pytest.approx(0.0, abs=1e-9)
    # one code takes everything: Gini = 1 - 1/K
    assert gini(torch.tensor([0.0, 0, 0, 10])) == pytest.approx(0.75)
    x, y = lorenz_curve(torch.tensor([3.0, 1.0]))
    assert y.tolist() == pytest.approx([0.0, 0.25, 1.0])


def test_codebook_health_and_accumulator():
    h = codebook_health(torch.tensor([4.0, 4.0, 0.0, 0.0]))
    assert h.used_fraction == 0.5 and h.dead_codes == 2 and h.perplexity == pytest.approx(2.0)
    assert h.normalized_perplexity == pytest.approx(0.5)
    acc = EvalAccumulator([4])
    x = torch.zeros(2, 1, 2, 2)
    acc.add(x, x + 0.1, [torch.tensor([[0, 1], [1, 0]])])
    acc.add(x, x + 0.2, [torch.tensor([[2, 2], [2, 2]])])
    r = acc.result(with_counts=True)
    assert r["images"] == 4 and r["mse"] == pytest.approx((0.01 * 2 + 0.04 * 2) / 4)
    assert r["counts"][0].tolist() == [2, 2, 4, 0]
    assert r["levels"][0]["dead_codes"] == 1
