"""The maths of the quantizer layer: search, estimators, EMA, initialisation, dead-code reset, decode."""

import math

import pytest
import torch
import torch.nn.functional as F

from hiervq.quantize import Codebook, VectorQuantizer, nearest_code, rotation_trick, straight_through


def brute_force_nearest(z, w):
    return torch.cdist(z.double(), w.double()).argmin(1)


@pytest.mark.parametrize("n,k,d,chunk", [(100, 16, 4, 1 << 21), (1000, 64, 8, 64 * 7), (257, 512, 3, 512)])
def test_nearest_equals_brute_force(n, k, d, chunk):
    g = torch.Generator().manual_seed(n + k)
    z, w = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    idx = nearest_code(z, w, chunk_elements=chunk)
    ref = brute_force_nearest(z, w)
    dist = torch.cdist(z.double(), w.double())
    # ties aside: the chosen code is as close as the brute-force one (to float32 precision)
    chosen = dist.gather(1, idx[:, None]).squeeze(1)
    best = dist.gather(1, ref[:, None]).squeeze(1)
    assert torch.allclose(chosen, best, atol=1e-4)
    assert (idx == ref).float().mean() > 0.99


def test_codebook_nearest_checks_shape():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Codebook(8, 4).nearest(torch.randn(3, 5))


def test_straight_through_gradient_is_identity():
    e = torch.randn(6, 5, requires_grad=True)
    q = torch.randn(6, 5)
    out = straight_through(e, q)
    assert torch.equal(out, q), "the forward value is exactly the code vectors (no e + (q - e) rounding)"
    assert torch.allclose(out, e + (q - e))
    g = torch.randn(6, 5)
    out.backward(g)
    assert torch.equal(e.grad, g)


def rotation_reference(e, q, g):
    """lambda R^T g with R = I - 2 w w^T + 2 q_hat e_hat^T, computed as explicit matrices in float64."""
    e, q, g = e.double(), q.double(), g.double()
    e_hat, q_hat = e / e.norm(), q / q.norm()
    w = (e_hat + q_hat) / (e_hat + q_hat).norm()
    eye = torch.eye(len(e), dtype=torch.float64)
    r = eye - 2 * torch.outer(w, w) + 2 * torch.outer(q_hat, e_hat)
    lam = q.norm() / e.norm()
    return lam * r @ e, lam * r.T @ g


def test_rotation_trick_forward_and_gradient_match_hand_computation():
    torch.manual_seed(0)
    e = torch.randn(10, 6, dtype=torch.float64)
    q = torch.randn(10, 6, dtype=torch.float64)
    g = torch.randn(10, 6, dtype=torch.float64)
    e_var = e.clone().requires_grad_(True)
    out = rotation_trick(e_var, q)
    out.backward(g)
    assert torch.allclose(out, q, atol=1e-12)
    for i in range(10):
        rotated, grad = rotation_reference(e[i], q[i], g[i])
        assert torch.allclose(rotated, q[i], atol=1e-10)  # R maps e to q: forward value is q
        assert torch.allclose(e_var.grad[i], grad, atol=1e-10)


def test_rotation_trick_degenerate_cases_are_finite():
    q = torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.0, 0.0, 0.0]])
    e = torch.stack([torch.zeros(3), -q[1] / q[1].norm() * 3.0, torch.tensor([1e-9, 0.0, 0.0])])
    e.requires_grad_(True)
    out = rotation_trick(e, q)
    g = torch.randn(3, 3)
    out.backward(g)
    assert torch.isfinite(out).all() and torch.isfinite(e.grad).all()
    assert torch.allclose(out, q)
    assert torch.allclose(e.grad[0], g[0])  # e = 0: straight-through
    # e_hat = -q_hat: w = 0, R = I - 2 q_hat q_hat^T (a reflection mapping e to q)
    q_hat = q[1] / q[1].norm()
    lam = q[1].norm() / 3.0
    r = torch.eye(3) - 2 * torch.outer(q_hat, q_hat)
    assert torch.allclose(lam * r @ e[1].detach(), q[1], atol=1e-5)
    assert torch.allclose(e.grad[1], lam * r.T @ g[1], atol=1e-5)


def test_rotation_trick_gradient_through_quantizer_matches_formula():
    torch.manual_seed(1)
    vq = VectorQuantizer(4, 16, estimator="rotation", init="random", dead_threshold=0)
    vq.train()
    w0 = vq.codebook.weight.clone()
    z = torch.randn(32, 4, requires_grad=True)
    out = vq(z)
    g = torch.randn(32, 4)
    (out.quantized * g).sum().backward()
    q = w0[out.indices]  # the codes before this step's EMA update
    for i in range(32):
        _, grad = rotation_reference(z[i].detach(), q[i], g[i])
        assert torch.allclose(z.grad[i], grad.float(), atol=1e-5)


def test_ema_update_matches_hand_computation():
    torch.manual_seed(0)
    k, d, decay, eps = 4, 3, 0.9, 1e-5
    book = Codebook(k, d, ema_decay=decay, init="random", dead_threshold=0, eps=eps)
    w0 = book.weight.clone()
    z = torch.randn(10, d)
    idx = torch.tensor([0, 0, 1, 1, 1, 2, 0, 1, 2, 0])
    book.update(z, idx)
    counts = torch.tensor([4.0, 4.0, 2.0, 0.0])
    sums = torch.stack([z[idx == c].sum(0) if (idx == c).any() else torch.zeros(d) for c in range(k)])
    ema_count = decay * torch.ones(k) + (1 - decay) * counts
    ema_sum = decay * w0 + (1 - decay) * sums
    n = ema_count.sum()
    smoothed = (ema_count + eps) / (n + k * eps) * n
    assert torch.allclose(book.ema_count, ema_count)
    assert torch.allclose(book.ema_sum, ema_sum)
    assert torch.allclose(book.weight, ema_sum / smoothed[:, None], atol=1e-6)
    # the unused code (3) divides by a smoothed, non-zero count: finite, and it stays near its old value
    assert torch.isfinite(book.weight).all()


def test_learned_codebook_gets_gradient_from_codebook_loss():
    vq = VectorQuantizer(4, 8, ema_decay=None, init="random", dead_threshold=0)
    vq.train()
    out = vq(torch.randn(20, 4, requires_grad=True))
    out.loss.backward()
    assert vq.codebook.weight.grad is not None and vq.codebook.weight.grad.abs().sum() > 0
    assert out.losses["codebook"] > 0


def test_data_init_picks_encoder_outputs():
    torch.manual_seed(0)
    book = Codebook(8, 5, init="data")
    z = torch.randn(50, 5)
    book.initialize(z)
    assert bool(book.initialized)
    for row in book.weight:
        assert (z == row).all(1).any(), "every code is one of the encoder outputs"
    assert len({tuple(r.tolist()) for r in book.weight}) == 8  # drawn without replacement
    assert torch.equal(book.ema_sum, book.weight) and torch.equal(book.ema_count, torch.ones(8))


def test_data_init_with_fewer_vectors_than_codes():
    book = Codebook(16, 2, init="data")
    z = torch.randn(5, 2)
    book.initialize(z)
    assert torch.equal(book.weight[:5], z)
    assert torch.isfinite(book.weight).all()


def test_kmeans_init_reduces_distortion():
    torch.manual_seed(0)
    centers = torch.randn(4, 2) * 10
    z = (centers[:, None, :] + 0.1 * torch.randn(4, 100, 2)).reshape(-1, 2)
    book = Codebook(4, 2, init="kmeans", kmeans_iters=20)
    book.initialize(z)
    err = (z - book.weight[book.nearest(z)]).pow(2).sum(1).mean()
    assert err < 0.1
    assert book.ema_count.sum() == pytest.approx(400.0)


def test_quantizer_initialises_on_first_training_batch_only():
    vq = VectorQuantizer(3, 4, init="data")
    z = torch.randn(40, 3)
    vq.eval()
    vq(z)
    assert not bool(vq.codebook.initialized)
    vq.train()
    vq(z)
    assert bool(vq.codebook.initialized)


def test_dead_code_reset_reseeds_exactly_the_codes_below_threshold_over_the_window():
    torch.manual_seed(0)
    k, window = 6, 3
    book = Codebook(k, 2, ema_decay=0.99, init="random", dead_threshold=2, dead_window=window)
    # usage per batch: code 0 often, code 1 once per batch (3 >= 2 over the window: alive),
    # code 2 once in the whole window (1 < 2: dead), codes 3-5 never (dead)
    batches = [[0, 0, 0, 1, 2], [0, 0, 1], [0, 0, 0, 1]]
    z = torch.randn(8, 2) + 100.0  # far away from every code, so re-seeded codes are easy to spot
    before = book.weight.clone()
    for i, idx in enumerate(batches):
        resets = book.update(z[: len(idx)], torch.tensor(idx))
        if i < window - 1:
            assert resets == 0, "no code is judged before a full window has been seen"
    assert resets == 4
    dead = torch.tensor([False, False, True, True, True, True])
    assert torch.equal(book.reset_count, dead.long())
    assert (book.weight[dead] > 50).all(), "dead codes are re-seeded from the recent encoder outputs"
    for row in book.weight[dead]:
        assert (z == row).all(1).any()
    # their EMA state was reset with them: count 1 and sum = the new vector, so the next update keeps them
    assert torch.equal(book.ema_count[dead], torch.ones(4))
    assert torch.equal(book.ema_sum[dead], book.weight[dead])
    assert torch.equal(book.age[dead], torch.zeros(4, dtype=torch.long))
    assert (book.usage_window[:, dead] == 0).all()
    # live codes are untouched by the reset (only by the EMA)
    assert not torch.allclose(book.weight[~dead], before[~dead] * 0 + 100)
    w_after = book.weight[dead].clone()
    book.update(z[:2], torch.tensor([0, 0]))  # an update where the re-seeded codes get nothing
    assert torch.allclose(book.weight[dead], w_after, atol=1e-4)


def test_dead_code_reset_off_never_reseeds():
    book = Codebook(8, 2, init="random", dead_threshold=0, dead_window=2)
    for _ in range(10):
        book.update(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    assert book.reset_count.sum() == 0


@pytest.mark.parametrize("estimator", ["ste", "rotation", "gumbel"])
@pytest.mark.parametrize("code_dim", [None, 3])
@pytest.mark.parametrize("cosine", [False, True])
def test_decode_equals_eval_forward(estimator, code_dim, cosine):
    torch.manual_seed(0)
    vq = VectorQuantizer(6, 16, code_dim=code_dim, estimator=estimator, cosine=cosine)
    vq.train()
    vq(torch.randn(2, 6, 5, 5))  # initialise and update once
    vq.eval()
    for z in (torch.randn(2, 6, 4, 3), torch.randn(7, 6), torch.randn(2, 5, 6)):
        with torch.no_grad():
            out = vq(z)
        assert out.indices.shape == (z.shape[0], *z.shape[2:]) if z.ndim == 4 else z.shape[:-1]
        assert torch.equal(vq.decode(out.indices), out.quantized)
        assert torch.equal(vq.encode(z), out.indices)


def test_quantizer_outputs_and_loss():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, beta=0.5, init="random", dead_threshold=0)
    vq.train()
    w0 = vq.codebook.weight.clone()
    z = torch.randn(3, 4, 2, 2, requires_grad=True)
    out = vq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (3, 2, 2)
    rows = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    q = w0[out.indices.reshape(-1)]  # codes before this step's EMA update
    assert torch.equal(out.indices.reshape(-1), brute_force_nearest(rows, w0))
    assert out.losses["commitment"].item() == pytest.approx(F.mse_loss(rows, q).item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(0.5 * out.losses["commitment"].item(), rel=1e-6)
    assert torch.allclose(out.quantized.permute(0, 2, 3, 1).reshape(-1, 4), q, atol=1e-6)
    assert 1.0 <= out.stats["perplexity"] <= 8.0
    assert out.stats["counts"].sum() == 12


def test_gumbel_estimator_samples_codes_and_passes_gradients():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, estimator="gumbel", temperature=0.5, init="random", dead_threshold=0)
    vq.train()
    w0 = vq.codebook.weight.clone()
    z = torch.randn(50, 4, requires_grad=True)
    out = vq(z)
    # the forward value is exactly the (pre-update) code vector of the sampled index
    assert torch.allclose(out.quantized, w0[out.indices], atol=1e-6)
    # sampling: not always the nearest code, but mostly (temperature 0.5)
    nearest = brute_force_nearest(z.detach(), w0)
    agree = (out.indices == nearest).float().mean()
    assert 0.3 < agree < 1.0
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    vq.eval()
    with torch.no_grad():
        assert torch.equal(vq(z).indices, vq.codebook.nearest(z.detach()))


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="estimator"):
        VectorQuantizer(4, 8, estimator="magic")
    with pytest.raises(ValueError, match="init"):
        Codebook(8, 4, init="zeros")
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="expects"):
        vq(torch.randn(2, 5, 3, 3))
    with pytest.raises(IndexError, match="out of range"):
        vq.decode(torch.tensor([8]))


def test_bits():
    assert VectorQuantizer(4, 256).bits == pytest.approx(8.0)
    assert Codebook(512, 2).bits == pytest.approx(math.log2(512))


# ---------------------------------------------------------------------------------------------- fast path
@pytest.mark.parametrize("k", [2, 7, 16, 24, 100, 512, 1000, 8192])
def test_two_stage_minimum_equals_argmin(k):
    from hiervq.quantize.codebook import _argmin_rows, lane_width

    g = torch.Generator().manual_seed(k)
    d = torch.randn(37, k, generator=g)
    lanes = lane_width(k)
    if k in (512, 1000, 8192):
        assert lanes > 0 and k % lanes == 0 and lanes % 8 == 0, "large codebooks take the two-stage search"
    assert torch.equal(_argmin_rows(d, lanes), d.argmin(1))
    # exact ties: the chosen code is one of the tied minima
    d[:, k // 2] = d[:, 0] = d.amin(1) - 1.0
    chosen = _argmin_rows(d, lanes)
    assert ((chosen == 0) | (chosen == k // 2)).all()


@pytest.mark.parametrize("chunk", [1, 64 * 5, 64 * 64, 1 << 30])
def test_nearest_code_chunks_reuse_one_buffer_exactly(chunk):
    g = torch.Generator().manual_seed(3)
    z, w = torch.randn(301, 6, generator=g), torch.randn(64, 6, generator=g)
    expected = torch.addmm(w.pow(2).sum(1), z, w.t(), alpha=-2.0).argmin(1)
    assert torch.equal(nearest_code(z, w, chunk_elements=chunk), expected)


@pytest.mark.parametrize("estimator", ["ste", "rotation"])
def test_training_forward_value_is_exactly_the_code_vectors(estimator):
    torch.manual_seed(0)
    vq = VectorQuantizer(5, 32, estimator=estimator, init="random", dead_threshold=0)
    vq.train()
    w0 = vq.codebook.weight.clone()
    z = torch.randn(4, 5, 3, 3, requires_grad=True)
    out = vq(z)
    q = w0[out.indices].permute(0, 3, 1, 2)
    assert torch.equal(out.quantized, q)
    out.quantized.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_update_with_precomputed_counts_is_the_same_update():
    torch.manual_seed(0)
    a = Codebook(6, 3, init="random", dead_threshold=0)
    b = Codebook(6, 3, init="random", dead_threshold=0)
    b.load_state_dict(a.state_dict())
    z, idx = torch.randn(40, 3), torch.randint(0, 6, (40,))
    counts = torch.bincount(idx, minlength=6)
    before = counts.clone()
    a.update(z, idx)
    b.update(z, idx, counts=counts)
    assert torch.equal(counts, before), "the caller's counts are not modified"
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(b.last_counts, before.float())


def test_training_stats_use_the_update_counts():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, init="random", dead_threshold=0)
    vq.train()
    out = vq(torch.randn(50, 4))
    assert torch.equal(out.stats["counts"], torch.bincount(out.indices, minlength=8))
    assert out.stats["counts"].dtype == torch.long


# ---------------------------------------------------------------------------------------------- warm-up init
@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_warmup_init_happens_at_the_configured_step_and_not_before(ema_decay):
    torch.manual_seed(0)
    n = 3
    vq = VectorQuantizer(4, 8, init="data", init_after=n, ema_decay=ema_decay, dead_threshold=0)
    book = vq.codebook
    seen = []
    real_initialize = book.initialize
    book.initialize = lambda z: (seen.append(z.clone()), real_initialize(z))[1]
    batches = [torch.randn(20, 4) + 10.0 * i for i in range(n + 2)]  # each batch far from the others
    start = {k: v.clone() for k, v in book.state_dict().items()}
    vq.eval()
    vq(batches[0])  # eval forwards are not warm-up steps
    assert int(book.warmup_seen) == 0
    vq.train()
    for i in range(n):
        z = batches[i].clone().requires_grad_()
        out = vq(z)
        assert not bool(book.initialized) and not seen, f"no initialisation during warm-up step {i + 1}"
        assert int(book.warmup_seen) == i + 1
        assert torch.equal(out.quantized, z), "warm-up passes the features through"
        assert out.loss.item() == 0.0 and out.losses["commitment"] == 0 and out.losses["codebook"] == 0
        if out.loss.requires_grad:  # learned codes: a zero term that touches them
            out.loss.backward()
        out.quantized.sum().backward()
        assert torch.equal(z.grad, torch.ones_like(z)), "identity gradient, and none from the (zero) loss"
        for key, value in book.state_dict().items():
            if key != "warmup_seen":
                assert torch.equal(value, start[key]), f"{key} changed during warm-up"
        assert out.indices.shape == (20,) and out.stats["counts"].sum() == 20
    out = vq(batches[n])  # training forward n + 1 initialises from its own features
    assert bool(book.initialized) and len(seen) == 1
    assert torch.equal(seen[0], batches[n])
    if ema_decay is None:  # learned codes are not moved by the update: they are rows of batch n + 1
        for row in book.weight:
            assert (batches[n] == row).all(1).any()
    assert out.losses["commitment"] > 0
    vq(batches[n + 1])
    assert len(seen) == 1, "initialised once"


def test_warmup_counter_is_saved_and_resumes():
    torch.manual_seed(0)
    a = VectorQuantizer(3, 4, init="kmeans", init_after=3)
    assert "codebook.warmup_seen" in a.state_dict()
    assert "codebook.warmup_seen" not in VectorQuantizer(3, 4).state_dict(), "no new key without warm-up"
    a.train()
    a(torch.randn(10, 3))
    a(torch.randn(10, 3))
    b = VectorQuantizer(3, 4, init="kmeans", init_after=3)
    b.load_state_dict(a.state_dict())
    b.train()
    b(torch.randn(10, 3))
    assert not bool(b.codebook.initialized)
    b(torch.randn(10, 3))
    assert bool(b.codebook.initialized)


def test_warmup_through_the_model_config():
    from hiervq.models.base import QuantizerConfig
    from hiervq.models.hierarchical import HierarchicalConfig, HierarchicalVQVAE, LevelConfig

    torch.manual_seed(0)
    config = HierarchicalConfig(
        image_size=16, in_channels=1, channels=8, blocks=1, res_channels=4,
        levels=[LevelConfig(downsample=2, codebook_size=8, dim=4, code_dim=2), LevelConfig(downsample=2, codebook_size=8, dim=4)],
        quantizer=QuantizerConfig(init="data", init_after=2, ema_decay=None),
    )
    model = HierarchicalVQVAE(config)
    model.train()
    x = torch.rand(2, 1, 16, 16)
    for _ in range(2):
        out = model(x)
        out.loss.backward()
        assert not any(bool(vq.codebook.initialized) for vq in model.vq)
        assert out.losses["commitment"] == 0
    model(x)
    assert all(bool(vq.codebook.initialized) for vq in model.vq)
    with pytest.raises(ValueError, match="init_after"):
        QuantizerConfig(init="random", init_after=5).validate()
    with pytest.raises(ValueError, match="init_after"):
        QuantizerConfig(init_after=-1).validate()
    with pytest.raises(ValueError, match="reseed"):
        QuantizerConfig(reseed="median").validate()


# ---------------------------------------------------------------------------------------------- averaged re-seeding
def test_mean_reseed_writes_the_mean_of_an_output_and_its_nearest_neighbours():
    from hiervq.quantize.codebook import MEAN_RESEED_ROWS

    assert MEAN_RESEED_ROWS == 4
    torch.manual_seed(0)
    k = 6
    book = Codebook(k, 2, ema_decay=0.99, init="random", dead_threshold=2, dead_window=1, reseed="mean")
    # 5 tight, well separated clusters of 4 outputs each (dyadic values: every mean is exact in float32)
    offsets = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    centers = torch.tensor([[100.0 * c, -50.0 * c] for c in range(1, 6)])
    z = (centers[:, None, :] + offsets[None]).reshape(-1, 2)
    z = z[torch.randperm(z.shape[0])]
    means = centers + 0.5
    # all outputs go to code 0: codes 1-5 are dead after one full window, 5 dead x 4 rows = the whole batch
    resets = book.update(z, torch.zeros(20, dtype=torch.long))
    assert resets == 5
    dead = torch.arange(k) > 0
    for row in book.weight[dead]:
        assert (means == row).all(1).any(), f"{row} is the exact mean of one cluster (an output and its 3 nearest)"
        assert not (z == row).all(1).any(), "not a single output"
    assert torch.equal(book.ema_count[dead], torch.ones(5))
    assert torch.equal(book.ema_sum[dead], book.weight[dead])
    assert torch.equal(book.age[dead], torch.zeros(5, dtype=torch.long))


def test_mean_reseed_groups_by_hand_and_small_batches():
    torch.manual_seed(0)
    book = Codebook(4, 3, init="random", dead_threshold=1, dead_window=1, reseed="mean")
    pool = torch.randn(9, 3).double()
    torch.manual_seed(1)
    rows = book._mean_rows(pool, 2, 4)
    torch.manual_seed(1)
    anchors = torch.randperm(9)[:2]
    for r, a in zip(rows, anchors):
        order = torch.cdist(pool[a][None], pool)[0].argsort()
        assert order[0] == a
        assert torch.allclose(r, pool[order[:4]].mean(0), atol=1e-12)
    # fewer outputs than dead codes or than m: every code still gets a finite vector near the outputs
    few = torch.randn(2, 3)
    book.update(few, torch.zeros(2, dtype=torch.long))
    assert int(book.reset_count.sum()) == 3 and torch.isfinite(book.weight).all()


def test_uniform_init_is_small_ready_without_data_and_spreads_assignments():
    """init: uniform (the original VQ-VAE codebook, uniform on [-1/K, 1/K]) needs no data and, unlike a unit-Gaussian
    start far from small encoder outputs, does not send every vector to one code."""
    torch.manual_seed(0)
    k, d = 64, 16
    uniform, gaussian = VectorQuantizer(d, k, init="uniform"), VectorQuantizer(d, k, init="random")
    w = uniform.codebook.weight
    assert bool(uniform.codebook.initialized) and float(w.abs().max()) <= 1 / k and float(w.abs().max()) > 0.5 / k
    z = 0.01 * torch.randn(256, d, 4, 4)  # small encoder outputs, as at the start of training
    used = {name: vq.eval()(z).indices.unique().numel() for name, vq in (("uniform", uniform), ("gaussian", gaussian))}
    assert used["uniform"] > 4 * used["gaussian"]
    with pytest.raises(ValueError, match="needs no data"):
        VectorQuantizer(d, k, init="uniform", init_after=10)
