"""Where the class information goes in a stack: the same MLP head on every stage's joint latent of a pretrained run.

A diagnostic for benchmarks/label_fractions_pbc.py: the head of ``classify.head`` (same label subsets, same epoch
selection on validation) trained on stack 1's stage-1, stage-2 and stage-3 joint latents (and on the dual model's
stack-2 latent alone), to show how much of the class information each reconstruction-trained stage keeps, and, per input channel of
every later stage, the fraction of that channel's test variance the stage reconstructs (R^2 = 1 - MSE_c / Var_c):
without per-channel standardisation of stage inputs the small-scale channels (the upsampled top level) are left
out. Each run is one entry of benchmarks/results/label_fractions_stages.json (other entries are kept):

    {"variants": {TAG: {"run": str, "input_norm": bool, "fractions": [...],
                        "rows": {"stack1.stage1": {"feature_shape": [C, h, w], "test_acc": [...]}, ...},
                        "channel_r2": {"stack1.stage2": [R^2 per input channel], ...}}}}

Run after pretraining (e.g. the label-fraction benchmark's run); about 2 minutes on one thread at 32x32:

    OMP_NUM_THREADS=1 python benchmarks/label_fractions_stages.py --run RUN --tag input_norm --set data.image_size=32
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import hiervq  # noqa: E402
from hiervq.classify import MLPHead  # noqa: E402
from hiervq.classify.mlp import as_inputs  # noqa: E402
from hiervq.data import label_subset, load_data  # noqa: E402
from hiervq.train import (
    fit_classifier,  # noqa: E402
    load_config,  # noqa: E402
)
from hiervq.train.run import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "svqvae-dual-pbc.yaml"
RESULT = ROOT / "benchmarks" / "results" / "label_fractions_stages.json"


@torch.no_grad()
def stage_latents(model, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Every stage's joint latent of stack 1 (and stack 2's final latent), flattened: name -> (N, F)."""
    model.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        latents = model.stack1.latents(as_inputs(images[i : i + batch_size]))
        named = {f"stack1.stage{j + 1}": z for j, z in enumerate(latents)}
        named["stack2"] = model.stack2.features(model.second_input(latents[0], latents[-1]))
        for name, z in named.items():
            out.setdefault(name, []).append(z.flatten(1).float())
    return {name: torch.cat(parts) for name, parts in out.items()}


@torch.no_grad()
def channel_r2(model, images: torch.Tensor, batch_size: int = 256) -> dict[str, list[float]]:
    """Per input channel of stack 1's stages 2.., the fraction of its variance over ``images`` that the stage's
    own reconstruction (codes -> decoder) explains, on the latent's own scale."""
    model.eval()
    sums: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        latents = model.stack1.latents(as_inputs(images[i : i + batch_size]))
        for j, stage in enumerate(model.stack1.stages[1:], start=1):
            h = latents[j - 1]
            recon = stage.decode(stage.encode(h))
            err = (recon - h).double().pow(2).sum((0, 2, 3))
            parts = sums.setdefault(f"stack1.stage{j + 1}", [torch.zeros_like(err) for _ in range(4)])
            parts[0] += err
            parts[1] += h.double().sum((0, 2, 3))
            parts[2] += h.double().pow(2).sum((0, 2, 3))
            parts[3] += h.shape[0] * h.shape[2] * h.shape[3]
    out = {}
    for name, (err, total, squares, n) in sums.items():
        var = squares / n - (total / n).pow(2)
        out[name] = [round(float(v), 4) for v in 1 - (err / n) / var]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/label_fractions_pbc/pretrain", help="finished svqvae-dual run")
    parser.add_argument("--fractions", default="1,0.1", help="label fractions")
    parser.add_argument("--rows", help="comma-separated subset of stack1.stage1,...,stack2")
    parser.add_argument("--result", default=str(RESULT))
    parser.add_argument("--tag", default="default", help="name of this run's entry in the results file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (data)")
    args = parser.parse_args()
    config = load_config(CONFIG, args.set)
    cc = config.classify
    fractions = [float(f) for f in args.fractions.split(",")]
    data = load_data(config.data)
    model = hiervq.load(args.run)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    y = {k: s.labels for k, s in splits.items()}
    t0 = time.perf_counter()
    feats = {k: stage_latents(model, s.images, cc.feature_batch_size) for k, s in splits.items()}
    print(f"latents of {len(y)} splits in {time.perf_counter() - t0:.0f}s")
    shapes = {}
    with torch.no_grad():
        latents = model.stack1.latents(as_inputs(data.train.images[:1]))
        shapes = {f"stack1.stage{j + 1}": list(z.shape[1:]) for j, z in enumerate(latents)}
        shapes["stack2"] = list(model.stack2.features(model.second_input(latents[0], latents[-1])).shape[1:])
    r2 = channel_r2(model, data.test.images, cc.feature_batch_size)
    print("R^2 per input channel:", r2, flush=True)
    names = args.rows.split(",") if args.rows else list(shapes)
    rows = {}
    for name in names:
        accs = []
        for f in fractions:
            idx = torch.as_tensor(label_subset(y["train"].numpy(), f, cc.subset_seed))
            seed_everything(cc.seed)
            head = MLPHead(feats["train"][name].shape[1], data.train.num_classes, cc.head.hidden, cc.head.dropout)
            if cc.head.standardize:
                head.set_standardization(feats["train"][name])
            res = fit_classifier(head, (feats["train"][name][idx], y["train"][idx]), (feats["val"][name], y["val"]),
                                 (feats["test"][name], y["test"]), cc.head, data.train.num_classes, seed=cc.seed)
            accs.append(res.test_acc)
            print(f"{name} {shapes[name]} {100 * f:g}%: test acc {res.test_acc:.4f} (epoch {res.best_epoch}, "
                  f"{res.train_s:.0f}s)", flush=True)
        rows[name] = {"feature_shape": shapes[name], "test_acc": accs}
    result = Path(args.result)
    previous = json.loads(result.read_text()) if result.is_file() else {}
    variants = previous.get("variants", {})
    variants[args.tag] = {"run": args.run, "input_norm": bool(model.stack1.stages[-1].config.input_norm),
                          "image_size": config.data.image_size, "fractions": fractions, "rows": rows,
                          "channel_r2": r2, "threads": torch.get_num_threads()}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps({"script": "benchmarks/label_fractions_stages.py", "variants": variants}, indent=2) + "\n")
    print(f"-> {args.result} ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
