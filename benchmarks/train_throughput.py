"""Training throughput: hiervq's HierarchicalVQVAE against a plain PyTorch VQ-VAE-2 (the reference layout).

The reference is the architecture of the VQ-VAE-2 implementation most PyTorch users compare with
(rosinality/vq-vae-2-pytorch, as published), written here for the benchmark: 3 -> 128 channels, 2 residual blocks
of 32 channels, a bottom level at /4 and a top level at /2 of it, code dim 64, K = 512 per level, EMA codebooks
(decay 0.99), the bottom quantized conditioned on the decoded top, the loss MSE + 0.25 x commitment, Adam at 3e-4.
Its quantizer is the reference's: a full N x K distance matrix, ``max`` over it, an N x K one-hot matrix whose
column sums and ``rows^T @ one_hot`` product feed the EMA, a straight-through ``x + (q - x).detach()``.

hiervq's side is the library's own training step (``Trainer.train_step`` of an ``AutoencoderTask``: batch
preparation from uint8 images, the model's forward, the per-batch values the trainer logs, backward, the
divergence check, Adam), with the model configured to match (:func:`hiervq_config`): ``widths: vqvae2`` (the
reference's channel widths, so both have exactly the same layers and parameter count), random codebook init and
no dead-code reset (the reference has neither), ``beta`` 0.0625 (our reconstruction MSE is measured on [0, 1]
images, the reference's on [-1, 1], i.e. 4x ours: 0.0625 makes our loss exactly the reference's / 4, which
Adam's update does not see), no gradient clipping and a constant learning rate, as the reference trains.

Timing: both models train in one process on the same CIFAR-10 images (resized to 64x64 for the 64 case;
random images if ``--data`` is missing), one step of each in turn (the order swapped every step so that
neither always follows the other), ``--warmup`` untimed rounds first, then ``--steps`` timed rounds; a side's
images/s is the batch size over its median wall-clock step time. Machine load hits both sides alike; the ratio is
the number to read, the absolute images/s depend on the load. The same steps are also timed by the process's
CPU time (``*_cpu_img_s``), which time spent waiting for a busy core does not stretch.

Writes ``benchmarks/results/train_throughput.json``: a list of records ``{"size", "batch", "threads",
"hiervq_img_s", "reference_img_s", "hiervq_params", "reference_params"}`` (one per size), plus
``hiervq_cpu_img_s``/``reference_cpu_img_s``, ``steps``, ``warmup`` and the load average when the case
finished, and ``hiervq_defaults_img_s``/``hiervq_defaults_params``: our float32 step with the model a user gets
from the reference's architecture keys alone (:func:`defaults_config`: ``widths`` and ``channels_last`` left at
the library's defaults; since 0.2 those are the benchmark's own ``vqvae2`` and channels-last, so this side times
the same model as ``hiervq``, built and stepped separately; before, it had our older widths with +24 %
parameters and the NCHW layout), alternated with the others;
with ``--amp`` also ``hiervq_bf16_img_s`` (our step under ``train.amp``, bf16 autocast), with
``--compile`` ``hiervq_compiled_img_s`` (``train.compile``) and ``compile_s``, both alternated with the others.
Each record also holds the speed ratios the docs quote (:func:`ratios`): ``ratio`` and ``cpu_ratio`` (hiervq /
reference, by wall clock and by CPU time), ``hiervq_bf16_ratio`` and ``hiervq_compiled_ratio`` (against the
reference's float32 step), ``bf16_vs_float32`` (our bf16 step against our float32 step) and ``defaults_ratio``
(the defaults side against the reference); ``--summarize`` adds them to an existing JSON without timing anything.
``--scale`` instead times the hierarchical recipe shipped for large images (``configs/hvqvae3-256.yaml``: its
model built at each size, its ``train`` section's optimiser, schedule and clipping) against the reference at the
same size (fully convolutional: the same layers, code maps at /4 and /8) for 64, 128 and 256 px with batch sizes
64:32, 128:8, 256:2 (``--cases size:batch[:steps]``), alternated as above, into
``benchmarks/results/train_scaling.json``: images/s, seconds per epoch of 50,000 images (derived from images/s),
the ratio, and the peak memory of a training step per image of each side, measured in a fresh subprocess per
(side, size) (:func:`peak_memory`; the JSON's ``memory_method`` says how).
``--ablation`` instead times our step with each optimisation of it turned off in turn (channels-last layout,
in-place inner ReLU, quantizer output kept channels-last, all three; and our default widths) against the
reference, into ``benchmarks/results/train_throughput_ablation.json``, with the ratios the docs quote
(:func:`ablation_ratios`): ``ratio`` and ``cpu_ratio`` ({variant: its images/s / the reference's}, by wall clock
and by CPU time) and ``gain`` ({variant: our step's images/s / the variant's - 1}, what turning that optimisation
off costs); ``--summarize --ablation`` adds them to an existing ablation JSON. ``--profile`` runs torch.profiler over
interleaved steps of our step, our step before the optimisations and the reference, and writes the time per
category (convolutions, ReLUs, quantizer, optimiser, ...) to ``benchmarks/results/train_profile.json``, with the
models' multiply-adds per image (``macs_per_image``, :func:`model_macs`) and the totals, shares and convolution
GFLOP/s the docs quote (:func:`profile_summary`). ``--layers`` times forward + backward of each distinct
convolution of our model in the default layout and channels-last (median process CPU time) into
``benchmarks/results/train_layers.json``, with each row's ratio and the totals (:func:`layers_summary`).
``--summarize --profile`` and ``--summarize --layers`` add those keys to the existing JSONs without timing anything.

    python benchmarks/train_throughput.py --amp --compile --threads 1,2    # both sizes at 1 and 2 threads (the JSON)
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --scale --warmup 5 --steps 20    # train_scaling.json
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --ablation --warmup 5 --steps 20
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --profile --warmup 3 --steps 6
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --layers --warmup 2 --steps 10
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --cases 32:128 --warmup 3 --steps 5 --out /tmp/t.json
    python benchmarks/train_throughput.py --summarize    # add the ratios to the existing JSON
    python benchmarks/train_throughput.py --summarize --ablation    # the same for the ablation JSON
    python benchmarks/train_throughput.py --summarize --profile    # (--layers) the same for the profile (per-layer) JSON
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"
ABLATION_RESULTS = ROOT / "benchmarks" / "results" / "train_throughput_ablation.json"
PROFILE_RESULTS = ROOT / "benchmarks" / "results" / "train_profile.json"
LAYER_RESULTS = ROOT / "benchmarks" / "results" / "train_layers.json"
SCRIPT = "benchmarks/train_throughput.py"  # named in every record it writes
DATA = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10.npz"
CASES = ((32, 128), (64, 64))  # (image size, batch size)
SCALE_RESULTS = ROOT / "benchmarks" / "results" / "train_scaling.json"
RECIPE = ROOT / "configs" / "hvqvae3-256.yaml"  # the hierarchical recipe shipped for large images
SCALE_CASES = ((64, 32), (128, 8), (256, 2))  # (image size, batch size) for --scale: what fits beside other jobs
EPOCH_IMAGES = 50_000  # the epoch --scale derives its seconds per epoch for
CHANNELS, BLOCKS, RES_CHANNELS, DIM, K, DECAY, BETA, LR = 128, 2, 32, 64, 512, 0.99, 0.25, 3e-4


# ---------------------------------------------------------------------------------------- the reference
class RefQuantize(nn.Module):
    """The reference's EMA vector quantizer on channel-last input (..., D): full distances, one-hot EMA."""

    def __init__(self, dim: int, codes: int, decay: float = DECAY, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.codes, self.decay, self.eps = dim, codes, decay, eps
        embed = torch.randn(dim, codes)
        self.register_buffer("embed", embed)  # (D, K)
        self.register_buffer("cluster_size", torch.ones(codes))  # as the reference: ones (zeros collapse the codebook)
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, self.dim)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed + self.embed.pow(2).sum(0, keepdim=True)
        _, index = (-dist).max(1)
        one_hot = F.one_hot(index, self.codes).type(flat.dtype)
        index = index.view(*x.shape[:-1])
        q = F.embedding(index, self.embed.transpose(0, 1))
        if self.training:
            with torch.no_grad():
                self.cluster_size.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(flat.transpose(0, 1) @ one_hot, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.codes * self.eps) * n
                self.embed.copy_(self.embed_avg / size.unsqueeze(0))
        diff = (q.detach() - x).pow(2).mean()
        q = x + (q - x).detach()
        return q, diff, index


class RefResBlock(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        out += x
        return out


def ref_encoder(cin: int, ch: int, stride: int) -> nn.Sequential:
    if stride == 4:
        layers = [nn.Conv2d(cin, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // 2, ch, 4, 2, 1),
                  nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1)]
    else:
        layers = [nn.Conv2d(cin, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // 2, ch, 3, padding=1)]
    layers += [RefResBlock(ch, RES_CHANNELS) for _ in range(BLOCKS)] + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def ref_decoder(cin: int, cout: int, ch: int, stride: int) -> nn.Sequential:
    layers = [nn.Conv2d(cin, ch, 3, padding=1)] + [RefResBlock(ch, RES_CHANNELS) for _ in range(BLOCKS)]
    layers.append(nn.ReLU(inplace=True))
    if stride == 4:
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.ConvTranspose2d(ch // 2, cout, 4, 2, 1)]
    else:
        layers.append(nn.ConvTranspose2d(ch, cout, 4, 2, 1))
    return nn.Sequential(*layers)


class RefVQVAE2(nn.Module):
    """The reference two-level VQ-VAE-2 on images in [-1, 1]: returns (reconstruction, summed commitment)."""

    def __init__(self, cin: int = 3, ch: int = CHANNELS, dim: int = DIM, codes: int = K) -> None:
        super().__init__()
        self.enc_b = ref_encoder(cin, ch, 4)
        self.enc_t = ref_encoder(ch, ch, 2)
        self.quantize_conv_t = nn.Conv2d(ch, dim, 1)
        self.quantize_t = RefQuantize(dim, codes)
        self.dec_t = ref_decoder(dim, dim, ch, 2)
        self.quantize_conv_b = nn.Conv2d(dim + ch, dim, 1)
        self.quantize_b = RefQuantize(dim, codes)
        self.upsample_t = nn.ConvTranspose2d(dim, dim, 4, 2, 1)
        self.dec = ref_decoder(dim + dim, cin, ch, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        quant_t, diff_t, _ = self.quantize_t(self.quantize_conv_t(enc_t).permute(0, 2, 3, 1))
        quant_t = quant_t.permute(0, 3, 1, 2)
        enc_b = torch.cat([self.dec_t(quant_t), enc_b], 1)
        quant_b, diff_b, _ = self.quantize_b(self.quantize_conv_b(enc_b).permute(0, 2, 3, 1))
        quant_b = quant_b.permute(0, 3, 1, 2)
        return self.dec(torch.cat([self.upsample_t(quant_t), quant_b], 1)), diff_t + diff_b


def reference_step(images: torch.Tensor, batch: int):
    """A closure running one training step of the reference (as its training script does) on the next batch."""
    model = RefVQVAE2(images.shape[1]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.randperm(len(images))
    state = {"at": 0, "mse": 0.0}

    def step() -> None:
        if state["at"] + batch > len(order):
            state["at"] = 0
        index = order[state["at"] : state["at"] + batch]
        state["at"] += batch
        x = images[index].float().div_(255.0).mul_(2.0).sub_(1.0)
        model.zero_grad()
        out, latent_loss = model(x)
        recon_loss = F.mse_loss(out, x)
        loss = recon_loss + BETA * latent_loss.mean()
        loss.backward()
        optimizer.step()
        state["mse"] += recon_loss.item() * x.shape[0]  # the reference logs the running MSE every step

    return model, step


# ---------------------------------------------------------------------------------------- hiervq
def hiervq_config(size: int, in_channels: int = 3):
    """Our HierarchicalVQVAE at the reference's settings (same layers, same quantizer, same loss up to a scale)."""
    from hiervq.models import HierarchicalConfig, LevelConfig, QuantizerConfig

    return HierarchicalConfig(
        image_size=size, in_channels=in_channels, channels=CHANNELS, blocks=BLOCKS, res_channels=RES_CHANNELS,
        block="res", mode="conditioned", widths="vqvae2", channels_last=True,
        levels=[LevelConfig(downsample=4, codebook_size=K, dim=DIM), LevelConfig(downsample=2, codebook_size=K, dim=DIM)],
        quantizer=QuantizerConfig(estimator="ste", beta=BETA / 4, ema_decay=DECAY, init="random", dead_threshold=0),
    )


def defaults_config(size: int, in_channels: int = 3):
    """The model a user gets from the reference's architecture keys alone: :func:`hiervq_config` with ``widths``
    and ``channels_last`` back at :class:`HierarchicalConfig`'s defaults (since 0.2 the reference's widths and
    channels-last, the benchmark's own settings; before, our wider widths, +24 % parameters, and NCHW), trained in
    float32. Everything else (layers, quantizer, loss, optimiser) is the benchmark's, so the two hiervq sides
    differ in at most these two keys."""
    from hiervq.models import HierarchicalConfig

    default = HierarchicalConfig()
    return _with(hiervq_config(size, in_channels), {"widths": default.widths, "channels_last": default.channels_last})


def alternate(sides: dict[str, Callable[[], object]], warmup: int, steps: int
              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every side's step ``warmup + steps`` times, alternating the order each round (so contention and
    cache effects fall on every side alike); the wall-clock and CPU seconds of each timed step, per side."""
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides.items())
    for i in range(warmup + steps):
        for name, step in order if i % 2 == 0 else order[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            if i >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def hiervq_step(images: torch.Tensor, batch: int, amp: bool = False, compile: bool = False,
                model: nn.Module | None = None, train=None, seed: int = 0):
    """A closure running one step of hiervq's own training loop (``Trainer.train_step``) on the next batch
    (``amp``, ``compile``: the ``train.amp`` and ``train.compile`` switches). ``model`` (default: the model of
    :func:`hiervq_config`) and ``train`` (a ``TrainConfig``; default: the reference's optimiser settings) let the
    scaling mode (and benchmarks/pqvae_step.py) time a recipe's own model and training settings; ``seed`` seeds the
    trainer (the batch order)."""
    from hiervq.data import DataSplits, ImageSet
    from hiervq.models import HierarchicalVQVAE
    from hiervq.train import TrainConfig, Trainer
    from hiervq.train.engine import make_optimizer, make_scheduler
    from hiervq.train.trainer import AutoencoderTask

    if model is None:
        model = HierarchicalVQVAE(hiervq_config(images.shape[-1], images.shape[1]))
    config = train or TrainConfig(epochs=1, batch_size=batch, optimizer="adam", lr=LR, schedule="constant",
                                  grad_clip=None, amp=amp, compile=compile, device="cpu", progress=False)
    trainer = Trainer(config, run_dir=None, seed=seed)
    task = AutoencoderTask(trainer, model, DataSplits(train=ImageSet(images), test=ImageSet(images[:batch])))
    model.to(trainer.dist.device)
    if compile:
        from hiervq.nn import compile_stacks

        compile_stacks(model)  # what Trainer.fit_task does with train.compile
    phase = task.phases()[0]
    params = task.parameters(phase)
    optimizer = make_optimizer(config, params, config.lr)
    scheduler = make_scheduler(optimizer, config, 10**6, config.schedule)
    task.train_mode()
    state = {"batches": iter(()), "epoch": 0}

    def step() -> None:
        batch = next(state["batches"], None)
        if batch is None:  # the next epoch's batches, drawn as the trainer draws them
            state["batches"] = iter(task.batches(state["epoch"]))
            state["epoch"] += 1
            batch = next(state["batches"])
        trainer.train_step(task, optimizer, scheduler, params, batch)

    return model, step


# ---------------------------------------------------------------------------------------- timing
def load_images(size: int, count: int, path: Path = DATA) -> torch.Tensor:
    """``count`` CIFAR-10 training images as uint8 (N, 3, size, size) (random ones without the file)."""
    if path.is_file():
        with np.load(path) as archive:
            images = torch.from_numpy(archive["train_images"][:count]).permute(0, 3, 1, 2).contiguous()
        from hiervq.data.datasets import fit_images

        return fit_images(images, size)
    print(f"{path} not found: timing on random images")
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def run_case(size: int, batch: int, warmup: int, steps: int, amp: bool = False, data: Path = DATA,
             images: torch.Tensor | None = None, compile: bool = False) -> dict:
    """Alternate the training steps of hiervq (and of hiervq under bf16 autocast with ``amp``, compiled with
    ``compile``) and the reference; images/s from the median wall-clock step time of each (and from the median CPU
    time of the process)."""
    if images is None:
        images = load_images(size, max(8 * batch, 2048), data)
    sides = {}
    torch.manual_seed(0)
    ours, sides["hiervq"] = hiervq_step(images, batch)
    if amp:
        torch.manual_seed(0)
        sides["hiervq_bf16"] = hiervq_step(images, batch, amp=True)[1]
    if compile:
        torch.manual_seed(0)
        sides["hiervq_compiled"] = hiervq_step(images, batch, compile=True)[1]
        start = time.perf_counter()
        sides["hiervq_compiled"]()  # the first step compiles
        compile_s = time.perf_counter() - start
    from hiervq.models import HierarchicalVQVAE

    torch.manual_seed(0)
    defaults = HierarchicalVQVAE(defaults_config(size, images.shape[1]))
    sides["hiervq_defaults"] = hiervq_step(images, batch, model=defaults)[1]
    torch.manual_seed(0)
    ref, sides["reference"] = reference_step(images, batch)
    wall, cpu = alternate(sides, warmup, steps)
    record = {
        "size": size,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "hiervq_img_s": round(batch / statistics.median(wall["hiervq"]), 2),
        "reference_img_s": round(batch / statistics.median(wall["reference"]), 2),
        "hiervq_params": sum(p.numel() for p in ours.parameters()),
        "reference_params": sum(p.numel() for p in ref.parameters()),
    }
    # extras: the same steps per second of the process's CPU time (what contention for the cores does not
    # stretch), bf16, and the machine's load while it ran
    for name in sides:
        record[f"{name}_cpu_img_s"] = round(batch / statistics.median(cpu[name]), 2)
    for name in ("hiervq_bf16", "hiervq_compiled"):
        if name in sides:
            record[f"{name}_img_s"] = round(batch / statistics.median(wall[name]), 2)
    # the model of the reference's architecture keys with our defaults for the rest (widths, layout)
    record["hiervq_defaults_img_s"] = round(batch / statistics.median(wall["hiervq_defaults"]), 2)
    record["hiervq_defaults_params"] = sum(p.numel() for p in defaults.parameters())
    if compile:
        record["compile_s"] = round(compile_s, 1)
    record["steps"], record["warmup"] = steps, warmup
    record["load_average"] = round(os.getloadavg()[0], 2)
    return record


def ratios(record: dict) -> dict:
    """The speed ratios of a throughput record (images/s over images/s; keys only for the sides it timed)."""
    out = {"ratio": record["hiervq_img_s"] / record["reference_img_s"],
           "cpu_ratio": record["hiervq_cpu_img_s"] / record["reference_cpu_img_s"]}
    for name in ("hiervq_bf16", "hiervq_compiled"):
        if f"{name}_img_s" in record:
            out[f"{name}_ratio"] = record[f"{name}_img_s"] / record["reference_img_s"]
    if "hiervq_bf16_img_s" in record:
        out["bf16_vs_float32"] = record["hiervq_bf16_img_s"] / record["hiervq_img_s"]
    if "hiervq_defaults_img_s" in record:  # what a user gets without widths: vqvae2 / channels_last: true
        out["defaults_ratio"] = record["hiervq_defaults_img_s"] / record["reference_img_s"]
    return out


# ---------------------------------------------------------------------------------------- scaling
def recipe_model(size: int, batch: int, in_channels: int = 3):
    """The shipped large-image recipe (:data:`RECIPE`) at ``size`` x ``size``: its model (the config's model
    section; its ``data.image_size`` of 256 overridden) and its ``train`` section with ``batch_size`` set, on the
    CPU, without a progress bar."""
    from hiervq.train.config import load_config

    config = load_config(RECIPE, [f"data.image_size={size}", f"train.batch_size={batch}", "train.device=cpu",
                                  "train.progress=false"])
    return config.build_model(in_channels, size), config.train


def recipe_step(images: torch.Tensor, batch: int):
    """A closure running one ``Trainer.train_step`` of the recipe's model with the recipe's training settings
    (Adam at its learning rate, cosine schedule with warm-up, gradient clipping) on the next batch."""
    model, train = recipe_model(images.shape[-1], batch, images.shape[1])
    return hiervq_step(images, batch, model=model, train=train)


SCALE_SIDES = {"hiervq": recipe_step, "reference": reference_step}


def _memory_mib() -> dict[str, float]:
    """This process's resident set now (VmRSS) and its peak (VmHWM), MiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def peak_memory(side: str, size: int, batch: int, steps: int) -> dict:
    """Peak resident memory of ``side``'s training step, measured in this (fresh) process (see
    :data:`MEMORY_METHOD`): the model, optimiser and data (random uint8 images, ``batch`` x (``steps`` + 1)) are
    built, the peak is reset to the resident set, ``steps`` training steps run, and the peak above that resident
    set over the batch size is the memory per image."""
    import gc

    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch * (steps + 1), 3, size, size), dtype=torch.uint8)
    step = SCALE_SIDES[side](images, batch)[1]
    gc.collect()
    before = _memory_mib()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    built = _memory_mib()
    for _ in range(steps):
        step()
    peak = _memory_mib()["VmHWM"]
    return {"side": side, "size": size, "batch": batch, "steps": steps, "build_peak_mb": round(before["VmHWM"], 1),
            "built_mb": round(built["VmRSS"], 1), "peak_mb": round(peak, 1),
            "mb_per_image": round((peak - built["VmRSS"]) / batch, 2)}


MEMORY_METHOD = (
    "per (side, size) a fresh Python process (threads as the record's) builds the side's model, optimiser and data "
    "(random uint8 images), resets its peak resident set to the current one (writing 5 to /proc/self/clear_refs), "
    "runs {steps} training steps of the record's batch size and reads the peak (VmHWM of /proc/self/status); "
    "built_mb is the resident set after building (VmRSS), peak_mb the peak during the steps, and "
    "peak_mb_per_image = (peak_mb - built_mb) / batch: the steps' peak above everything held before them (model, "
    "optimiser, data, the interpreter and torch), including the first step's one-time work (Adam's state, the "
    "recipe's k-means codebook init) and whatever the allocator keeps, so it holds a part that does not grow with "
    "the batch. The same probe at half the batch gives marginal_mb_per_image = (step peak at batch - step peak at "
    "batch / 2) / (batch / 2), the memory each further image adds. Not ru_maxrss: on Linux a child process "
    "inherits its parent's peak across fork/exec, which hid the steps' memory under the benchmark's own."
)


def run_scale(size: int, batch: int, warmup: int, steps: int, data: Path = DATA, images: torch.Tensor | None = None,
              memory_steps: int = 3, memory: bool = True) -> dict:
    """The recipe's training step against the reference's at ``size``, alternated as :func:`run_case` does
    (images/s from the median wall-clock and CPU step times, seconds per 50,000-image epoch derived from them);
    with ``memory`` the peak memory per image of each side, each measured in a fresh subprocess
    (:func:`peak_memory`)."""
    import json
    import subprocess
    import sys

    if images is None:
        images = load_images(size, max(8 * batch, 64), data)
    sides, models = {}, {}
    for name, make in SCALE_SIDES.items():
        torch.manual_seed(0)
        models[name], sides[name] = make(images, batch)
    wall, cpu = alternate(sides, warmup, steps)
    record = {"size": size, "batch": batch, "threads": torch.get_num_threads(), "steps": steps, "warmup": warmup}
    for name in sides:
        img_s = batch / statistics.median(wall[name])
        record[f"{name}_img_s"] = round(img_s, 2)
        record[f"{name}_cpu_img_s"] = round(batch / statistics.median(cpu[name]), 2)
        record[f"{name}_epoch_s"] = round(EPOCH_IMAGES / img_s, 1)
        record[f"{name}_params"] = sum(p.numel() for p in models[name].parameters())
    record["ratio"] = record["hiervq_img_s"] / record["reference_img_s"]
    record["cpu_ratio"] = record["hiervq_cpu_img_s"] / record["reference_cpu_img_s"]
    record["hiervq_code_grids"] = [list(info.grid) for info in models["hiervq"].levels]  # bottom first
    record["reference_code_grids"] = [[size // 4] * 2, [size // 8] * 2]  # bottom (/4), top (/8)
    record["load_average"] = round(os.getloadavg()[0], 2)
    if memory:
        def probe(name: str, b: int) -> dict:
            out = subprocess.run([sys.executable, __file__, "--memory-probe", f"{name}:{size}:{b}:{memory_steps}",
                                  "--threads", str(torch.get_num_threads())], check=True, capture_output=True, text=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        for name in sides:
            full = probe(name, batch)
            record[f"{name}_peak_mb_per_image"] = full["mb_per_image"]
            record[f"{name}_memory"] = {k: full[k] for k in ("build_peak_mb", "built_mb", "peak_mb")}
            if batch >= 2:
                half = probe(name, batch // 2)
                record[f"{name}_memory"]["half_batch_step_peak_mb"] = round(half["peak_mb"] - half["built_mb"], 1)
                record[f"{name}_marginal_mb_per_image"] = round(
                    (full["mb_per_image"] * batch - half["mb_per_image"] * (batch // 2)) / (batch - batch // 2), 2)
        record["memory_ratio"] = record["hiervq_peak_mb_per_image"] / record["reference_peak_mb_per_image"]
    return record


# ---------------------------------------------------------------------------------------- ablation
def ablation_ratios(record: dict) -> dict:
    """The ratios of an ablation record: each variant's images/s over the reference's (``ratio`` by wall clock,
    ``cpu_ratio`` by CPU time) and ``gain``, our full step's images/s over the variant's - 1 (wall clock; not for
    the full step itself or the reference)."""
    wall, cpu = record["img_s"], record["cpu_img_s"]
    return {"ratio": {name: v / wall["reference"] for name, v in wall.items()},
            "cpu_ratio": {name: v / cpu["reference"] for name, v in cpu.items()},
            "gain": {name: wall["hiervq"] / v - 1 for name, v in wall.items() if name not in ("hiervq", "reference")}}


def _undo(model, what: str) -> None:
    """Turn one of the training-step optimisations off in ``model`` (for :func:`run_ablation`)."""
    import types

    from hiervq.nn import ResBlock
    from hiervq.quantize.common import RowLayout

    if what == "inplace_relu":  # the residual block as before: a new tensor for the inner ReLU
        for m in model.modules():
            if isinstance(m, ResBlock):
                m.forward = types.MethodType(lambda self, x: x + self.conv2(F.relu(self.conv1(F.relu(x)))), m)
    elif what == "quantizer_layout":  # the quantizer output copied to the default layout, as before
        for vq in model.vq:
            vq._from_rows = lambda rows, shape, maps, channels_last=False: RowLayout._from_rows(rows, shape, maps)


ABLATION = {  # name: (config changes, optimisation turned off)
    "hiervq": ({}, None),
    "no channels_last": ({"channels_last": False}, None),
    "no in-place inner ReLU": ({}, "inplace_relu"),
    "quantizer output copied to NCHW": ({}, "quantizer_layout"),
    "none of the three (the step before)": ({"channels_last": False}, "inplace_relu+quantizer_layout"),
    "our default widths (+24 % parameters)": ({"widths": "hiervq"}, None),  # the default before 0.2 (key kept: the JSON)
}


def run_ablation(size: int, batch: int, warmup: int, steps: int, data: Path = DATA,
                 images: torch.Tensor | None = None) -> dict:
    """Each optimisation of the training step turned off in turn, all variants and the reference alternated in
    one process; median images/s by wall clock and by CPU time per variant."""
    global hiervq_config
    if images is None:
        images = load_images(size, max(8 * batch, 2048), data)
    base, sides = hiervq_config, {}
    try:
        for name, (changes, undo) in ABLATION.items():
            hiervq_config = lambda *a, changes=changes: _with(base(*a), changes)  # noqa: E731
            torch.manual_seed(0)
            model, sides[name] = hiervq_step(images, batch)
            for what in (undo or "").split("+"):
                if what:
                    _undo(model, what)
    finally:
        hiervq_config = base
    torch.manual_seed(0)
    sides["reference"] = reference_step(images, batch)[1]
    wall, cpu = alternate(sides, warmup, steps)
    return {
        "size": size, "batch": batch, "threads": torch.get_num_threads(), "steps": steps, "warmup": warmup,
        "load_average": round(os.getloadavg()[0], 2),
        "img_s": {name: round(batch / statistics.median(wall[name]), 2) for name in sides},
        "cpu_img_s": {name: round(batch / statistics.median(cpu[name]), 2) for name in sides},
    }


# ---------------------------------------------------------------------------------------- profile
PROFILE_CATEGORIES = {  # category: profiler event names (self time); anything else is "other"
    "conv forward (incl. transposed)": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
                                        "aten::conv2d", "aten::conv_transpose2d"),
    "conv backward": ("aten::convolution_backward", "ConvolutionBackward0"),
    "ReLU forward + backward": ("aten::clamp_min", "aten::clamp_min_", "aten::relu", "aten::relu_",
                                "aten::threshold_backward", "ReluBackward0"),
    "residual adds, gradient sums": ("aten::add", "AddBackward0"),
    "layout copies, cat": ("aten::copy_", "aten::cat", "aten::contiguous", "aten::clone", "CatBackward0",
                           "aten::narrow", "aten::slice", "aten::permute", "PermuteBackward0", "CloneBackward0"),
    "optimizer (Adam), zero_grad": ("Optimizer.step#Adam.step", "aten::lerp_", "aten::addcmul_", "aten::addcdiv_",
                                    "aten::sqrt", "aten::mul_", "aten::div_", "Optimizer.zero_grad#Adam.zero_grad"),
    "quantizer: distances, nearest code": ("aten::addmm", "aten::amin", "aten::argmin", "aten::gather", "aten::max",
                                           "aten::mm", "aten::neg", "aten::pow", "aten::sum", "aten::matmul"),
    "quantizer: one-hot, EMA, statistics, lookup": (
        "aten::one_hot", "aten::bincount", "aten::index_add_", "aten::embedding", "aten::index_select",
        "aten::embedding_backward", "aten::embedding_dense_backward", "aten::scatter_add_", "aten::exp", "aten::log",
        "aten::gt", "aten::fill_", "aten::zeros", "aten::scatter_", "aten::zero_"),
    "losses (MSE), PSNR, logged values": ("aten::mse_loss", "aten::mse_loss_backward", "MseLossBackward0",
                                          "aten::log10", "aten::mean", "aten::sub", "aten::rsub", "aten::clamp",
                                          "aten::item", "aten::_local_scalar_dense", "aten::stack", "aten::isfinite"),
}


def run_profile(size: int, batch: int, warmup: int, steps: int, data: Path = DATA,
                images: torch.Tensor | None = None) -> dict:
    """torch.profiler over ``steps`` interleaved training steps of hiervq, of hiervq before the optimisations (the
    ablation's "none of the three") and of the reference: self time per category in ms per step, per side."""
    from torch.profiler import ProfilerActivity, profile, record_function

    global hiervq_config
    if images is None:
        images = load_images(size, max(8 * batch, 2048), data)
    base, sides = hiervq_config, {}
    torch.manual_seed(0)
    sides["hiervq"] = hiervq_step(images, batch)[1]
    hiervq_config = lambda *a: _with(base(*a), {"channels_last": False})  # noqa: E731
    try:
        torch.manual_seed(0)
        model, sides["hiervq before"] = hiervq_step(images, batch)
    finally:
        hiervq_config = base
    _undo(model, "inplace_relu")
    _undo(model, "quantizer_layout")
    torch.manual_seed(0)
    sides["reference"] = reference_step(images, batch)[1]
    order = list(sides.items())
    for _ in range(warmup):
        for _, step in order:
            step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            for name, step in order if i % 2 == 0 else order[::-1]:
                with record_function("side:" + name):
                    step()
    category = {event: cat for cat, events in PROFILE_CATEGORIES.items() for event in events}
    ms: dict[str, dict[str, float]] = {name: {} for name in sides}
    for event in prof.events():
        root = event
        while root.cpu_parent is not None:
            root = root.cpu_parent
        if event is root or not root.name.startswith("side:"):
            continue
        cat = category.get(event.name, "other (elementwise, allocation, autograd)")
        side = ms[root.name[5:]]
        side[cat] = side.get(cat, 0.0) + event.self_cpu_time_total / 1000 / steps
    return {"size": size, "batch": batch, "threads": torch.get_num_threads(), "steps": steps,
            "load_average": round(os.getloadavg()[0], 2),
            "ms_per_step": {name: {k: round(v, 2) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])}
                            for name, cats in ms.items()}}


def conv_macs(model: nn.Module, size: int, in_channels: int = 3) -> int:
    """Multiply-adds of the forward pass of every convolution (and transposed convolution) of ``model`` for one
    ``size`` x ``size`` image, counted with forward hooks: a convolution does (output elements) x (in channels /
    groups) x (kernel area), a transposed one (input elements) x (out channels / groups) x (kernel area)."""
    total = [0]

    def hook(module, inputs, output) -> None:
        area = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total[0] += inputs[0].numel() * module.out_channels // module.groups * area
        else:
            total[0] += output.numel() * module.in_channels // module.groups * area

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model.eval()(torch.rand(1, in_channels, size, size))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def model_macs(size: int) -> dict:
    """Multiply-adds per ``size`` x ``size`` image of our model at the reference's widths (the benchmark's,
    "hiervq"), of our model at its default widths and of the reference: ``conv`` (:func:`conv_macs`), ``quantizer``
    (the distances to the K codes of dimension DIM of every row of both levels, (size/4)^2 + (size/8)^2 rows, the
    same for all three) and ``total``, their sum; ``default_widths_extra``, our default widths' total over the
    reference's, minus 1."""
    from hiervq.models import HierarchicalVQVAE

    conv = {"hiervq": conv_macs(HierarchicalVQVAE(_with(hiervq_config(size), {"channels_last": False})), size),
            "hiervq default widths": conv_macs(
                HierarchicalVQVAE(_with(hiervq_config(size), {"channels_last": False, "widths": "hiervq"})), size),
            "reference": conv_macs(RefVQVAE2(), size)}
    quantizer = ((size // 4) ** 2 + (size // 8) ** 2) * K * DIM
    total = {name: n + quantizer for name, n in conv.items()}
    return {"conv": conv, "quantizer": quantizer, "total": total,
            "default_widths_extra": total["hiervq default widths"] / total["reference"] - 1}


CONV_CATEGORIES = ("conv forward (incl. transposed)", "conv backward")
QUANTIZER_CATEGORIES = ("quantizer: distances, nearest code", "quantizer: one-hot, EMA, statistics, lookup")


def profile_summary(record: dict, macs: dict[str, int] | None = None) -> dict:
    """What the docs read off a profile record: ``total_ms`` (each side's categories summed), ``share`` (each
    category over its side's total), ``conv_share`` and ``quantizer_share`` (the two convolution, and the two
    quantizer, categories together over the total), ``change_vs_before`` (per category, our step's ms over the
    step before the optimisations', minus 1) and, given the models' multiply-adds per image (``macs``,
    :func:`model_macs`; "hiervq before" has our model's), ``conv_gflop_s``: 2 flops x 3 (forward, and a backward
    counted as twice the forward) x macs x batch over the two convolution categories' ms."""
    ms = record["ms_per_step"]
    total = {side: sum(cats.values()) for side, cats in ms.items()}
    conv = {side: sum(cats.get(c, 0.0) for c in CONV_CATEGORIES) for side, cats in ms.items()}
    out = {"total_ms": total,
           "share": {side: {c: v / total[side] for c, v in cats.items()} for side, cats in ms.items()},
           "conv_share": {side: conv[side] / total[side] for side in ms},
           "quantizer_share": {side: sum(cats.get(c, 0.0) for c in QUANTIZER_CATEGORIES) / total[side]
                               for side, cats in ms.items()}}
    if "hiervq" in ms and "hiervq before" in ms:
        out["change_vs_before"] = {c: v / ms["hiervq before"][c] - 1 for c, v in ms["hiervq"].items()
                                   if ms["hiervq before"].get(c)}
    if macs is not None:
        conv_macs_ = macs["conv"]
        side_macs = {"hiervq": conv_macs_["hiervq"], "hiervq before": conv_macs_["hiervq"],
                     "reference": conv_macs_["reference"]}
        out["conv_gflop_s"] = {side: 6 * side_macs[side] * record["batch"] / (conv[side] * 1e-3) / 1e9
                               for side in ms if side in side_macs}
    return out


def layers_summary(record: dict) -> dict:
    """What the docs read off a per-layer record: each row's ``ratio`` (channels-last ms over NCHW ms), the
    totals over all convolutions (``total_nchw_ms``, ``total_channels_last_ms``: each row's ms times its
    ``count``, summed; ``total_ratio``) and ``channels_last_slower_ms``, what running the rows that are slower
    channels-last in NCHW would save (count x the difference, summed over those rows)."""
    rows = record["layers"]
    nchw = sum(r["count"] * r["nchw_ms"] for r in rows)
    last = sum(r["count"] * r["channels_last_ms"] for r in rows)
    return {"layers": [{**r, "ratio": r["channels_last_ms"] / r["nchw_ms"]} for r in rows],
            "total_nchw_ms": nchw, "total_channels_last_ms": last, "total_ratio": last / nchw,
            "channels_last_slower_ms": sum(r["count"] * (r["channels_last_ms"] - r["nchw_ms"]) for r in rows
                                           if r["channels_last_ms"] > r["nchw_ms"])}


# ---------------------------------------------------------------------------------------- per layer
def conv_layers(size: int, batch: int) -> list[tuple[nn.Module, tuple[int, ...], int]]:
    """The distinct convolutions of our model at the reference's settings (module, input shape, how many times it
    occurs), found with forward hooks on one forward pass."""
    from hiervq.models import HierarchicalVQVAE

    model = HierarchicalVQVAE(_with(hiervq_config(size), {"channels_last": False})).train()
    found: dict[tuple, list] = {}

    def hook(module, inputs, _output) -> None:
        key = (type(module).__name__, module.in_channels, module.out_channels, module.kernel_size, module.stride,
               module.padding, tuple(inputs[0].shape))
        found.setdefault(key, [module, tuple(inputs[0].shape), 0])[2] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.rand(batch, 3, size, size))
    for h in handles:
        h.remove()
    return [tuple(v) for v in found.values()]


def run_layers(size: int, batch: int, warmup: int, steps: int) -> dict:
    """Forward + backward (input and weight gradients) of each distinct convolution of our model, in the default
    (NCHW) layout and channels-last, alternated; the median process CPU time of each in ms (what waiting for a busy
    core does not stretch)."""
    import copy

    rows = []
    for module, shape, count in conv_layers(size, batch):
        variants = {"nchw": (module, torch.randn(shape))}
        last = copy.deepcopy(module).to(memory_format=torch.channels_last)
        variants["channels_last"] = (last, variants["nchw"][1].contiguous(memory_format=torch.channels_last))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(warmup + steps):
            for name in (list(variants) if i % 2 == 0 else list(variants)[::-1]):
                layer, x = variants[name]
                x = x.detach().requires_grad_(True)
                start = time.process_time()
                y = layer(x)
                y.backward(torch.ones_like(y))
                if i >= warmup:
                    times[name].append(time.process_time() - start)
        ms = {name: round(1e3 * statistics.median(t), 3) for name, t in times.items()}
        rows.append({"layer": f"{type(module).__name__}({module.in_channels}, {module.out_channels}, "
                              f"k{module.kernel_size[0]}, s{module.stride[0]}) on {list(shape[1:])}",
                     "count": count, "nchw_ms": ms["nchw"], "channels_last_ms": ms["channels_last"]})
    return {"size": size, "batch": batch, "threads": torch.get_num_threads(), "steps": steps, "warmup": warmup,
            "load_average": round(os.getloadavg()[0], 2), "layers": rows}


def _with(config, changes: dict):
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None,
                        help=f"size:batch,... (default {','.join(f'{s}:{b}' for s, b in CASES)}; with --scale "
                             f"size:batch[:steps],..., default {','.join(f'{s}:{b}' for s, b in SCALE_CASES)})")
    parser.add_argument("--warmup", type=int, default=20, help="untimed step pairs first")
    parser.add_argument("--steps", type=int, default=60, help="timed step pairs")
    parser.add_argument("--threads", default="1",
                        help="torch intra-op threads; a comma-separated list (1,2) times every case at each count, "
                             "one record each (the other modes use the first)")
    parser.add_argument("--amp", action="store_true", help="also time hiervq with train.amp (bf16 autocast)")
    parser.add_argument("--compile", action="store_true", help="also time hiervq with train.compile")
    parser.add_argument("--data", type=Path, default=DATA, help="CIFAR-10 .npz (random images when missing)")
    parser.add_argument("--ablation", action="store_true",
                        help=f"time the step with each optimisation turned off instead (-> {ABLATION_RESULTS.name})")
    parser.add_argument("--profile", action="store_true",
                        help=f"torch.profiler breakdown of the steps instead (-> {PROFILE_RESULTS.name})")
    parser.add_argument("--layers", action="store_true",
                        help=f"time each distinct convolution in NCHW and channels-last instead (-> {LAYER_RESULTS.name})")
    parser.add_argument("--scale", action="store_true",
                        help=f"time the large-image recipe ({RECIPE.name}) against the reference at larger sizes, "
                             f"with peak memory per image, instead (-> {SCALE_RESULTS.name})")
    parser.add_argument("--memory-steps", type=int, default=3, help="--scale: training steps of each memory probe")
    parser.add_argument("--no-memory", action="store_true", help="--scale: skip the memory probes")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # side:size:batch:steps (internal)
    parser.add_argument("--summarize", action="store_true",
                        help=f"time nothing: add the ratios to the records of the existing JSON (--out, default "
                             f"{RESULTS.name}; with --ablation {ABLATION_RESULTS.name}, --profile "
                             f"{PROFILE_RESULTS.name}, --layers {LAYER_RESULTS.name})")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"default {RESULTS.name} ({ABLATION_RESULTS.name}, {PROFILE_RESULTS.name}, "
                             f"{LAYER_RESULTS.name})")
    args = parser.parse_args()
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    torch.set_num_threads(thread_counts[0])
    from hiervq.train.report import write_json

    if args.memory_probe:  # one (side, size) in this fresh process, for --scale: the result as the last line
        import json

        side, size, batch, steps = args.memory_probe.split(":")
        print(json.dumps(peak_memory(side, int(size), int(batch), int(steps))))
        return
    args.cases = args.cases or ",".join(f"{s}:{b}" for s, b in (SCALE_CASES if args.scale else CASES))

    if args.scale:
        import sys

        out = {"script": SCRIPT, "command": " ".join(["python", SCRIPT, *sys.argv[1:]]),
               "recipe": str(RECIPE.relative_to(ROOT)), "torch": torch.__version__, "threads": thread_counts[0],
               "data": str(args.data.name) if args.data.is_file() else "random images",
               "epoch_s_method": f"derived: {EPOCH_IMAGES:,} images / the side's median images/s (not an epoch "
                                 f"timed end to end: no data loading, no evaluation)",
               "memory_method": MEMORY_METHOD.format(steps=args.memory_steps), "records": []}
        for case in args.cases.split(","):
            size, batch, *steps = (int(v) for v in case.split(":"))
            record = run_scale(size, batch, args.warmup, steps[0] if steps else args.steps, args.data,
                               memory_steps=args.memory_steps, memory=not args.no_memory)
            out["records"].append(record)
            memory = (f"; peak {record['hiervq_peak_mb_per_image']:.1f} vs {record['reference_peak_mb_per_image']:.1f} "
                      f"MiB per image" if "memory_ratio" in record else "")
            print(f"{size}x{size} batch {batch}: recipe {record['hiervq_img_s']:.2f} img/s "
                  f"({record['hiervq_epoch_s']:,.0f} s per epoch), reference {record['reference_img_s']:.2f} img/s "
                  f"({record['reference_epoch_s']:,.0f} s), ratio {record['ratio']:.2f}{memory}; load average "
                  f"{record['load_average']}", flush=True)
            write_json(args.out or SCALE_RESULTS, out)  # after every case
        return

    if args.summarize:
        import json

        if args.profile:
            path = args.out or PROFILE_RESULTS
            records = [{**record, "macs_per_image": model_macs(record["size"])} for record in json.loads(path.read_text())]
            records = [{**record, **profile_summary(record, record["macs_per_image"])} for record in records]
            write_json(path, records)
            for r in records:
                print(f"{r['size']}x{r['size']} batch {r['batch']}: total ms {r['total_ms']}, conv share "
                      f"{r['conv_share']}, conv GFLOP/s {r['conv_gflop_s']}, multiply-adds {r['macs_per_image']['total']}")
            return
        if args.layers:
            path = args.out or LAYER_RESULTS
            records = [{**record, **layers_summary(record)} for record in json.loads(path.read_text())]
            write_json(path, records)
            for r in records:
                print(f"{r['size']}x{r['size']} batch {r['batch']}: {r['total_nchw_ms']:.1f} -> "
                      f"{r['total_channels_last_ms']:.1f} ms ({r['total_ratio']:.2f}); channels-last slower rows "
                      f"{r['channels_last_slower_ms']:.1f} ms")
            return
        derive = ablation_ratios if args.ablation else ratios
        path = args.out or (ABLATION_RESULTS if args.ablation else RESULTS)
        records = [{**record, **derive(record)} for record in json.loads(path.read_text())]
        write_json(path, records)
        for record in records:
            print(f"{record['size']}x{record['size']} batch {record['batch']}, {record['threads']} thread(s): "
                  + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else
                              f"{k} " + ", ".join(f"{n} {x:.2f}" for n, x in v.items())
                              for k, v in derive(record).items()))
        return

    if args.profile:
        records = []
        for case in args.cases.split(","):
            size, batch = (int(v) for v in case.split(":"))
            record = {"script": SCRIPT, **run_profile(size, batch, args.warmup, args.steps, args.data),
                      "macs_per_image": model_macs(size)}
            records.append({**record, **profile_summary(record, record["macs_per_image"])})
            sides = records[-1]["ms_per_step"]
            cats = list(sides["hiervq"])
            print(f"{size}x{size} batch {batch}, ms per step (share):" + "".join(f"{n:>24s}" for n in sides))
            for cat in cats + ["total"]:
                cells = []
                for side in sides.values():
                    total = sum(side.values())
                    value = total if cat == "total" else side.get(cat, 0.0)
                    cells.append(f"{value:14.1f} ({100 * value / total:4.1f} %)")
                print(f"  {cat:44s}" + "".join(f"{c:>24s}" for c in cells), flush=True)
            write_json(args.out or PROFILE_RESULTS, records)
        return

    if args.layers:
        records = []
        for case in args.cases.split(","):
            size, batch = (int(v) for v in case.split(":"))
            record = {"script": SCRIPT, **run_layers(size, batch, args.warmup, args.steps)}
            records.append({**record, **layers_summary(record)})
            for row in records[-1]["layers"]:
                print(f"{size}x{size} batch {batch} {row['layer']:48s} x{row['count']}: NCHW {row['nchw_ms']:7.2f} ms, "
                      f"channels-last {row['channels_last_ms']:7.2f} ms "
                      f"({row['channels_last_ms'] / row['nchw_ms']:.2f})", flush=True)
            write_json(args.out or LAYER_RESULTS, records)
        return

    if args.ablation:
        records = []
        for case in args.cases.split(","):
            size, batch = (int(v) for v in case.split(":"))
            record = run_ablation(size, batch, args.warmup, args.steps, args.data)
            records.append({"script": SCRIPT, **record, **ablation_ratios(record)})
            for name in records[-1]["img_s"]:
                print(f"{size}x{size} batch {batch} {name:40s} {records[-1]['ratio'][name]:5.2f}x wall "
                      f"{records[-1]['cpu_ratio'][name]:5.2f}x CPU time", flush=True)
            write_json(args.out or ABLATION_RESULTS, records)
        return
    args.out = args.out or RESULTS

    results = []
    for threads, case in ((t, c) for t in thread_counts for c in args.cases.split(",")):
        torch.set_num_threads(threads)
        size, batch = (int(v) for v in case.split(":"))
        record = run_case(size, batch, args.warmup, args.steps, args.amp, args.data, compile=args.compile)
        record.update(ratios(record))
        results.append({"script": SCRIPT, **record})
        bf16 = "".join(f", {name[7:]} {record[f'{name}_ratio']:.2f}x"
                       for name in ("hiervq_bf16", "hiervq_compiled") if f"{name}_ratio" in record)
        bf16 += f", defaults {record['defaults_ratio']:.2f}x ({record['hiervq_defaults_params']:,} parameters)"
        print(f"{size}x{size} batch {batch}: hiervq {record['hiervq_img_s']:.1f} img/s, reference "
              f"{record['reference_img_s']:.1f} img/s, ratio {record['ratio']:.2f} (CPU time {record['cpu_ratio']:.2f}{bf16}; "
              f"{record['hiervq_params']:,} vs {record['reference_params']:,} parameters, load average "
              f"{record['load_average']})", flush=True)
        write_json(args.out, results)  # after every case


if __name__ == "__main__":
    main()
