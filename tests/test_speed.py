"""Training speed work (issue 19): the reference widths, channels-last layout, sync-free statistics, evaluation
reuse, float32 quantization under bf16 autocast and the throughput benchmark. Every speed-up must leave the
results as they were (up to float rounding where the memory layout changes the order of sums)."""

import copy
import importlib.util
import json

import pytest
import torch

from hiervq.data import DataSplits, ImageSet
from hiervq.models import HierarchicalConfig, HierarchicalVQVAE, LevelConfig, QuantizerConfig
from hiervq.nn import Standardize
from hiervq.quantize import VectorQuantizer
from hiervq.train import TrainConfig, Trainer

from .conftest import REPO


def small(channels_last: bool, widths: str = "hiervq", in_channels: int = 3, size: int = 16) -> HierarchicalVQVAE:
    torch.manual_seed(0)
    return HierarchicalVQVAE(HierarchicalConfig(
        image_size=size, in_channels=in_channels, channels=16, blocks=1, res_channels=8, widths=widths,
        channels_last=channels_last, levels=[LevelConfig(2, 32, 8), LevelConfig(2, 16, 8)],
        quantizer=QuantizerConfig(init="random", dead_threshold=0),
    ))


def test_vqvae2_widths_have_the_reference_parameter_count():
    """At the VQ-VAE-2 reference settings the default widths (vqvae2) are the reference's; hiervq's (the default
    before 0.2, pinned by the shipped recipes) hold 340,096 more parameters (24 %): a full-width
    top encoder downsampling conv and 3x3 conv, and a conditioning decoder that outputs 128 channels instead of 64
    (and the wider bottom quantizer input that follows)."""
    def count(widths):
        return HierarchicalVQVAE(HierarchicalConfig(image_size=32, widths=widths)).num_parameters()

    assert count("vqvae2") == 1_388_867  # the reference implementation's count (benchmarks/train_throughput.py)
    assert HierarchicalVQVAE(HierarchicalConfig(image_size=32)).num_parameters() == 1_388_867  # the default
    assert count("hiervq") == 1_728_963
    model = HierarchicalVQVAE(HierarchicalConfig(image_size=32, widths="vqvae2"))
    assert model.encoders[1].net[0].out_channels == 64 and model.cond_decoders[0].net[-1].out_channels == 64
    assert model.pre_quant[0].in_channels == 128 + 64
    with pytest.raises(ValueError, match="widths"):
        HierarchicalConfig(widths="wide").validate()


def test_saved_models_from_before_the_new_defaults_load_as_they_were_trained(tmp_path):
    """A config.json written before widths / channels_last were listed (their old defaults: hiervq, the usual
    layout) loads as that model, not as today's defaults, and gives the outputs it gave; one that lists them keeps
    them; the stacked models' stages keep the published widths."""
    from hiervq.models import StageConfig
    from hiervq.pretrained import load, save_pretrained

    torch.manual_seed(0)
    old = small(False, "hiervq")
    save_pretrained(old, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["widths"], meta["config"]["channels_last"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    loaded = load(tmp_path / "old")
    assert (loaded.config.widths, loaded.config.channels_last) == ("hiervq", False)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x)), old.eval().decode(old.encode(x)))
    save_pretrained(small(True, "vqvae2"), tmp_path / "new")
    listed = load(tmp_path / "new").config
    assert (listed.widths, listed.channels_last) == ("vqvae2", True)
    stage = StageConfig().hierarchical([32, 32], 3, False)
    assert (stage.widths, stage.channels_last) == ("hiervq", False)


@pytest.mark.parametrize("widths", ["hiervq", "vqvae2"])
def test_channels_last_gives_the_results_of_the_default_layout(widths):
    """Same weights, same batch: the channels-last model computes the same codes, loss, reconstruction and
    gradients as the contiguous one (up to float rounding), and hands out reconstructions in the usual layout."""
    a, b = small(False, widths), small(True, widths)
    b.load_state_dict(a.state_dict())
    assert b.encoders[0].net[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 16, 16)
    a.train(), b.train()
    out_a, out_b = a(x), b(x)
    out_a.loss.backward(), out_b.loss.backward()
    assert out_b.recon.is_contiguous()
    for ca, cb in zip(out_a.codes, out_b.codes):
        assert torch.equal(ca, cb)
    torch.testing.assert_close(out_b.recon, out_a.recon, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_b.loss, out_a.loss, rtol=1e-5, atol=1e-6)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-5, msg=name)
    for ba, bb in zip(a.buffers(), b.buffers()):  # the EMA codebooks moved alike
        torch.testing.assert_close(bb, ba, rtol=1e-5, atol=1e-6)
    a.eval(), b.eval()
    with torch.no_grad():
        codes = b.encode(x)
        assert torch.equal(b.decode(codes), b(x).recon)
        torch.testing.assert_close(b.decode(codes), a.decode(codes), rtol=1e-5, atol=1e-5)


def test_quantizer_output_keeps_the_input_layout():
    vq = VectorQuantizer(8, 16, init="random", dead_threshold=0)
    twin = copy.deepcopy(vq)  # training mode: each call moves its codebook once
    z = torch.randn(2, 8, 4, 4)
    plain, last = vq(z), twin(z.contiguous(memory_format=torch.channels_last))
    assert plain.quantized.is_contiguous()
    assert last.quantized.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain.quantized, last.quantized) and torch.equal(plain.indices, last.indices)


def test_standardize_is_the_identity_until_updated_and_then_exact():
    """The sync-free Standardize: the identity before any update (bit for bit), the exact pooled statistics after."""
    s = Standardize(3)
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    s.eval()
    assert torch.equal(s(x), x) and torch.equal(s.inverse(x), x)
    s.train()
    batches = [x, x * 2 + 1, x[:1] - 4]
    for batch in batches:
        s(batch)
    pooled = torch.cat(batches).double().transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(s.mean, pooled.mean(1))
    torch.testing.assert_close(s.var, pooled.var(1, unbiased=False))
    assert float(s.count) == pooled.shape[1]
    torch.testing.assert_close(s.inverse(s(x)), x)


def _trainer_and_data(n=24):
    torch.manual_seed(0)
    images = (torch.rand(n, 3, 16, 16) * 255).to(torch.uint8)
    config = TrainConfig(epochs=1, batch_size=8, eval_batch_size=8, progress=False, device="cpu")
    return Trainer(config), ImageSet(images)


def test_final_evaluation_reuses_the_last_pass_only_when_nothing_changed():
    trainer, data = _trainer_and_data()
    model = small(True)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    first = trainer.evaluate(model, data)
    assert len(calls) == 3  # 24 images, batches of 8
    again = trainer.evaluate(model, data, with_counts=True, reuse=True)
    assert len(calls) == 3, "nothing changed: the last pass is reused"
    assert {k: v for k, v in again.items() if k != "counts"} == first
    assert sum(float(c.sum()) for c in again["counts"]) == 24 * (8 * 8 + 4 * 4)
    fresh = trainer.evaluate(model, data, with_counts=True)  # reuse is asked for, not the default
    assert len(calls) == 6 and fresh["mse"] == first["mse"]
    with torch.no_grad():
        model.decoder.net[0].weight.mul_(1.01)  # a write to one parameter
    changed = trainer.evaluate(model, data, reuse=True)
    assert len(calls) == 9 and changed["mse"] != first["mse"]
    trainer.evaluate(model, data, limit=16, reuse=True)  # other images
    assert len(calls) == 11
    other = small(True)
    other.load_state_dict(model.state_dict())
    other.register_forward_hook(lambda *args: calls.append(1))
    trainer.evaluate(other, data, limit=16, reuse=True)  # another model, even with the same weights
    assert len(calls) == 13


def test_evaluation_results_are_ordinary_tensors():
    """Evaluation runs under inference_mode; what it returns can still be changed in place and used by autograd."""
    trainer, data = _trainer_and_data()
    result = trainer.evaluate(small(True), data, with_counts=True, per_image=True)
    result["counts"][0].add_(1)
    result["mse_per_image"].mul_(2)
    assert not result["counts"][0].is_inference() and not result["mse_per_image"].is_inference()


def test_a_training_step_logs_what_float_of_each_value_gives():
    """The step's numbers are read in one transfer: they must equal float()/int() of each tensor."""
    from hiervq.train.trainer import AutoencoderTask

    trainer, data = _trainer_and_data()
    model = small(True)
    task = AutoencoderTask(trainer, model, DataSplits(train=data, test=data))
    task.parameters(task.phases()[0])
    task.train_mode()
    seen = {}
    model.register_forward_hook(lambda m, args, out: seen.update(out=out))
    loss, values = task.loss(data.batch(torch.arange(8)))
    out = seen["out"]
    assert values["loss"] == float(out.loss.detach()) and values["commitment"] == float(out.losses["commitment"])
    assert list(values) == ["loss", "psnr", *out.losses]
    assert task._ppl_sums == [float(st["perplexity"]) for st in out.stats]
    assert task._resets == [int(st["resets"]) for st in out.stats]


def test_bf16_autocast_quantizes_in_float32():
    """Under bf16 autocast (train.amp) the nearest-code search, EMA and losses run in float32: the same codes and
    codebook update as without autocast for the same float32 features."""
    torch.manual_seed(0)
    plain = VectorQuantizer(16, 64, init="random", dead_threshold=0)
    mixed = copy.deepcopy(plain)
    z = torch.randn(4, 16, 8, 8)
    a = plain(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = mixed(z)
        codes = mixed.encode(z)
    assert b.quantized.dtype == torch.float32 and torch.equal(a.indices, b.indices)
    assert torch.equal(codes, plain.encode(z))  # with the codebooks both moved once
    torch.testing.assert_close(mixed.codebook.weight, plain.codebook.weight, rtol=0, atol=0)
    assert float(b.loss) == float(a.loss)


@pytest.mark.slow
def test_compiled_training_forward_gives_the_eager_results():
    """train.compile: the conv stacks' training forward is compiled; two training steps give the eager steps'
    losses and weights (up to float rounding); evaluation stays eager (no recompilation for its batch size)."""
    from hiervq.nn import compile_stacks

    eager, compiled = small(True), small(True)
    compiled.load_state_dict(eager.state_dict())
    assert compile_stacks(compiled) == 5 and compile_stacks(compiled) == 0  # 2 encoders, 2 decoders, 1 upsampler
    assert list(compiled.state_dict()) == list(eager.state_dict())
    from torch._dynamo import config as dynamo_config

    assert dynamo_config.recompile_limit >= 64  # every stack layout and shape fits (they share Sequential.forward)
    optimizers = [torch.optim.Adam(m.parameters(), 1e-3) for m in (eager, compiled)]
    torch.manual_seed(1)
    batches = [torch.rand(4, 3, 16, 16) for _ in range(2)]
    for x in batches:
        losses = []
        for model, opt in zip((eager, compiled), optimizers):
            opt.zero_grad()
            out = model(x)
            out.loss.backward()
            opt.step()
            losses.append(out.loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for pa, pb in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)
    twin = copy.deepcopy(compiled)  # a copy trains on its own weights
    twin.train()
    twin(batches[0]).loss.backward()
    assert twin.decoder.net[0].weight.grad is not None and compiled.decoder.net[0].weight.grad is not twin.decoder.net[0].weight.grad
    compiled.eval()
    with torch.no_grad():
        assert compiled(torch.rand(3, 3, 16, 16)).recon.shape == (3, 3, 16, 16)


def test_train_compile_is_a_config_switch(tmp_path, tiny_run_config, monkeypatch):
    """train.compile calls compile_stacks on the model once, before the first step (compilation mocked here)."""
    import hiervq.train.trainer
    from hiervq.train import config_from_dict, train_run

    seen = []
    monkeypatch.setattr(hiervq.train.trainer, "compile_stacks", lambda model: seen.append(type(model).__name__) or 0)
    tiny_run_config["train"].update(compile=True, epochs=1)
    train_run(config_from_dict(tiny_run_config), tmp_path / "run")
    assert seen == ["HierarchicalVQVAE"]


def test_train_throughput_benchmark_runs_and_matches_the_reference_size():
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    images = (torch.rand(16, 3, 32, 32) * 255).to(torch.uint8)
    ref = bench.RefVQVAE2()
    ours = HierarchicalVQVAE(bench.hiervq_config(32))
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters()) == 1_388_867
    # the same layers: our modules' parameter shapes are the reference's, up to order
    shapes = sorted(tuple(p.shape) for p in ref.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ours.parameters())
    record = bench.run_case(32, 4, warmup=0, steps=1, images=images)
    assert set(record) >= {"size", "batch", "threads", "hiervq_img_s", "reference_img_s", "hiervq_params",
                           "reference_params"}
    assert record["hiervq_params"] == record["reference_params"] and record["hiervq_img_s"] > 0
    assert record["hiervq_defaults_params"] == 1_388_867 and record["hiervq_defaults_img_s"] > 0
    assert bench.ratios(record)["defaults_ratio"] == record["hiervq_defaults_img_s"] / record["reference_img_s"]
    # the ratios the docs quote are written into the record (a full run and --summarize share bench.ratios)
    ratios = bench.ratios({**record, "hiervq_bf16_img_s": 2 * record["hiervq_img_s"]})
    assert ratios["ratio"] == record["hiervq_img_s"] / record["reference_img_s"]
    assert ratios["cpu_ratio"] == record["hiervq_cpu_img_s"] / record["reference_cpu_img_s"]
    assert ratios["bf16_vs_float32"] == 2 and ratios["hiervq_bf16_ratio"] == 2 * ratios["ratio"]
    assert "hiervq_compiled_ratio" not in ratios and "bf16_vs_float32" not in bench.ratios(record)
    ablation = bench.run_ablation(32, 4, warmup=0, steps=1, images=images)
    assert set(ablation["img_s"]) == {*bench.ABLATION, "reference"}
    derived = bench.ablation_ratios(ablation)  # what a full --ablation run and --summarize --ablation write
    wall = ablation["img_s"]
    assert derived["ratio"]["reference"] == 1.0 and derived["ratio"]["hiervq"] == wall["hiervq"] / wall["reference"]
    assert derived["cpu_ratio"]["hiervq"] == ablation["cpu_img_s"]["hiervq"] / ablation["cpu_img_s"]["reference"]
    assert set(derived["gain"]) == set(bench.ABLATION) - {"hiervq"}
    assert derived["gain"]["no channels_last"] == wall["hiervq"] / wall["no channels_last"] - 1
    assert bench.hiervq_config(32).channels_last, "the ablation restores the benchmark's config"
    profile = bench.run_profile(32, 4, warmup=0, steps=1, images=images)
    assert set(profile["ms_per_step"]) == {"hiervq", "hiervq before", "reference"}
    assert all(cats.get("conv backward", 0) > 0 for cats in profile["ms_per_step"].values())


def test_train_throughput_defaults_side_and_scaling_mode():
    """The defaults side is the benchmark's model with widths and channels_last at the library's defaults, which
    are now the benchmark's own settings (the reference's widths, channels-last); --scale builds the large-image
    recipe at 64 px (its data.image_size of 256 overridden), times it against the reference and measures a step's
    peak memory."""
    import dataclasses

    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    matched, defaults = dataclasses.asdict(bench.hiervq_config(32)), dataclasses.asdict(bench.defaults_config(32))
    default = HierarchicalConfig()
    assert (defaults["widths"], defaults["channels_last"]) == (default.widths, default.channels_last)
    assert defaults == matched  # what a user who sets nothing gets is the fastest measured model
    assert HierarchicalVQVAE(bench.defaults_config(32)).num_parameters() == 1_388_867
    assert "defaults_ratio" not in bench.ratios({"hiervq_img_s": 2, "reference_img_s": 1, "hiervq_cpu_img_s": 2,
                                                 "reference_cpu_img_s": 1})  # --summarize on an older JSON

    model, train = bench.recipe_model(64, 2)
    assert [info.grid for info in model.levels] == [(8, 8), (4, 4), (2, 2)]
    assert (train.batch_size, train.device, train.lr, train.grad_clip) == (2, "cpu", 1e-3, 1.0)
    torch.manual_seed(0)
    images = (torch.rand(4, 3, 64, 64) * 255).to(torch.uint8)
    record = bench.run_scale(64, 2, warmup=0, steps=1, images=images, memory=False)
    assert record["hiervq_code_grids"] == [[8, 8], [4, 4], [2, 2]] and record["reference_code_grids"] == [[16, 16], [8, 8]]
    assert record["ratio"] == record["hiervq_img_s"] / record["reference_img_s"]
    assert record["hiervq_epoch_s"] == pytest.approx(bench.EPOCH_IMAGES / record["hiervq_img_s"], rel=1e-3)
    memory = bench.peak_memory("reference", 32, 2, 1)  # in this process: the probe's arithmetic
    assert memory["peak_mb"] >= memory["built_mb"] > 0
    assert memory["mb_per_image"] == pytest.approx((memory["peak_mb"] - memory["built_mb"]) / 2, abs=0.1)


def test_bf16_paired_summary_keys_follow_from_its_runs():
    """bf16_paired.py's summary (written after every run and by --summarize): mean/std of rel_mse, mean speed-up,
    and the float32 seed spread the docs quote."""
    spec = importlib.util.spec_from_file_location("bf16_paired", REPO / "benchmarks" / "bf16_paired.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = [{"seed": i, "float32": {"mse": m}, "rel_mse": r, "speedup": v}
            for i, (m, r, v) in enumerate([(0.004, 0.01, 1.0), (0.005, 0.03, 2.0), (0.0045, 0.02, 3.0)])]
    out = bench.summarize({"runs": runs})
    assert out["rel_mse_mean"] == pytest.approx(0.02) and out["rel_mse_std"] == pytest.approx(0.01)
    assert out["speedup_mean"] == pytest.approx(2.0) and out["float32_mse_spread"] == pytest.approx(0.25)
    committed = json.loads((REPO / "benchmarks" / "results" / "bf16_paired.json").read_text())
    assert bench.summarize(json.loads(json.dumps(committed))) == committed  # the committed summary is its runs'


def test_committed_throughput_ratios_are_their_records_quotients():
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    records = [record for name in ("train_throughput.json", "train_throughput_idle.json")
               for record in json.loads((REPO / "benchmarks" / "results" / name).read_text())]
    for record in records:
        ratios = bench.ratios(record)
        assert {k: record[k] for k in ratios} == ratios
    for record in json.loads((REPO / "benchmarks" / "results" / "train_throughput_ablation.json").read_text()):
        derived = bench.ablation_ratios(record)
        assert {k: record[k] for k in derived} == derived


def test_committed_profile_and_layer_summaries_follow_from_their_records():
    """train_profile.json's totals, shares, multiply-adds and GFLOP/s and train_layers.json's ratios and totals
    (written by a full --profile/--layers run and by --summarize --profile/--layers) are their records'."""
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    conv = torch.nn.Conv2d(3, 8, 4, 2, 1)
    assert bench.conv_macs(torch.nn.Sequential(conv, torch.nn.ConvTranspose2d(8, 2, 4, 2, 1)), 8) == \
        8 * 4 * 4 * 3 * 16 + 8 * 4 * 4 * 2 * 16
    for record in json.loads((REPO / "benchmarks" / "results" / "train_profile.json").read_text()):
        assert record["macs_per_image"] == bench.model_macs(record["size"])
        derived = bench.profile_summary(record, record["macs_per_image"])
        assert {k: record[k] for k in derived} == derived
        assert derived["total_ms"]["hiervq"] == pytest.approx(sum(record["ms_per_step"]["hiervq"].values()))
    for record in json.loads((REPO / "benchmarks" / "results" / "train_layers.json").read_text()):
        derived = bench.layers_summary(record)
        assert {k: record[k] for k in derived} == derived


def test_time_to_quality_summary_follows_from_its_curves(monkeypatch):
    """time_to_quality.py's summary keys (written by a run and by --summarize): the committed ones are its curves'."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("time_to_quality", REPO / "benchmarks" / "time_to_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    toy = {"hiervq": {"curve": [[0.0, 0.9], [60.0, 0.25], [120.0, 0.1]]}, "reference": {"curve": [[0.0, 1.0], [60.0, 0.5]]}}
    assert bench.summarize(toy) == {"reference_final_mse": 0.5, "hiervq_passes_reference_final_s": 60.0,
                                    "reference_final_over_hiervq_at_pass": 2.0, "reference_final_over_hiervq_final": 5.0}
    committed = json.loads((REPO / "benchmarks" / "results" / "time_to_quality.json").read_text())
    derived = bench.summarize(committed)
    assert {k: committed[k] for k in derived} == derived
