"""The quantizer family beyond plain VQ: FSQ, LFQ, ResidualVQ and the SimVQ codebook.

Every kind: indices identical to a brute-force nearest-code search over its (explicit or implicit) codebook,
``decode(encode(z))`` equal to the eval forward exactly, the shared statistics. Tiny tensors only.
"""

import pytest
import torch

from hiervq.quantize import FSQ, LFQ, ResidualVQ, VectorQuantizer


def brute_force(rows: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cdist(rows.double(), codebook.double()).argmin(1)


def maps(seed=0, c=6, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, c, 4, 5, generator=g) * scale


# ---------------------------------------------------------------------------------------------- FSQ
@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [3, 4], [2, 2, 2, 7, 6]])
def test_fsq_codes_and_indices_are_bijective(levels):
    fsq = FSQ(len(levels), levels)
    k = fsq.codebook_size
    assert k == torch.tensor(levels).prod()
    book = fsq.implicit_codebook()
    assert book.shape == (k, len(levels))
    assert torch.equal(fsq.codes_to_indices(book), torch.arange(k))
    assert torch.unique(book, dim=0).shape[0] == k, "K distinct code vectors"
    assert float(book.min()) >= -1 and float(book.max()) <= 1
    # every channel takes exactly L values
    for i, lv in enumerate(levels):
        assert torch.unique(book[:, i]).numel() == lv


@pytest.mark.parametrize("dim", [4, 6])
def test_fsq_indices_equal_brute_force_and_decode_equals_eval_forward(dim):
    torch.manual_seed(0)
    fsq = FSQ(dim, [8, 5, 5, 5]).eval()
    z = maps(c=dim)
    with torch.no_grad():
        out = fsq(z)
        e = fsq.project_in(z.permute(0, 2, 3, 1).reshape(-1, dim))
        bounded = fsq.bound(e) / fsq._half_width
    assert out.indices.shape == (3, 4, 5) and out.quantized.shape == z.shape
    assert torch.equal(out.indices.reshape(-1), brute_force(bounded, fsq.implicit_codebook()))
    assert torch.equal(fsq.encode(z), out.indices)
    assert torch.equal(fsq.decode(out.indices), out.quantized)
    # all levels reachable, including the outermost ones, by a large enough input
    plain = FSQ(4, [8, 5, 5, 5]).eval()
    codes = plain.indices_to_codes(plain.encode(torch.randn(4000, 4) * 10))
    for i, lv in enumerate([8, 5, 5, 5]):
        assert codes[:, i].unique().numel() == lv, "every value of every channel is reached"


@pytest.mark.parametrize("levels", [[2] * 24, [8] * 9], ids=["K=2^24 (float index)", "K=2^27 (int64 index)"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fsq_index_paths_are_exact_for_large_codebooks(levels, dtype):
    """Up to 2^24 codes the index is one float matrix-vector product, beyond it int64 digits: both exact. (encode
    and decode only: a forward's statistics would count all K codes.)"""
    torch.manual_seed(0)
    fsq = FSQ(5, levels).to(dtype).eval()
    z = torch.randn(400, 5, dtype=dtype) * 3
    with torch.no_grad():
        rounded = torch.round(fsq.bound(fsq.project_in(z)))
        idx = fsq.encode(z)
        digits = (rounded + fsq._half_width.to(dtype)).long()
        assert torch.equal(idx, (digits * fsq._basis).sum(-1))
        assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)
        assert torch.equal(fsq.decode(idx), fsq._out(torch.round(fsq._bounded(z))))


def test_fsq_training_forward_gradient_and_stats():
    fsq = FSQ(6, [8, 5, 5, 5]).train()
    z = maps().requires_grad_(True)
    out = fsq(z)
    (out.quantized.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert set(out.losses) >= {"commitment", "codebook"} and float(out.loss) == 0.0
    st = out.stats
    assert st["counts"].shape == (1000,) and int(st["counts"].sum()) == 60
    assert 0 < float(st["used_fraction"]) <= 60 / 1000 and 1 <= float(st["perplexity"]) <= 60


# ---------------------------------------------------------------------------------------------- LFQ
@pytest.mark.parametrize("bits", [1, 4, 10])
def test_lfq_codes_and_indices_are_bijective(bits):
    lfq = LFQ(bits, bits)
    book = lfq.implicit_codebook()
    assert book.shape == (2**bits, bits)
    assert torch.equal(lfq.codes_to_indices(book), torch.arange(2**bits))
    assert torch.unique(book, dim=0).shape[0] == 2**bits
    assert set(book.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("dim", [5, 6])
def test_lfq_indices_equal_brute_force_and_decode_equals_eval_forward(dim):
    torch.manual_seed(0)
    lfq = LFQ(dim, 5).eval()
    z = maps(c=dim)
    with torch.no_grad():
        out = lfq(z)
        e = lfq.project_in(z.permute(0, 2, 3, 1).reshape(-1, dim))
    assert torch.equal(out.indices.reshape(-1), brute_force(e, lfq.implicit_codebook()))
    assert torch.equal(lfq.encode(z), out.indices)
    assert torch.equal(lfq.decode(out.indices), out.quantized)


def test_lfq_entropy_terms_equal_the_full_softmax_and_have_its_gradient():
    """The factorised per-sample entropy and the chunked codebook entropy equal MAGVIT-2's N x K softmax."""
    torch.manual_seed(0)
    lfq = LFQ(4, 4, inv_temperature=0.7, entropy_weight=1.0, diversity=0.5, beta=0.0, chunk_elements=16 * 3).double()
    lfq.train()
    e = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)
    out = lfq(e)
    out.loss.backward()
    e2 = e.detach().clone().requires_grad_(True)
    p = torch.softmax(2 * 0.7 * e2 @ lfq.implicit_codebook().double().t(), -1)
    sample_h = -(p * p.log()).sum(-1).mean()
    avg = p.mean(0)
    codebook_h = -(avg * avg.log()).sum()
    ref = sample_h - 0.5 * codebook_h
    ref.backward()
    torch.testing.assert_close(out.losses["sample_entropy"], sample_h.detach())
    torch.testing.assert_close(out.losses["codebook_entropy"], codebook_h.detach())
    torch.testing.assert_close(out.loss.detach(), ref.detach())
    torch.testing.assert_close(e.grad, e2.grad)


def test_lfq_eval_skips_entropy_and_stats_cover_the_implicit_codebook():
    lfq = LFQ(6, 3).eval()
    with torch.no_grad():
        out = lfq(maps())
    assert float(out.losses["entropy"]) == 0.0
    assert out.stats["counts"].shape == (8,) and int(out.stats["counts"].sum()) == 60


# ---------------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("make", [lambda: FSQ(16, [8, 5, 5, 5]), lambda: LFQ(16, 10)], ids=["fsq", "lfq"])
def test_bf16_autocast_gives_the_same_codes_as_fp32(make):
    torch.manual_seed(0)
    q = make().eval()
    z = torch.randn(512, 16) * 3
    with torch.no_grad():
        ref = q(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = q(z)
            low_enc = q.encode(z)
        # and what a bf16 computation would have done: at least some codes differ (the test has teeth)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            e_bf16 = q.project_in(z)
    assert torch.equal(low.indices, ref.indices) and torch.equal(low_enc, ref.indices)
    assert low.quantized.dtype == torch.float32 and torch.equal(low.quantized, ref.quantized)
    assert e_bf16.dtype == torch.bfloat16
    assert not torch.equal(q.codes_to_indices(q.bound(e_bf16.float()) / q._half_width if isinstance(q, FSQ)
                                              else e_bf16.float()), ref.indices)


# ---------------------------------------------------------------------------------------------- ResidualVQ
def residual_reference(rq, rows):
    """Greedy brute-force chain: stage l's code is the cdist argmin of the residual left by stages < l."""
    residual = rq.project_in(rows).double()
    codes = []
    for stage in range(rq.stages):
        w = rq.book(stage).weight.double()
        idx = brute_force(residual, w)
        codes.append(idx)
        residual = residual - w[idx]
    return torch.stack(codes, -1)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("code_dim", [None, 3])
def test_residual_indices_equal_brute_force_and_prefix_decode_is_the_sum_of_stages(shared, code_dim):
    torch.manual_seed(0)
    rq = ResidualVQ(6, 16, stages=4, code_dim=code_dim, shared=shared, init="random").eval()
    z = maps()
    rows = z.permute(0, 2, 3, 1).reshape(-1, 6)
    with torch.no_grad():
        out = rq(z)
        ref = residual_reference(rq, rows)
    assert out.indices.shape == (3, 4, 5, 4)
    assert torch.equal(out.indices.reshape(-1, 4), ref)
    codes = rq.encode(z)
    assert torch.equal(codes, out.indices)
    assert torch.equal(rq.decode(codes), out.quantized), "full decode = eval forward, exactly"
    for n in range(1, 5):
        q = sum(rq.book(s).weight[codes[..., s]] for s in range(n))  # (3, 4, 5, D), stage order
        expect = rq.project_out(q).permute(0, 3, 1, 2)
        torch.testing.assert_close(rq.decode(codes[..., :n]), expect, rtol=0, atol=1e-6)
    # later stages refine: the error of each prefix does not grow
    with torch.no_grad():
        errs = [float((rq.decode(codes[..., :n]) - z).square().mean()) for n in range(1, 5)]
    if code_dim is None:
        assert all(b <= a + 1e-6 for a, b in zip(errs, errs[1:])), errs


def test_residual_dropout_only_shortens_the_chain():
    torch.manual_seed(0)
    rq = ResidualVQ(6, 8, stages=4, dropout=1.0, init="random", ema_decay=0.9, dead_threshold=0)
    z = maps()
    seen = set()
    for _ in range(12):
        with torch.no_grad():
            full = rq.eval().encode(z)
            decoded = [rq.decode(full[..., :n]) for n in range(1, 5)]
        out = rq.train()(z)
        used = int((out.indices[0, 0, 0] >= 0).sum())
        seen.add(used)
        assert torch.equal(out.indices[..., :used], full[..., :used]), "the first stages are the full chain's"
        assert bool((out.indices[..., used:] == -1).all())
        torch.testing.assert_close(out.quantized, decoded[used - 1], rtol=0, atol=0)
        assert int(out.stats["counts"].sum()) == 60 * used
    assert len(seen) >= 3, f"dropout drew several chain lengths, got {seen}"
    rq.dropout = 0.0
    assert int((rq.train()(z).indices >= 0).all()) == 1


def test_residual_learned_codes_train_and_dropped_books_get_zero_gradients():
    torch.manual_seed(0)
    rq = ResidualVQ(6, 8, stages=3, ema_decay=None, init="random", dead_threshold=0, dropout=1.0, dropout_min=1)
    rq.train()
    torch.manual_seed(3)
    out = rq(maps().requires_grad_(True))
    out.loss.backward()
    used = int((out.indices[0, 0, 0] >= 0).sum())
    assert all(rq.books[s].weight.grad is not None for s in range(3)), "every book in the graph (DDP)"
    assert float(rq.books[0].weight.grad.abs().sum()) > 0
    for s in range(used, 3):
        assert float(rq.books[s].weight.grad.abs().sum()) == 0


def test_residual_ema_and_data_init_stats():
    torch.manual_seed(0)
    rq = ResidualVQ(6, 8, stages=2, init="kmeans", kmeans_iters=2).train()
    out = rq(maps())
    assert all(bool(b.initialized) for b in rq.books)
    assert out.stats["stage_perplexity"].shape == (2,) and out.stats["counts"].shape == (8,)
    assert rq.bits == 2 * 3


# ---------------------------------------------------------------------------------------------- SimVQ
def test_simvq_codes_are_a_frozen_basis_times_a_learned_map_and_only_the_map_trains():
    torch.manual_seed(0)
    vq = VectorQuantizer(6, 16, code_dim=4, simvq=True, ema_decay=None).train()
    book = vq.codebook
    assert [n for n, p in book.named_parameters()] == ["map.weight"]
    assert "basis" in dict(book.named_buffers()) and "codebook.basis" in vq.state_dict()
    basis0, map0 = book.basis.clone(), book.map.weight.detach().clone()
    opt = torch.optim.SGD(vq.parameters(), lr=0.5)
    z = maps()
    for _ in range(3):
        out = vq(z)
        opt.zero_grad()
        (out.quantized.square().mean() + out.loss).backward()
        assert book.map.weight.grad is not None and float(book.map.weight.grad.abs().sum()) > 0
        opt.step()
    assert torch.equal(book.basis, basis0), "the basis is frozen"
    assert not torch.equal(book.map.weight, map0), "the map learns"
    torch.testing.assert_close(book.weight, book.basis @ book.map.weight.t())
    vq.eval()
    with torch.no_grad():
        out = vq(z)
        e = vq.project_in(z.permute(0, 2, 3, 1).reshape(-1, 6))
    assert torch.equal(out.indices.reshape(-1), brute_force(e, book.weight.detach()))
    assert torch.equal(vq.decode(out.indices), out.quantized)
    assert torch.equal(vq.encode(z), out.indices)


def test_simvq_refuses_ema():
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(6, 16, simvq=True, ema_decay=0.99)


# ---------------------------------------------------------------------------------------------- the per-level switch
def family_model(**level_quantizers):
    from hiervq.models.hierarchical import HierarchicalConfig, HierarchicalVQVAE, LevelConfig
    from hiervq.schema import from_dict

    levels = [{"downsample": 2, "codebook_size": 16, "dim": 6}, {"downsample": 2, "codebook_size": 8, "dim": 6}]
    for i, q in level_quantizers.items():
        levels[int(i[1:])]["quantizer"] = q
    config = from_dict(HierarchicalConfig, {"image_size": 8, "in_channels": 1, "channels": 8, "blocks": 1,
                                            "res_channels": 4, "levels": levels}, "model")
    assert all(isinstance(lv, LevelConfig) for lv in config.levels)
    return HierarchicalVQVAE(config)


KINDS = {
    "fsq": ({"kind": "fsq", "levels": [8, 5, 5, 5]}, 1000, 1, 4),
    "lfq": ({"kind": "lfq", "bits": 5}, 32, 1, 5),
    "residual": ({"kind": "residual", "stages": 3, "dropout": 0.5, "init": "random"}, 16, 3, 6),
    "simvq": ({"kind": "vq", "simvq": True, "ema_decay": None}, 16, 1, 6),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_through_the_level_switch(kind, tmp_path):
    import math

    import hiervq

    q, k, depth, code_dim = KINDS[kind]
    torch.manual_seed(0)
    model = family_model(l0=q)
    info = model.levels[0]
    assert (info.codebook_size, info.depth, info.code_dim) == (k, depth, code_dim)
    assert model.budget().bits_per_image == 16 * depth * math.log2(k) + 4 * math.log2(8)
    x = torch.rand(2, 1, 8, 8)
    model.train()
    out = model(x)
    out.loss.backward()
    assert out.codes[0].shape == ((2, 4, 4, depth) if kind == "residual" else (2, 4, 4))
    assert set(out.stats[0]) >= {"perplexity", "used_fraction", "counts", "resets"}
    model.eval()
    codes = model.encode(x)
    with torch.no_grad():
        assert torch.equal(model.decode(codes), model(x).recon)
    model.save_pretrained(tmp_path / "m")
    loaded = hiervq.load(tmp_path / "m")
    assert torch.equal(loaded.decode(codes), model.decode(codes))
    assert loaded.config.levels[0].quantizer.kind == q["kind"]


@pytest.mark.parametrize("level,match", [
    ({"kind": "vq", "levels": [8, 5]}, "levels is an option of kind fsq"),
    ({"kind": "fsq"}, "kind fsq needs levels"),
    ({"kind": "fsq", "levels": [8, 1]}, "integers >= 2"),
    ({"kind": "lfq", "bits": 0}, "bits in"),
    ({"kind": "residual"}, "stages"),
    ({"kind": "residual", "stages": 2, "estimator": "gumbel"}, "estimator"),
    ({"kind": "residual", "stages": 2, "dropout_min": 3}, "dropout_min"),
    ({"kind": "vq", "simvq": True}, "ema_decay null"),
    ({"kind": "pq"}, "kind must be one of"),
])
def test_the_level_switch_refuses_bad_settings(level, match):
    from hiervq.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        family_model(l1=level)


def test_fsq_code_dim_must_match_its_levels():
    from hiervq.models.base import QuantizerConfig
    from hiervq.models.hierarchical import HierarchicalConfig, LevelConfig

    config = HierarchicalConfig(levels=[LevelConfig(code_dim=3, quantizer=QuantizerConfig(kind="fsq", levels=[8, 5, 5, 5]))])
    with pytest.raises(ValueError, match="levels.0.quantizer: kind fsq"):
        config.validate()


def test_every_quantizer_passes_its_codebook_options_through():
    """The codebook settings are declared once (quantize.CodebookConfig): every codebook-based quantizer and
    QuantizerConfig.make hand them to their Codebook unchanged, given as a config or as keywords."""
    from hiervq.models.base import QuantizerConfig
    from hiervq.models.pqvae import PQQuantizerConfig
    from hiervq.quantize import CodebookConfig, MultiScaleVQ, ProgressiveQuantizer, ResidualVQ, VectorQuantizer

    opts = dict(ema_decay=0.9, init="random", kmeans_iters=3, dead_threshold=1.5, dead_window=7, reseed="mean")
    config = CodebookConfig(**opts)
    pq = dict(map_size=2, steps=2, codebook_size=8, spatial_dim=2, channel_dim=2)
    layers = {
        "vq": VectorQuantizer(4, 8, cosine=True, chunk_elements=1024, **opts).codebook,
        "vq-config": VectorQuantizer(4, 8, codebook=CodebookConfig(cosine=True, chunk_elements=1024, **opts)).codebook,
        "residual": ResidualVQ(4, 8, 2, **opts).books[1],
        "residual-config": ResidualVQ(4, 8, 2, codebook=config).books[1],
        "multiscale": MultiScaleVQ(4, 8, [1, 2], **opts).codebook,
        "multiscale-config": MultiScaleVQ(4, 8, [1, 2], codebook=config).codebook,
        "progressive": ProgressiveQuantizer(4, **pq, **opts).codebook,
        "progressive-config": ProgressiveQuantizer(4, **pq, codebook=config).codebook,
        "config": QuantizerConfig(**opts).make(4, 8).codebook,
        "pq-config": ProgressiveQuantizer(4, **pq, **PQQuantizerConfig(**opts).options()).codebook,
    }
    for name, book in layers.items():
        for key, value in opts.items():
            assert getattr(book, key) == value, (name, key)
    assert layers["vq"].cosine and layers["vq"].chunk_elements == 1024 and not layers["residual"].cosine
    assert layers["vq-config"].cosine and layers["vq-config"].chunk_elements == 1024
    # keywords replace the config's settings; a progressive quantizer's codebook starts from k-means
    assert VectorQuantizer(4, 8, codebook=config, dead_window=2).codebook.dead_window == 2
    assert ProgressiveQuantizer(4, **pq).codebook.init == "kmeans" == PQQuantizerConfig().init
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_codes'"):
        VectorQuantizer(4, 8, num_codes=8)
    for layer in (lambda **kw: ResidualVQ(4, 8, 2, **kw), lambda **kw: MultiScaleVQ(4, 8, [1, 2], **kw),
                  lambda **kw: ProgressiveQuantizer(4, **pq, **kw)):
        with pytest.raises(ValueError, match="does not support the codebook setting cosine"):
            layer(cosine=True)
        with pytest.raises(ValueError, match="does not support the codebook setting init_after"):
            layer(codebook=CodebookConfig(init_after=2))
    with pytest.raises(ValueError, match="unknown reseed"):
        VectorQuantizer(4, 8, codebook=CodebookConfig(reseed="median"))
