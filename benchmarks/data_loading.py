"""Data loading's share of a training step: the 256x256 recipe on a folder of PNGs read on access.

Generates (once) a folder of 256x256 RGB PNGs (a random colour gradient plus noise, ~100 KB each: slower to decode
than most photos' PNGs), then trains ``configs/hvqvae3-256.yaml`` on it as ``hiervq train`` would (``data.lazy:
true``, ``data.workers`` worker processes decoding and augmenting the next batches, the library's
``Trainer.train_step``), and times every step: ``wait`` is the time the training loop is blocked in
``next(iterator)`` of the epoch's batches, ``step`` the time from asking for the batch to the end of the
optimiser step. ``--warmup`` steps (worker start-up, the first prefetch, k-means init) are not timed.

Writes ``benchmarks/results/data_loading.json``: ``{"image_size", "workers", "threads", "batch", "steps",
"step_s" (mean seconds per step), "wait_s" (mean seconds blocked per step), "wait_fraction" (wait_s / step_s),
"images", "load_average"}`` (the 1-minute load average when the measurement ended: the machine may be shared),
plus what the docs' reasoning about the margin needs: ``params`` (the model's parameter count), ``png_kb`` (mean
file size of the folder's PNGs) and ``decode_ms`` (median time to read one of them with
:func:`hiervq.data.readers.read_image`, over the first ``--batch`` files, in this process after the steps, at the
same load). ``--summarize`` trains nothing: it adds ``params`` (the model built from the recipe at
``image_size``; a few seconds) to an existing JSON; the other two need the folder and a full run.

    OMP_NUM_THREADS=1 python benchmarks/data_loading.py                    # 512 images in /tmp, 2 workers
    OMP_NUM_THREADS=1 python benchmarks/data_loading.py --workers 0 --steps 5 --out /tmp/d.json
    python benchmarks/data_loading.py --summarize                            # add params to the committed JSON
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "data_loading.json"


def make_folder(folder: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """``n`` size x size RGB PNGs in ``folder`` (kept between runs; only missing files are written)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    for i in range(n):
        colours = rng.integers(0, 200, (2, 3))
        path = folder / f"img{i:05d}.png"
        if path.exists():
            continue
        image = ramp[:, None, None] * colours[0] + ramp[None, :, None] * colours[1] * 0.25
        image = image + rng.integers(0, 48, (size, size, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return folder


def measure(folder: Path, workers: int, batch: int, steps: int, warmup: int, image_size: int) -> dict:
    from hiervq.data import load_data
    from hiervq.train import load_config
    from hiervq.train.engine import make_optimizer, make_scheduler
    from hiervq.train.run import build_for_data, seed_everything
    from hiervq.train.trainer import AutoencoderTask, Trainer

    overrides = [f"data.path={folder}", "data.lazy=true", f"data.workers={workers}", f"data.image_size={image_size}",
                 f"train.batch_size={batch}", "train.progress=false"]
    config = load_config("hvqvae3-256", overrides)
    seed_everything(config.seed)
    data = load_data(config.data)
    model = build_for_data(config, data)
    trainer = Trainer(config.train, None, seed=config.seed)
    task = AutoencoderTask(trainer, model, data)
    params = task.parameters(task.phases()[0])
    optimizer = make_optimizer(config.train, params, config.train.lr)
    scheduler = make_scheduler(optimizer, config.train, 10**6, config.train.schedule)
    task.train_mode()
    waits, totals = [], []
    epoch, batches = 0, iter(task.batches(0))
    try:
        for step in range(warmup + steps):
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:  # a new epoch (its first batches are prefetched when its iterator starts)
                epoch += 1
                batches = iter(task.batches(epoch))
                batch = next(batches)
            t1 = time.perf_counter()
            trainer.train_step(task, optimizer, scheduler, params, batch)
            t2 = time.perf_counter()
            if step >= warmup:
                waits.append(t1 - t0)
                totals.append(t2 - t0)
            print(f"step {step + 1}: wait {t1 - t0:.3f}s of {t2 - t0:.2f}s", flush=True)
    finally:
        task.end_fit()
    step_s, wait_s = float(np.mean(totals)), float(np.mean(waits))
    return {
        "image_size": image_size,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "batch": batch_size_of(batch),
        "steps": steps,
        "images": len(data.train) + len(data.test),
        "step_s": round(step_s, 4),
        "wait_s": round(wait_s, 5),
        "wait_fraction": round(wait_s / step_s, 5),
        "max_wait_s": round(float(np.max(waits)), 4),
        "load_average": round(os.getloadavg()[0], 2),
    }


def recipe_params(image_size: int) -> int:
    """Parameters of ``configs/hvqvae3-256.yaml`` built for RGB images of ``image_size`` (nothing is trained)."""
    from hiervq.train import load_config

    config = load_config("hvqvae3-256", [f"data.image_size={image_size}"])
    return config.build_model(in_channels=3, image_size=image_size).num_parameters()


def decode_stats(folder: Path, n: int) -> dict:
    """Mean PNG size in KB over the folder, and the median ms to read one of its first ``n`` files."""
    from hiervq.data.readers import read_image

    files = sorted(folder.glob("*.png"))
    times = []
    for path in files[:n]:
        t0 = time.perf_counter()
        read_image(path)
        times.append(time.perf_counter() - t0)
    return {"png_kb": round(float(np.mean([f.stat().st_size for f in files])) / 1000, 1),
            "decode_ms": round(1000 * float(np.median(times)), 1)}


def batch_size_of(batch) -> int:
    return int(batch[0].shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/hiervq-data-loading-256"))
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: add params (the recipe's model, built) to the existing --out JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from hiervq.train.report import write_json

    if args.summarize:
        import json

        record = json.loads(args.out.read_text())
        record["params"] = recipe_params(record["image_size"])
        write_json(args.out, record)
        print(record, flush=True)
        return
    t0 = time.perf_counter()
    make_folder(args.folder, args.images, args.image_size)
    print(f"{args.images} PNGs in {args.folder} ({time.perf_counter() - t0:.1f}s)", flush=True)
    record = measure(args.folder, args.workers, args.batch, args.steps, args.warmup, args.image_size)
    record["params"] = recipe_params(args.image_size)
    record.update(decode_stats(args.folder, args.batch))
    write_json(args.out, {"script": "benchmarks/data_loading.py", **record})
    print(record, flush=True)


if __name__ == "__main__":
    main()
