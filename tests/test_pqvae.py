"""PQ-VAE: the progressive quantizer's maths, prefix decoding, entropy terms, the model behind the interface."""

import math

import pytest
import torch

import hiervq
from hiervq.errors import ConfigError
from hiervq.models import PQVAE, PQVAEConfig
from hiervq.pretrained import build
from hiervq.quantize import ProgressiveQuantizer
from hiervq.quantize.progressive import entropy_terms


def residual_loop(q: ProgressiveQuantizer, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the progressive loop written step by step on the full map (codes (B, L*G), F - F_{L+1})."""
    x = q.partition(z)
    b, g = x.shape[:2]
    pinvs = q.pseudo_inverses()
    residual, codes = x, []
    for step in range(q.steps):
        e = q.transform(residual, step).reshape(b * g, -1)
        idx = q.codebook.nearest(e)
        codes.append(idx.view(b, g))
        residual = residual - q.inverse(q.codebook.lookup(idx).view(b, g, -1), step, pinvs)
    return torch.stack(codes, 1).reshape(b, -1), x - residual


def test_identity_transforms_equal_residual_quantization():
    torch.manual_seed(0)
    b, c, h, w, steps, k = 6, 3, 4, 4, 5, 32
    q = ProgressiveQuantizer(c, map_size=(h, w), steps=steps, codebook_size=k, spatial_dim=h * w, channel_dim=c,
                             estimator="ste", init="random").eval()
    with torch.no_grad():
        q.spatial.copy_(torch.eye(h * w).expand(steps, -1, -1))
        q.channel.copy_(torch.eye(c).expand(steps, -1, -1))
        q.codebook.weight.mul_(0.5)
    z = torch.randn(b, c, h, w)
    # plain residual quantization of the flattened map with the same codebook (code vectors are (c, s) = (C, h*w))
    r = z.reshape(b, c * h * w)
    total = torch.zeros_like(r)
    codebook = q.codebook.weight
    expected = []
    for _ in range(steps):
        idx = torch.cdist(r, codebook).argmin(1)
        expected.append(idx)
        total += codebook[idx]
        r = r - codebook[idx]
    expected = torch.stack(expected, 1)
    with torch.no_grad():
        out = q(z)
    assert torch.equal(out.indices, expected)
    assert torch.equal(q.encode(z), expected)
    got = out.quantized.reshape(b, -1)
    torch.testing.assert_close(got, total, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"map_size": 2, "steps": 6, "spatial_dim": 2, "channel_dim": 8}])
def test_transformed_domain_chain_equals_residual_loop(kw):
    torch.manual_seed(1)
    defaults = {"map_size": 4, "steps": 12, "spatial_dim": 8, "channel_dim": 4}
    q = ProgressiveQuantizer(16, codebook_size=32, init="random", **{**defaults, **kw}).eval()
    z = torch.randn(5, 16, 4, 4)
    ref_codes, ref_hat = residual_loop(q, z)
    with torch.no_grad():
        out = q(z)
    assert torch.equal(out.indices, ref_codes)
    torch.testing.assert_close(q.partition(out.quantized), ref_hat, atol=1e-5, rtol=1e-4)


def test_pinv_round_trip_and_recompute_on_weight_change():
    torch.manual_seed(2)
    q = ProgressiveQuantizer(12, map_size=4, steps=3, codebook_size=8, spatial_dim=5, channel_dim=3, init="random")
    with torch.no_grad():
        pinvs = q.pseudo_inverses()
        e = torch.randn(2, 1, q.code_dim)
        for step in range(3):
            # T has full row rank: T(T^+(e)) = e, and T^+ T is a projection (idempotent)
            torch.testing.assert_close(q.transform(q.inverse(e, step, pinvs), step), e, atol=1e-5, rtol=1e-5)
            x = torch.randn(2, 1, 16, 12)
            p1 = q.inverse(q.transform(x, step), step, pinvs)
            p2 = q.inverse(q.transform(p1, step), step, pinvs)
            torch.testing.assert_close(p1, p2, atol=1e-5, rtol=1e-5)
        before = pinvs[0].clone()
        assert q.pseudo_inverses()[0] is pinvs[0]  # cached while the weights do not change
        q.spatial.mul_(2.0)
        after = q.pseudo_inverses()[0]
    torch.testing.assert_close(after, before / 2.0)
    torch.testing.assert_close(after[1], torch.linalg.pinv(q.spatial[1]))


def test_entropy_terms_against_hand_computation():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0], [0.0, 0.0]])
    h_cond, h_marg = entropy_terms(logits)
    # rows: (1/4, 3/4), (3/4, 1/4), (1/2, 1/2); average (1/2, 1/2)
    h_row = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert h_cond.item() == pytest.approx((2 * h_row + math.log(2.0)) / 3, abs=1e-6)
    assert h_marg.item() == pytest.approx(math.log(2.0), abs=1e-6)
    # batched over steps
    hc, hm = entropy_terms(torch.stack([logits, torch.zeros(3, 2)]))
    assert hc.shape == (2,) and hc[1].item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_entropy_terms_of_the_quantizer_use_softmax_of_negative_distance():
    torch.manual_seed(3)
    q = ProgressiveQuantizer(4, map_size=2, steps=1, codebook_size=5, spatial_dim=4, channel_dim=4, init="random",
                             temperature=0.7).eval()
    z = torch.randn(3, 4, 2, 2)
    with torch.no_grad():
        out = q(z)
        e = q.transform(q.partition(z), 0).reshape(3, -1)
        d = torch.cdist(e, q.codebook.weight).pow(2)
        p = (-d / 0.7).softmax(-1)
        h_cond = -(p * p.log()).sum(-1).mean()
        pb = p.mean(0)
        h_marg = -(pb * pb.log()).sum()
    assert out.losses["cond_entropy"].item() == pytest.approx(h_cond.item(), rel=1e-4)
    assert out.losses["entropy"].item() == pytest.approx((h_cond - h_marg).item(), rel=1e-4, abs=1e-5)


def small_model(**kw) -> PQVAE:
    """A small PQ-VAE; the quantizer's keys (``estimator``, ``temperature``, ...) go to ``model.quantizer``."""
    from hiervq.models.pqvae import QUANTIZER_KEYS

    quantizer = {"init": "kmeans", **{k: kw.pop(k) for k in list(kw) if k in QUANTIZER_KEYS}}
    cfg = dict(image_size=16, in_channels=1, channels=16, blocks=1, res_channels=8, downsample=2, latent_channels=8,
               map_size=4, steps=6, codebook_size=16, spatial_dim=4, channel_dim=2, quantizer=quantizer)
    cfg.update(kw)
    return PQVAE(PQVAEConfig(**cfg))


@pytest.mark.parametrize("estimator", ["gumbel", "ste"])
def test_model_train_step_prefix_decoding_and_round_trip(estimator):
    torch.manual_seed(4)
    model = small_model(estimator=estimator, map_size=4)  # 8x8 map -> G = 4 small maps, L = 6 steps
    x = torch.rand(8, 1, 16, 16)
    model.train()
    out = model(x)
    out.loss.backward()
    assert model.quantizer.spatial.grad is not None and model.encoder.net[0].weight.grad is not None
    assert out.codes[0].shape == (8, 24) and model.levels[0].grid == (24,)
    model.eval()
    with torch.no_grad():
        ev = model(x)
        codes = model.encode(x)
        full = model.decode(codes)
        assert torch.equal(codes, ev.codes[0])
        assert torch.equal(full, ev.recon)
        assert torch.equal(model.decode(codes[:, :24]), full)  # a prefix of length L is the full decode
        for n in (0, 1, 5, 8, 13):
            keep = torch.arange(24) < n
            torch.testing.assert_close(model.decode(codes[:, :n]), model.decode(codes, keep=keep))
        # prefix of whole steps = the first steps of the progressive loop
        feats = model._features(x)
        q = model.quantizer
        parts = q.partition(feats)
        b, g = parts.shape[:2]
        pinvs = q.pseudo_inverses()
        residual = parts
        for step in range(2):
            e = q.transform(residual, step).reshape(b * g, -1)
            residual = residual - q.inverse(q.codebook.lookup(q.codebook.nearest(e)).view(b, g, -1), step, pinvs)
        torch.testing.assert_close(model.latent(codes[:, : 2 * g]), q.merge(parts - residual, 8, 8), atol=1e-5, rtol=1e-4)


def test_model_budget_levels_and_codes_list():
    model = PQVAE(PQVAEConfig(in_channels=1, image_size=32))
    assert model.levels[0].grid == (64,) and model.levels[0].codebook_size == 256
    budget = model.budget()
    assert budget.bits_per_image == 512.0 and budget.continuous == 8 * 8 * 64 and budget.discrete == 256 * 64
    codes = torch.randint(0, 256, (3, 64))
    arrays = model.codes_to_list(codes)
    assert len(arrays) == 1 and torch.equal(model.codes_from_list(arrays), codes)
    assert model.codes_from_list([codes[:, :10]]).shape == (3, 10)
    with pytest.raises(ValueError):
        model.codes_from_list([torch.randint(0, 256, (3, 65))])
    with pytest.raises(ValueError):
        model.codes_from_list([codes, codes])


def test_config_validation_and_registry():
    with pytest.raises(ValueError, match="divisible"):
        PQVAE(PQVAEConfig(image_size=20))
    with pytest.raises(ValueError, match="spatial_dim"):
        PQVAE(PQVAEConfig(spatial_dim=100))
    model = build("pqvae", {"image_size": 16, "in_channels": 1, "downsample": 2, "map_size": 8, "steps": 4})
    assert isinstance(model, PQVAE)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(5)
    model = small_model()
    x = torch.rand(4, 1, 16, 16)
    model.train()
    model(x)
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = hiervq.load(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
        assert torch.equal(loaded(x).recon, model(x).recon)


def test_step_entropies_and_gumbel_sampling_at_low_temperature():
    torch.manual_seed(6)
    model = small_model(temperature=1e-4, ema_decay=None, dead_threshold=0.0)
    x = torch.rand(4, 1, 16, 16)
    model.train()
    model(x)  # initialises the codebook
    with torch.no_grad():
        drawn = model.features(x)  # train mode: F_hat from Gumbel-drawn codes; at tiny temperature the nearest
        model.eval()
        codes = model.encode(x)
        ent = model.step_entropies(x)
        nearest = model.latent(codes)
    torch.testing.assert_close(drawn, nearest, atol=1e-5, rtol=1e-5)
    assert ent.shape == codes.shape and (ent >= 0).all() and (ent <= math.log(16) + 1e-5).all()


def test_gumbel_training_updates_the_codebook_with_nearest_codes():
    """At a high temperature the drawn codes are nearly random; the EMA codebook update, the commitment term and
    the reported codes must still use the nearest codes, otherwise every code is pulled toward the mean of e
    (the codebook collapse that kept early PQ-VAE runs near the blurry-mean-digit MSE)."""
    kw = dict(map_size=2, steps=1, codebook_size=8, spatial_dim=4, channel_dim=2, init="random", dead_threshold=0.0,
              ema_decay=0.5)
    z = 3.0 * torch.randn(64, 2, 2, 2, generator=torch.Generator().manual_seed(7))
    runs = {}
    for estimator, temperature in (("ste", 1.0), ("gumbel", 1e4)):
        torch.manual_seed(8)
        q = ProgressiveQuantizer(2, estimator=estimator, temperature=temperature, **kw).train()
        first = q(z)
        for _ in range(20):
            last = q(z)
        runs[estimator] = (first, last, q.codebook.weight.clone())
    (f_ste, l_ste, w_ste), (f_gum, l_gum, w_gum) = runs["ste"], runs["gumbel"]
    assert torch.equal(f_gum.indices, f_ste.indices) and torch.equal(l_gum.indices, l_ste.indices)
    assert f_gum.losses["commitment"].item() == pytest.approx(f_ste.losses["commitment"].item(), rel=1e-5)
    torch.testing.assert_close(w_gum, w_ste)
    assert w_gum.std(0).mean().item() > 0.5  # random assignments would have collapsed the codes to ~ the mean
    # the decoder path does get drawn codes: at this temperature they are not the nearest ones
    assert not torch.equal(f_gum.quantized, f_ste.quantized)


# ---------------------------------------------------------------------------------------------- Gumbel gradient route
def gumbel_noise(shape, dtype=torch.float64) -> torch.Tensor:
    u = torch.rand(*shape, dtype=dtype).clamp_(1e-10, 1.0 - 1e-7)
    return -(-u.log()).log()


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_gumbel_step_gradient_is_the_relaxation_gradient_only(ema_decay):
    torch.manual_seed(9)
    temperature = 0.7
    q = ProgressiveQuantizer(2, map_size=2, steps=1, codebook_size=8, spatial_dim=4, channel_dim=2, init="random",
                             temperature=temperature, ema_decay=ema_decay).double()
    w = q.codebook.weight if ema_decay is None else q.codebook.weight.clone()
    e = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise((16, 8))
    g = torch.randn(16, 8, dtype=torch.float64)
    out, _, _, _ = q.quantize_step(e, w, w.pow(2).sum(1), noise, track_grad=True)
    # reference: the Gumbel-softmax relaxation written by hand on -|e - w|^2 / temperature with the same noise
    e_ref = e.detach().clone().requires_grad_()
    w_ref = w.detach().clone().requires_grad_()
    logits = -(e_ref[:, None, :] - w_ref[None]).pow(2).sum(-1) / temperature
    relaxed = (logits + noise).softmax(-1) @ w_ref
    # forward: exactly the drawn code
    assert torch.equal(out, w.detach()[(logits + noise).argmax(-1)])
    (out * g).sum().backward()
    (relaxed * g).sum().backward()
    torch.testing.assert_close(e.grad, e_ref.grad, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(e.grad, e_ref.grad + g), "no straight-through identity on top of the relaxation"
    if ema_decay is None:  # learned codes get the relaxation's gradient too
        torch.testing.assert_close(q.codebook.weight.grad, w_ref.grad, rtol=1e-9, atol=1e-12)


def test_gumbel_forward_gradient_follows_the_relaxation_through_the_residual_chain():
    """The whole training forward (2 steps, so step 2's input depends on step 1's output) against a residual loop
    written with the hand-made relaxation and the same Gumbel noise."""
    torch.manual_seed(10)
    q = ProgressiveQuantizer(2, map_size=2, steps=2, codebook_size=8, spatial_dim=4, channel_dim=2, init="random",
                             dead_threshold=0.0).double().train()
    z = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    w = q.codebook.weight.clone()  # before this forward's EMA update
    torch.manual_seed(11)
    out = q(z)
    (out.quantized * g).sum().backward()
    torch.manual_seed(11)
    n = 3 * 4  # B * G rows
    noise = gumbel_noise((2, n, 8))
    z_ref = z.detach().clone().requires_grad_()
    x = q.partition(z_ref)
    pinvs = q.pseudo_inverses()
    residual, total = x, 0.0
    for step in range(2):
        e = q.transform(residual, step).reshape(n, -1)
        logits = -(e[:, None, :] - w[None]).pow(2).sum(-1) + noise[step]
        relaxed = logits.softmax(-1) @ w
        hard = w[logits.detach().argmax(-1)]
        e_hat = (hard + relaxed - relaxed.detach()).view(3, 4, -1)
        part = q.inverse(e_hat, step, pinvs)
        residual, total = residual - part, total + part
    ref = q.merge(total, 4, 4)
    torch.testing.assert_close(out.quantized, ref, rtol=1e-9, atol=1e-10)
    (ref * g).sum().backward()
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------- loss scale, output
def test_recon_reduction_sum_is_mean_times_pixels_and_channels():
    torch.manual_seed(12)
    mean = small_model(in_channels=2)
    summed = small_model(in_channels=2, recon_reduction="sum")
    summed.load_state_dict(mean.state_dict())
    x = torch.rand(4, 2, 16, 16)
    mean.eval()
    summed.eval()
    a, b = mean(x), summed(x)  # the same forward: eval mode, nearest codes, no update
    chw = 2 * 16 * 16
    assert torch.equal(a.recon, b.recon) and torch.equal(a.losses["recon"], b.losses["recon"])
    # loss = recon term + beta * commitment + lambda_h * entropy; only the recon term is rescaled
    other = a.loss - a.losses["recon"]
    torch.testing.assert_close(b.loss - other, a.losses["recon"] * chw, rtol=1e-5, atol=1e-6)
    ref = ((b.recon - x) ** 2).sum() / 4
    torch.testing.assert_close(b.loss - other, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="recon_reduction"):
        small_model(recon_reduction="max")


def test_pqvae_tanh_output_stays_in_range():
    torch.manual_seed(13)
    model = small_model(output="tanh")
    with torch.no_grad():
        model.decoder.net[-1].weight.mul_(100.0)  # drive the decoder far outside [-1, 1]
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        recon = model(x).recon
        assert recon.min() >= 0.0 and recon.max() <= 1.0
        assert torch.equal(model.decode(model.encode(x)), recon)
    assert small_model().config.output == "linear"
    with pytest.raises(ValueError, match="output"):
        small_model(output="sigmoid")


def test_the_flat_quantizer_keys_of_older_configs_still_work(tmp_path):
    """``model.quantizer.estimator`` is the spelling for every family; PQ-VAE's flat ``model.estimator`` (and the
    other quantizer keys it had at the top of the model section) is still read with a DeprecationWarning from a
    YAML config and a saved run's config.json (not by the config class itself), and gives the same model (and
    codec id) as the new one."""
    import json

    from hiervq.models.pqvae import QUANTIZER_KEYS
    from hiervq.pretrained import load, parse_config, save_pretrained
    from hiervq.schema import with_old_keys as _id_config
    from hiervq.train.config import config_from_dict

    base = dict(image_size=16, in_channels=1, channels=16, blocks=1, res_channels=8, downsample=2, latent_channels=8,
                map_size=4, steps=6, codebook_size=16, spatial_dim=4, channel_dim=2)
    old = {**base, "estimator": "ste", "temperature": 0.5, "beta": 0.3, "entropy_weight": 0.02, "ema_decay": None,
           "init": "random", "kmeans_iters": 3, "dead_threshold": 0.0, "dead_window": 4}
    new = {**base, "quantizer": {k: old[k] for k in QUANTIZER_KEYS}}
    with pytest.warns(DeprecationWarning, match="quantizer.estimator"):
        from_old = parse_config("pqvae", old, "old.yaml: model")
    assert from_old == parse_config("pqvae", new, "new.yaml: model")
    assert from_old.quantizer.estimator == "ste" and from_old.quantizer.ema_decay is None
    with pytest.raises(TypeError):  # the class takes the new spelling only
        PQVAEConfig(**old)
    with pytest.raises(ConfigError, match="give 'quantizer.estimator' only"):
        parse_config("pqvae", {**old, "quantizer": {"estimator": "gumbel"}}, "both.yaml: model")
    with pytest.warns(DeprecationWarning):
        run = config_from_dict({"model": {"name": "pqvae", **old}}, "old-run/config.yaml")
    assert run.model_config == from_old
    assert _id_config(from_old) == {**base, **{k: old[k] for k in old if k not in base}, "output": "linear", "block": "res",
                                    "recon_reduction": "mean"}  # the codec's id of a model does not change

    # a saved run written before the move (config.json with the flat keys) still loads, with the same weights
    torch.manual_seed(0)
    model = PQVAE(from_old)
    save_pretrained(model, tmp_path / "model")
    meta_path = tmp_path / "model" / "config.json"
    meta = json.loads(meta_path.read_text())
    section = meta["config"]
    quantizer = section.pop("quantizer")
    section.update({k: quantizer[k] for k in QUANTIZER_KEYS})  # the old spelling
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(DeprecationWarning):
        loaded = load(tmp_path / "model")
    assert loaded.config == from_old
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


# ---------------------------------------------------------------------------------------------- fast chain (issue 29)
@pytest.mark.parametrize("estimator", ["gumbel", "ste"])
@pytest.mark.parametrize("ema_decay", [0.99, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_fast_chain_equals_the_autograd_reference(estimator, ema_decay, temperature):
    """The fast chain (one buffer, hand-written backward) against the per-step autograd chain it replaced, on a
    fixed seeded batch in float64: the same codes, outputs, losses, gradients (input, transforms, learned codes)
    and codebook update."""
    import copy

    torch.manual_seed(0)
    q0 = ProgressiveQuantizer(16, map_size=4, steps=12, codebook_size=32, spatial_dim=8, channel_dim=4,
                              estimator=estimator, temperature=temperature, entropy_weight=0.05, ema_decay=ema_decay,
                              init="random", dead_threshold=0.0).double().train()
    z0 = torch.randn(5, 16, 8, 8, dtype=torch.float64)
    g = torch.randn(5, 16, 8, 8, dtype=torch.float64)

    def run(fast):
        q = copy.deepcopy(q0)
        q.fast_chain = fast
        z = z0.clone().requires_grad_()
        torch.manual_seed(3)  # the same Gumbel noise
        r = q(z)
        loss = r.loss + (r.quantized * g).sum()
        loss.backward()
        return q, r, loss, z.grad, {n: p.grad for n, p in q.named_parameters() if p.grad is not None}

    qa, ra, la, gza, ga = run(False)
    qb, rb, lb, gzb, gb = run(True)
    assert torch.equal(ra.indices, rb.indices)
    torch.testing.assert_close(rb.quantized, ra.quantized, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lb, la, rtol=1e-10, atol=1e-12)
    for key in ra.losses:
        torch.testing.assert_close(rb.losses[key], ra.losses[key], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gzb, gza, rtol=1e-8, atol=1e-10)
    assert ga.keys() == gb.keys() and {"spatial", "channel"} <= ga.keys()
    assert ("codebook.weight" in ga) == (ema_decay is None)
    for key in ga:
        torch.testing.assert_close(gb[key], ga[key], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(qb.codebook.weight, qa.codebook.weight)
    qa.eval(), qb.eval()
    with torch.no_grad():
        assert torch.equal(qa.encode(z0), qb.encode(z0))
        ca, ea = qa.encode(z0, with_entropy=True)
        cb, eb = qb.encode(z0, with_entropy=True)
        torch.testing.assert_close(eb, ea)


def test_fast_chain_float32_model_step_matches_the_reference():
    """A float32 PQ-VAE training step on a fixed seeded batch: the same codes, the loss and the gradients within
    float rounding."""
    import copy

    torch.manual_seed(0)
    model = PQVAE(PQVAEConfig(in_channels=1, image_size=32, channels=16, res_channels=8, blocks=1, latent_channels=16,
                              steps=16, codebook_size=32, quantizer={"entropy_weight": 0.01, "init": "random"}))
    x = torch.rand(4, 1, 32, 32)
    runs = []
    for fast in (False, True):
        m = copy.deepcopy(model).train()
        m.quantizer.fast_chain = fast
        torch.manual_seed(5)
        out = m(x)
        out.loss.backward()
        runs.append((out, {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = runs
    assert torch.equal(a.codes[0], b.codes[0])
    torch.testing.assert_close(b.loss, a.loss, rtol=1e-5, atol=1e-6)
    assert ga.keys() == gb.keys()
    for key in ga:
        torch.testing.assert_close(gb[key], ga[key], rtol=1e-3, atol=1e-5)
