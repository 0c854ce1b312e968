"""PQ-VAE training step against the plain VQ-VAE it is compared with (issue 29): seconds per step and a profile.

The models are those of ``benchmarks/recon_pqvae.py`` on MNIST: the PQ-VAE of ``configs/pqvae-mnist.yaml`` and
``vqvae_plain`` (the same encoder/decoder, an 8x8 grid of K = 256 codes of dimension 64), trained with the PQ-VAE
recipe's ``train:`` section (batch 128, AdamW, the exponential schedule, gradient clipping) as that benchmark
trains both. A step is the library's own ``Trainer.train_step`` (forward, the logged values, backward, clipping,
the divergence check, the optimiser and schedule steps) on 32x32 MNIST training batches (random images when the
data is missing). The PQ-VAE runs twice: with the fast chain (``ProgressiveQuantizer.fast_chain``, the default)
and with the per-step autograd chain it replaced (``fast_chain = False``, the implementation before issue 29).

Timing: all models in one process, one step of each in turn (the order reversed every round so that none always
follows another), ``--warmup`` untimed rounds, then ``--steps`` timed rounds; a model's time is its median step.
Load on the machine hits every model alike, so the ratios are the numbers to read. A torch.profiler pass over
``--profile-steps`` steps of each PQ-VAE variant gives the top operations by self CPU time.

Writes ``benchmarks/results/pqvae_step.json``::

    OMP_NUM_THREADS=1 python benchmarks/pqvae_step.py --threads 1 --warmup 3 --steps 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from hiervq.data import ImageSet, load_data  # noqa: E402
from hiervq.io import atomic_write_bytes  # noqa: E402
from hiervq.train.config import apply_overrides, config_from_dict  # noqa: E402
from recon_pqvae import RECIPES, vqvae_plain_model  # noqa: E402
from train_throughput import hiervq_step  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "pqvae_step.json"


def load_images(config, count: int) -> tuple[ImageSet, str]:
    """``count`` training images of the recipe's data (resized as it says), or random 32x32 ones without it."""
    try:
        data = load_data(config.data)
        return ImageSet(data.train.images[:count]), "mnist train (first images)"
    except Exception as exc:  # noqa: BLE001 - timing only needs images of the right size
        print(f"no MNIST ({exc}); timing on random images")
        return ImageSet(torch.randint(0, 256, (count, 1, 32, 32), dtype=torch.uint8)), "random"


def make_step(config, images: ImageSet, fast_chain: bool | None = None):
    """(model, a closure running one ``Trainer.train_step`` on the next batch)."""
    torch.manual_seed(config.seed)
    model = config.build_model(images.images.shape[1], images.images.shape[-1])
    if fast_chain is not None:
        model.quantizer.fast_chain = fast_chain  # instance attribute: the class default stays
    tc = config.train  # the library's own training step, built as train_throughput.py builds it
    return hiervq_step(images.images, tc.batch_size, model=model, train=tc, seed=config.seed)


def profile_summary(step, steps: int, rows: int = 15) -> dict:
    """Self CPU time per step by kind (convolutions, matrix products, the rest) and the top operations over
    ``steps`` steps (ms per step)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    groups = {"convolution": 0.0, "matmul": 0.0, "other": 0.0}
    for e in events:
        name = e.key.split("::")[-1]
        kind = ("convolution" if "conv" in name else
                "matmul" if name.rstrip("_") in ("mm", "bmm", "addmm", "baddbmm", "matmul") else "other")
        groups[kind] += e.self_cpu_time_total / 1e3 / steps
    return {"self_ms_per_step_by_kind": {k: round(v, 1) for k, v in groups.items()},
            "top_ops": [{"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2),
                         "self_fraction": round(e.self_cpu_time_total / total, 4), "calls_per_step": e.count // steps}
                        for e in events[:rows]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15, help="timed rounds (one step of every model each)")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="override a key of the recipe, e.g. train.batch_size=64")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw = yaml.safe_load((REPO / RECIPES["mnist"]).read_text())
    raw.pop("priors", None)
    raw = apply_overrides(raw, args.set + ["train.progress=false", "train.device=cpu"])
    pq_config = config_from_dict(raw, RECIPES["mnist"])
    vq_raw = dict(raw, model=vqvae_plain_model(raw["model"]))
    vq_config = config_from_dict(vq_raw, f"{RECIPES['mnist']} (vqvae_plain)")
    batch = pq_config.train.batch_size
    cwd = Path.cwd()
    os.chdir(REPO)  # the recipe's data path is relative to the repository
    try:
        images, source = load_images(pq_config, batch * 8)
    finally:
        os.chdir(cwd)

    models = {}
    for name, config, fast in (("pqvae", pq_config, True), ("pqvae_before", pq_config, False),
                               ("vqvae_plain", vq_config, None)):
        models[name] = make_step(config, images, fast)
    params = {name: sum(p.numel() for p in model.parameters()) for name, (model, _) in models.items()}

    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for i in range(args.warmup + args.steps):
        for name in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            models[name][1]()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    load_timed = os.getloadavg()
    median = {name: statistics.median(t) for name, t in times.items()}
    print({k: round(v, 4) for k, v in median.items()}, flush=True)

    profiles = {name: profile_summary(models[name][1], args.profile_steps) for name in models}
    result = {
        "script": "benchmarks/pqvae_step.py",
        "command": "OMP_NUM_THREADS=1 python benchmarks/pqvae_step.py " + " ".join(sys.argv[1:]),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in load_timed],
        "load_average_note": "os.getloadavg() (1, 5, 15 min) right after the timed rounds, on a 2-core machine",
        "device": "cpu",
        "batch_size": batch,
        "image_size": 32,
        "images": source,
        "warmup": args.warmup,
        "steps": args.steps,
        "params": {"pqvae": params["pqvae"], "vqvae_plain": params["vqvae_plain"]},
        "params_note": "the PQ-VAE's extra parameters are its L spatial (s x h*w) and channel (c x C) transforms; "
                       "encoder, decoder and 1x1 pre-quantization conv are the same sizes in both",
        "step_s": {name: round(median[name], 4) for name in models},
        "step_s_all": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "step_ratio": round(median["pqvae"] / median["vqvae_plain"], 3),
        "step_ratio_before": round(median["pqvae_before"] / median["vqvae_plain"], 3),
        "speedup": round(median["pqvae_before"] / median["pqvae"], 3),
        "note": "pqvae: ProgressiveQuantizer.fast_chain (the default); pqvae_before: fast_chain = False, the per-step "
                "autograd chain of the implementation before issue 29; medians of alternated steps in one process",
        "profile_steps": args.profile_steps,
        "profile": profiles,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps({k: result[k] for k in ("params", "step_s", "step_ratio", "step_ratio_before", "speedup",
                                             "load_average")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
