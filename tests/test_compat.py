"""hiervq.compat: vector-quantize-pytorch's names and return tuples over our quantizers (issue 26, item 6)."""

import pytest
import torch

from hiervq import compat

D = 16


def seq(b=2, n=24, d=D):
    return torch.randn(b, n, d)


# ------------------------------------------------------------------ our wrappers alone (no vector-quantize-pytorch)
def test_vector_quantize_tuple_shapes_and_renames():
    vq = compat.VectorQuantize(dim=D, codebook_size=32, codebook_dim=8, decay=0.9, commitment_weight=0.5,
                               kmeans_init=True, kmeans_iters=3, threshold_ema_dead_code=2, rotation_trick=False)
    layer = vq.layer
    assert (layer.codebook.ema_decay, layer.beta, layer.codebook.init, layer.codebook.kmeans_iters) == (0.9, 0.5, "kmeans", 3)
    assert (layer.code_dim, layer.estimator, layer.codebook.dead_threshold) == (8, "ste", 20.0)
    x = seq().requires_grad_()
    q, idx, loss = vq(x)
    assert q.shape == x.shape and idx.shape == (2, 24) and loss.ndim == 0 and loss.requires_grad
    assert 0 <= int(idx.min()) and int(idx.max()) < 32
    loss.backward()
    vq.eval()
    with torch.no_grad():
        q, idx, loss = vq(x)
    assert float(loss) == 0.0 and torch.equal(vq.get_output_from_indices(idx), q)
    assert compat.VectorQuantize(dim=D, codebook_size=8).layer.estimator == "rotation"  # their default for dim > 1


def test_vector_quantize_layouts():
    fmap = compat.VectorQuantize(dim=D, codebook_size=16, accept_image_fmap=True).eval()
    x = torch.randn(2, D, 5, 6)
    with torch.no_grad():
        q, idx, _ = fmap(x)
    assert q.shape == x.shape and idx.shape == (2, 5, 6) and torch.equal(fmap.get_output_from_indices(idx), q)
    first = compat.VectorQuantize(dim=D, codebook_size=16, channel_last=False).eval()
    with torch.no_grad():
        q, idx, _ = first(torch.randn(2, D, 7))
    assert q.shape == (2, D, 7) and idx.shape == (2, 7) and torch.equal(first.get_output_from_indices(idx), q)
    one = compat.VectorQuantize(dim=D, codebook_size=16)
    q, idx, _ = one(torch.randn(3, D))
    assert q.shape == (3, D) and idx.shape == (3,)
    assert compat.VectorQuantize(dim=D, codebook_size=8, use_cosine_sim=True).layer.cosine


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match="heads"):
        compat.VectorQuantize(dim=D, codebook_size=8, heads=2)
    with pytest.raises(TypeError, match="no_such"):
        compat.VectorQuantize(dim=D, codebook_size=8, no_such=1)
    with pytest.raises(ValueError, match="use_cosine_sim"):
        compat.ResidualVQ(dim=D, num_quantizers=2, codebook_size=8, use_cosine_sim=True)
    with pytest.raises(ValueError, match="preserve_symmetry"):
        compat.FSQ(levels=[8, 5], preserve_symmetry=True)
    with pytest.raises(ValueError, match="spherical"):
        compat.LFQ(dim=D, codebook_size=256, spherical=True)
    with pytest.raises(ValueError, match="mask"):
        compat.VectorQuantize(dim=D, codebook_size=8)(seq(), mask=torch.ones(2, 24, dtype=torch.bool))


def test_residual_vq_tuple_and_dropout():
    rq = compat.ResidualVQ(dim=D, num_quantizers=3, codebook_size=16, decay=0.95, commitment_weight=0.3,
                           quantize_dropout=True, quantize_dropout_cutoff_index=1, shared_codebook=True)
    assert (rq.layer.dropout, rq.layer.dropout_min, rq.layer.shared, rq.layer.beta) == (1.0, 2, True, 0.3)
    assert rq.layer.books[0].ema_decay == 0.95
    q, idx, losses = rq(seq())
    assert q.shape == (2, 24, D) and idx.shape == (2, 24, 3) and losses.shape == (3,)
    kept = int((idx[0, 0] >= 0).sum())
    assert kept >= 2 and bool((idx[..., kept:] == -1).all()) and bool((losses[kept:] == 0).all())
    rq.eval()
    with torch.no_grad():
        q, idx, losses = rq(seq())
    assert bool((idx >= 0).all()) and int(idx.max()) < 16 and torch.equal(losses, torch.zeros(3))
    assert torch.allclose(rq.get_output_from_indices(idx), q, atol=1e-6)
    assert rq.get_codes_from_indices(idx).shape == (3, 2, 24, D)
    maps = compat.ResidualVQ(dim=D, num_quantizers=2, codebook_size=8, accept_image_fmap=True)
    q, idx, losses = maps(torch.randn(2, D, 4, 4))
    assert q.shape == (2, D, 4, 4) and idx.shape == (2, 4, 4, 2) and losses.shape == (2,)
    out = rq.layer.train()(seq())
    assert torch.allclose(out.stage_loss.sum(), out.loss)


def test_fsq_and_lfq_tuples():
    fsq = compat.FSQ(levels=[8, 5, 5, 5], dim=D)
    q, idx = fsq(seq())
    assert q.shape == (2, 24, D) and idx.shape == (2, 24) and int(idx.max()) < 1000
    fsq.eval()
    with torch.no_grad():
        q, idx = fsq(torch.randn(2, D, 3, 3))
    assert idx.shape == (2, 3, 3) and torch.equal(fsq.indices_to_codes(idx), q)
    lfq = compat.LFQ(dim=D, codebook_size=256, entropy_loss_weight=0.2, commitment_loss_weight=0.1, diversity_gamma=2.0)
    assert (lfq.layer.entropy_weight, lfq.layer.beta, lfq.layer.diversity, lfq.layer.bits_per_code) == (0.2, 0.1, 2.0, 8)
    out, parts = lfq(seq(), inv_temperature=3.0, return_loss_breakdown=True)
    quantized, indices, aux = out
    assert quantized.shape == (2, 24, D) and indices.shape == (2, 24) and aux.requires_grad
    assert lfq.layer.inv_temperature == 3.0 and len(parts) == 3
    lfq.eval()
    with torch.no_grad():
        quantized, indices, aux = lfq(torch.randn(2, D, 4, 4))
    assert indices.shape == (2, 4, 4) and float(aux) == 0 and torch.equal(lfq.indices_to_codes(indices), quantized)


# ------------------------------------------------------------------ against vector-quantize-pytorch itself
@pytest.fixture
def vqp():
    return pytest.importorskip("vector_quantize_pytorch")


def _shapes(t):
    return tuple(tuple(v.shape) for v in t)


@pytest.mark.parametrize("kwargs, make_x", [
    ({}, lambda: seq()),
    ({"accept_image_fmap": True}, lambda: torch.randn(2, D, 4, 5)),
    ({"channel_last": False}, lambda: torch.randn(2, D, 9)),
    ({"codebook_dim": 4, "decay": 0.9, "commitment_weight": 0.25, "kmeans_init": True}, lambda: seq()),
])
def test_vector_quantize_matches_vqp(vqp, kwargs, make_x):
    x = make_x()
    ours, theirs = compat.VectorQuantize(dim=D, codebook_size=32, **kwargs), vqp.VectorQuantize(dim=D, codebook_size=32, **kwargs)
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        a, b = ours(x), theirs(x)
        assert len(a) == len(b) == 3 and _shapes(a) == _shapes(b)
        assert a[1].dtype == b[1].dtype == torch.long
        if mode == "eval":
            assert float(a[2]) == float(b[2]) == 0.0


def test_residual_vq_matches_vqp(vqp):
    # sequences only: vector-quantize-pytorch 1.34's ResidualVQ(accept_image_fmap=True) fails on (B, D, H, W) input
    # (a size mismatch in its index concatenation); ours gives the (B, H, W, Q) indices its docstrings name
    kw = dict(dim=D, num_quantizers=3, codebook_size=16)
    x = seq()
    ours, theirs = compat.ResidualVQ(**kw), vqp.ResidualVQ(**kw)
    a, b = ours(x), theirs(x)
    assert len(a) == len(b) == 3 and _shapes(a) == _shapes(b)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(x), theirs(x)
        assert _shapes(a) == _shapes(b)
        assert ours.get_output_from_indices(a[1]).shape == theirs.get_output_from_indices(b[1]).shape


@pytest.mark.parametrize("make_x", [lambda: seq(), lambda: torch.randn(2, D, 3, 5)])
def test_fsq_matches_vqp_codes(vqp, make_x):
    x = make_x()
    ours, theirs = compat.FSQ(levels=[8, 5, 5, 5]), vqp.FSQ(levels=[8, 5, 5, 5])
    x = x[..., :4] if x.ndim == 3 else x[:, :4]  # no projection: the same codes, the same indices
    a, b = ours(x), theirs(x)
    assert len(a) == len(b) == 2 and _shapes(a) == _shapes(b)
    assert torch.equal(a[1], b[1].long()) and torch.allclose(a[0], b[0], atol=1e-6)
    assert torch.equal(ours.implicit_codebook, theirs.implicit_codebook)


@pytest.mark.parametrize("make_x", [lambda: seq(), lambda: torch.randn(2, D, 3, 5)])
def test_lfq_matches_vqp(vqp, make_x):
    x = make_x()
    ours, theirs = compat.LFQ(dim=D, codebook_size=256), vqp.LFQ(dim=D, codebook_size=256)
    a, b = ours(x), theirs(x)
    assert len(a) == len(b) == 3 and _shapes(a) == _shapes(b)
    # no projection (dim = bits): the same codes and indices, and the same entropy loss at the same temperature
    x = x[..., :8] if x.ndim == 3 else x[:, :8]
    ours, theirs = compat.LFQ(codebook_size=256), vqp.LFQ(codebook_size=256)
    a, b = ours(x, inv_temperature=2.0), theirs(x, inv_temperature=2.0)
    assert torch.equal(a.indices, b.indices.long()) and torch.allclose(a.quantized, b.quantized)
    assert torch.allclose(a.entropy_aux_loss, b.entropy_aux_loss, atol=1e-5)
