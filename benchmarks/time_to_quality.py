"""Time to quality on CIFAR-10: hiervq's default CIFAR-10 recipe against the VQ-VAE-2 reference's own training loop,
for the same wall-clock budget of training, on the same images; test MSE against seconds for both.

hiervq: configs/vqvae-cifar10.yaml as it is (its model, bf16 training, batch 64, lr 1e-3 with warm-up and a cosine
schedule over the recipe's 48 epochs, k-means init after 200 steps, dead-code reset), one step at a time through
the library's own ``Trainer.train_step``. Reference: the VQ-VAE-2 implementation most PyTorch users compare with
(rosinality/vq-vae-2-pytorch's architecture and training script as written in benchmarks/train_throughput.py:
float32, Adam 3e-4, batch 128, MSE on [-1, 1] + 0.25 x latent loss).

Both train in one process, in turns of ``--slice`` seconds each (so the machine's load falls on both alike), until
each has trained ``--budget`` seconds; training time excludes the evaluations. Every ``--every`` seconds of a
side's training, its test MSE on [0, 1] is measured (float32, eval mode) on the first ``--test`` test images.
Nothing is selected: each curve is what its model reaches after that much training. Writes
benchmarks/results/time_to_quality.json after every evaluation:

    {"script", "budget_s", "threads", "test_images", "hiervq": {"curve": [[seconds, mse], ...], "steps", ...},
     "reference": {"curve": [...], "steps", ...}, "hiervq_passes_reference_final_s": float | null}

``hiervq_passes_reference_final_s``: the first second of hiervq's curve at or below the reference's final MSE;
``reference_final_over_hiervq_at_pass`` and ``reference_final_over_hiervq_final``: the reference's final MSE over
hiervq's at that point and at its last (:func:`summarize`; ``--summarize`` adds them to an existing JSON).
Run from the repository root (data in ../shared/data/cifar10):

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --budget 600 --threads 1
    python benchmarks/time_to_quality.py --summarize    # the summary keys of the existing JSON
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hiervq.data import DataSplits, ImageSet
from hiervq.io import write_json
from hiervq.tasks import TrainConfig
from hiervq.train import Trainer, load_config
from hiervq.train.engine import make_optimizer, make_scheduler
from hiervq.train.trainer import AutoencoderTask
from train_throughput import BETA, LR, RefVQVAE2

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vqvae-cifar10.yaml"
DATA = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10.npz"
RESULT = ROOT / "benchmarks" / "results" / "time_to_quality.json"
REFERENCE_BATCH = 128


class Side:
    """One model in training: ``step()`` trains one batch; ``test_mse(x01)`` measures it; ``seconds`` of training."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds, self.steps, self.curve = name, 0.0, 0, []


class Ours(Side):
    def __init__(self, train: torch.Tensor) -> None:
        super().__init__("hiervq")
        config = load_config(CONFIG, ["train.progress=false", "train.device=cpu"])
        self.model = config.build_model(in_channels=3, image_size=32)
        self.trainer = Trainer(config.train, run_dir=None, seed=config.seed)
        self.task = AutoencoderTask(self.trainer, self.model, DataSplits(train=ImageSet(train), test=ImageSet(train[:8])))
        phase = self.task.phases()[0]
        self.params = self.task.parameters(phase)
        cfg: TrainConfig = config.train
        self.optimizer = make_optimizer(cfg, self.params, cfg.lr)
        total = self.task.steps_per_epoch() * phase.epochs  # the recipe's whole schedule, as a full run has it
        self.scheduler = make_scheduler(self.optimizer, cfg, total, cfg.schedule)
        self.batches, self.epoch = iter(()), 0
        self.describe = {"config": str(CONFIG.relative_to(ROOT)), "batch_size": cfg.batch_size, "lr": cfg.lr,
                         "amp": cfg.amp, "schedule": cfg.schedule, "schedule_steps": total,
                         "params": self.model.num_parameters()}

    def step(self) -> None:
        self.task.train_mode()
        batch = next(self.batches, None)
        if batch is None:  # the next epoch's batches, drawn as the trainer draws them
            self.batches = iter(self.task.batches(self.epoch))
            self.epoch += 1
            batch = next(self.batches)
        self.trainer.train_step(self.task, self.optimizer, self.scheduler, self.params, batch)

    @torch.no_grad()
    def test_mse(self, x01: torch.Tensor) -> float:
        self.model.eval()
        errors = [F.mse_loss(self.model(x).recon.float().clamp(0, 1), x, reduction="sum") for x in x01.split(250)]
        return float(sum(errors) / x01.numel())


class Reference(Side):
    def __init__(self, train: torch.Tensor) -> None:
        super().__init__("reference")
        torch.manual_seed(0)
        self.model = RefVQVAE2(3).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.train, self.order, self.at = train, torch.randperm(len(train)), 0
        self.describe = {"batch_size": REFERENCE_BATCH, "lr": LR, "precision": "float32",
                         "params": sum(p.numel() for p in self.model.parameters())}

    def step(self) -> None:
        self.model.train()
        if self.at + REFERENCE_BATCH > len(self.order):
            self.order, self.at = torch.randperm(len(self.train)), 0
        x = self.train[self.order[self.at : self.at + REFERENCE_BATCH]].float().div_(255.0).mul_(2.0).sub_(1.0)
        self.at += REFERENCE_BATCH
        self.model.zero_grad()
        out, latent_loss = self.model(x)
        loss = F.mse_loss(out, x) + BETA * latent_loss.mean()
        loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def test_mse(self, x01: torch.Tensor) -> float:
        self.model.eval()
        errors = [F.mse_loss(((self.model(x * 2 - 1)[0] + 1) / 2).clamp(0, 1), x, reduction="sum")
                  for x in x01.split(250)]
        return float(sum(errors) / x01.numel())


def summarize(result: dict) -> dict:
    """The keys the docs read off the two curves: ``reference_final_mse`` (the reference's last point),
    ``hiervq_passes_reference_final_s`` (the first second of hiervq's curve at or below it, None if never),
    ``reference_final_over_hiervq_at_pass`` (the reference's final MSE over hiervq's at that point: how much lower
    ours already is) and ``reference_final_over_hiervq_final`` (over hiervq's last point)."""
    final = result["reference"]["curve"][-1][1]
    passed = next(((s, mse) for s, mse in result["hiervq"]["curve"] if mse <= final), None)
    return {"reference_final_mse": final,
            "hiervq_passes_reference_final_s": passed[0] if passed else None,
            "reference_final_over_hiervq_at_pass": final / passed[1] if passed else None,
            "reference_final_over_hiervq_final": final / result["hiervq"]["curve"][-1][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=600, help="training seconds per side")
    parser.add_argument("--slice", type=float, default=20.0, help="seconds of training per turn")
    parser.add_argument("--every", type=float, default=60.0, help="evaluate every this many training seconds")
    parser.add_argument("--test", type=int, default=2000, help="first test images of the curve")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: add the summary keys (summarize()) to the existing --output JSON")
    args = parser.parse_args()
    if args.summarize:
        result = json.loads(Path(args.output).read_text())
        result.update(summarize(result))
        write_json(Path(args.output), result)
        print({k: result[k] for k in summarize(result)})
        return
    torch.set_num_threads(args.threads)
    with np.load(DATA) as archive:
        train = torch.from_numpy(archive["train_images"]).permute(0, 3, 1, 2).contiguous()
        test = torch.from_numpy(archive["test_images"][: args.test]).permute(0, 3, 1, 2).float().div(255.0)
    sides = [Ours(train), Reference(train)]
    result = {"script": "benchmarks/time_to_quality.py", "budget_s": args.budget, "threads": torch.get_num_threads(),
              "test_images": len(test), "slice_s": args.slice, "every_s": args.every,
              "note": "both sides train in turns in one process; seconds are training time (evaluations excluded)"}
    for side in sides:
        side.curve.append([0.0, side.test_mse(test)])
    turn = 0
    while any(s.seconds < args.budget for s in sides):
        side = sides[turn % 2] if sides[turn % 2].seconds < args.budget else sides[(turn + 1) % 2]
        turn += 1
        end = min(side.seconds + args.slice, args.budget)
        while side.seconds < end:
            t0 = time.perf_counter()
            side.step()
            side.seconds += time.perf_counter() - t0
            side.steps += 1
            due = args.every * len(side.curve)
            if side.seconds >= due or side.seconds >= args.budget:
                side.curve.append([round(side.seconds, 1), side.test_mse(test)])
                for s in sides:
                    result[s.name] = {"curve": s.curve, "steps": s.steps, **s.describe}
                write_json(Path(args.output), result)
                print(f"{side.name}: {side.seconds:.0f} s, {side.steps} steps, test MSE {side.curve[-1][1]:.3e}",
                      flush=True)
    for s in sides:
        result[s.name] = {"curve": s.curve, "steps": s.steps, **s.describe}
    result.update(summarize(result))
    write_json(Path(args.output), result)
    print(f"reference final {result['reference_final_mse']:.3e}; hiervq passes it at "
          f"{result['hiervq_passes_reference_final_s']} s")


if __name__ == "__main__":
    main()
