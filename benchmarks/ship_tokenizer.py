"""Turn a finished run directory into a tokenizer shipped inside the package: ``src/hiervq/weights/NAME/``.

    python benchmarks/ship_tokenizer.py RUN NAME --recipe vqvae-mnist [--dtype auto] [--check 500] [--note TEXT]

Writes ``config.json`` + ``model.safetensors`` (the autoencoder), ``priors/level<N>/`` (the run's priors, if it has
any, so ``hiervq sample NAME`` works), ``card.json`` (the numbers) and ``card.md`` (the model card). The metrics are
measured here, on the weights as shipped:

- ``test``: the whole test split (the numbers ``hiervq models`` shows), next to ``test_float32`` (the run's own
  float32 weights, re-evaluated the same way);
- ``check``: the first ``--check`` test images in the reader's order, what the test suite re-measures in seconds
  (tests/test_zoo.py) to catch a shipped tokenizer that no longer matches its card.

``--dtype auto`` stores the autoencoder in float16 when that keeps the test MSE within 1 % of float32 (half the
bytes), else in float32; ``--prior-dtype auto`` does the same for each prior, measured as the NLL in bits per code
on the cached test codes of the first ``--prior-check`` test images. The priors' test NLLs in the card are those
of their runs, on codes of the float32 autoencoder; the card gives the fraction of codes the shipped weights
reproduce.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save

REPO = Path(__file__).resolve().parents[1]

#: what the cards say about each dataset's terms (the shared data README gives the sources)
DATA_LICENCES = {
    "mnist": ("MNIST (Y. LeCun, C. Cortes, C. J. C. Burges): Creative Commons Attribution-Share Alike 3.0 "
              "(CC BY-SA 3.0), as stated on Yann LeCun's MNIST page; cite LeCun et al., Proc. IEEE 86(11), 1998."),
    "cifar10": ("CIFAR-10 (A. Krizhevsky, V. Nair, G. Hinton): no formal licence; freely distributed for research, "
                "the authors ask users to cite A. Krizhevsky, \"Learning Multiple Layers of Features from Tiny "
                "Images\", tech. report, University of Toronto, 2009."),
}


def dataset_key(data: dict) -> str:
    path = str(data.get("path") or "")
    return "cifar10" if data.get("name") == "cifar10" or "cifar10" in path else str(data.get("name"))


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def overrides(recipe: str | None, run_config) -> list[str]:
    """The ``--set`` overrides that turn the recipe into the run's config (keys whose value differs)."""
    if not recipe:
        return []
    from hiervq.train import load_config

    base, ran = flat(load_config(recipe).to_dict()), flat(run_config.to_dict())
    return [f"{k}={json.dumps(ran.get(k))}" for k in sorted(set(base) | set(ran)) if base.get(k) != ran.get(k)]


def half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def metrics(result: dict) -> dict:
    keys = ("mse", "psnr", "psnr_of_mean_mse", "ssim", "ms_ssim", "images")
    return {k: result[k] for k in keys if k in result}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_agreement(a, b, images: torch.Tensor) -> list[float]:
    """Per level, the fraction of code positions where models ``a`` and ``b`` pick the same code on ``images``."""
    with torch.no_grad():
        ca, cb = a.codes_to_list(a.encode(images)), b.codes_to_list(b.encode(images))
    return [float((x == y).float().mean()) for x, y in zip(ca, cb)]


def ship(args: argparse.Namespace) -> Path:
    from hiervq.data import load_data
    from hiervq.layout import MODEL_CONFIG, MODEL_WEIGHTS, RunDir
    from hiervq.pretrained import load, load_state, read_meta
    from hiervq.priors import prior_kind_for
    from hiervq.priors.codes import cache_key, load_codes
    from hiervq.priors.task import evaluate_prior
    from hiervq.train import read_run_config
    from hiervq.train.config import TrainConfig
    from hiervq.train.run import evaluate_first
    from hiervq.train.trainer import Trainer
    from hiervq.zoo import CARD_JSON, CARD_MD

    run = RunDir(args.run)
    if not run.is_finished():
        sys.exit(f"{run}: not a finished run (no summary.json)")
    out = Path(args.out) / args.name
    if out.exists() and not args.overwrite:
        sys.exit(f"{out} exists (--overwrite replaces it)")
    config = read_run_config(run)
    summary = run.read_summary()
    meta = read_meta(run)
    t0 = time.perf_counter()

    model32 = load(run)
    data = load_data(config.data)
    test = data.test
    trainer = Trainer(TrainConfig(device="cpu"), None)
    full32 = trainer.evaluate(model32, test)
    state32 = model32.state_dict()
    model16 = copy.deepcopy(model32)
    load_state(model16, half(state32), "float16 weights")
    full16 = trainer.evaluate(model16, test)
    rel = full16["mse"] / full32["mse"] - 1.0
    dtype = args.dtype if args.dtype != "auto" else ("float16" if rel <= 0.01 else "float32")
    shipped = model16 if dtype == "float16" else model32
    state = half(state32) if dtype == "float16" else state32
    full = full16 if dtype == "float16" else full32
    print(f"test MSE float32 {full32['mse']:.4e}, float16 {full16['mse']:.4e} ({100 * rel:+.2f} %): shipping {dtype}")

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MODEL_WEIGHTS).write_bytes(save({k: v.detach().contiguous() for k, v in state.items()}))
    meta = dict(meta)
    described = meta.get("data") or config.data.describe(tuple(model32.image_shape))  # older saves lack it
    meta["data"] = {k: v for k, v in described.items() if k != "absolute_path"}
    meta["extra"] = {**(meta.get("extra") or {}), "tokenizer": args.name, "weights_dtype": dtype}
    (out / MODEL_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")

    n = min(args.check, len(test))
    check = metrics(evaluate_first(load(out), config.data, n))  # reloaded: exactly what users get
    agree = code_agreement(model32, shipped, test.images[:n].float() / 255)

    priors = []
    key = cache_key(out, {})
    test_codes = None
    if run.codes.is_file():
        test_codes = load_codes(run.codes)[1].get("test")
    for prior in run.find_priors():
        dst = out / "priors" / prior.name
        dst.mkdir(parents=True)
        pmeta = read_meta(prior)
        extra = dict(pmeta.get("extra") or {})
        extra["autoencoder"] = args.name
        extra["autoencoder_key"] = key  # the shipped weights (see the card for the codes they reproduce)
        level = int(extra["level"])
        p32 = load(prior)
        pstate, pdtype, nll = p32.state_dict(), "float32", {}
        if test_codes is not None and args.prior_dtype != "float32":
            # NLL (bits per code) of both precisions on the first --prior-check test images' codes
            kind = prior_kind_for(model32)
            p16 = copy.deepcopy(p32)
            load_state(p16, half(pstate), "float16 prior")
            positions = int(test_codes.codes[level][0].numel())
            for tag, net in (("float32", p32), ("float16", p16)):
                nats = evaluate_prior(net, kind, level, test_codes, 256, args.prior_check)
                nll[tag] = nats / math.log(2) / positions
            nll["images"] = min(args.prior_check, len(test_codes))
            ok = nll["float16"] <= nll["float32"] * 1.01
            pdtype = "float16" if args.prior_dtype == "float16" or ok else "float32"
            print(f"prior level {level}: {nll['float32']:.4f} bits/code float32, {nll['float16']:.4f} float16: {pdtype}")
        extra["weights_dtype"] = pdtype
        pmeta["extra"] = extra
        pmeta["data"] = {k: v for k, v in (pmeta.get("data") or {}).items() if k != "absolute_path"}
        kept = half(pstate) if pdtype == "float16" else pstate
        (dst / MODEL_WEIGHTS).write_bytes(save({k: v.detach().contiguous() for k, v in kept.items()}))
        (dst / MODEL_CONFIG).write_text(json.dumps(pmeta, indent=2) + "\n")
        ps = prior.read_summary() if prior.is_finished() else {}
        priors.append({k: ps.get(k) for k in ("level", "grid", "codebook_size", "class_conditional", "bits_per_code",
                                              "bits_per_image", "uniform_bits_per_image", "train_bits_per_code",
                                              "epochs", "train_s", "params")}
                      | {"level": level, "weights_dtype": pdtype, "check_bits_per_code": nll})

    data_meta = meta["data"]
    key_name = dataset_key(data_meta)
    history = run.read_metrics()
    card = {
        "name": args.name,
        "description": args.description or "",
        "model": meta["model"],
        "params": sum(p.numel() for p in model32.parameters()),
        "bits_per_image": float(model32.budget().bits_per_image),
        "levels": [{"grid": list(lv["grid"]), "codebook_size": lv.get("codebook_size")} for lv in summary.get("levels", [])],
        "data": {**data_meta, "dataset": key_name, "train_images": len(data.train), "test_images": len(test),
                 "licence": DATA_LICENCES.get(key_name, "see the data's own terms (shared/data/README.md)")},
        "recipe": args.recipe,
        "overrides": overrides(args.recipe, config),
        "hiervq_commit": args.commit or git_commit(),
        "hiervq_version": meta.get("hiervq_version"),
        "torch_version": meta.get("torch_version"),
        "training": {"epochs": summary.get("epochs", len(history)), "steps": summary.get("steps"),
                     "train_s": summary.get("train_s"), "note": args.note or ""},
        "weights_dtype": dtype,
        "test": metrics(full),
        "test_float32": metrics(full32),
        "test_float16": metrics(full16),
        "float16_mse_change": rel,
        "check": {"split": "test", "first": n, **check},
        "codes_same_as_float32": agree,
        "priors": priors,
        "reproduce": [
            " ".join([f"hiervq train {args.recipe or run.config}",
                      *(f"--set {o}" for o in overrides(args.recipe, config) if not o.startswith("data.path=")),
                      f"--out runs/{args.name}"]),
            *([f"hiervq prior runs/{args.name} --level all"] if priors else []),
            f"python benchmarks/ship_tokenizer.py runs/{args.name} {args.name}"
            + (f" --recipe {args.recipe}" if args.recipe else ""),
        ],
    }
    card["size_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (out / CARD_MD).write_text(card_markdown(card))
    card["size_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())  # with the card itself
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {args.name} -> {out} ({card['size_bytes'] / 1e6:.2f} MB; {time.perf_counter() - t0:.0f}s)")
    return out


def card_markdown(c: dict) -> str:
    t, t32, ck, tr, d = c["test"], c["test_float32"], c["check"], c["training"], c["data"]
    lines = [
        f"# {c['name']}",
        "",
        c["description"],
        "",
        "```python",
        "import hiervq",
        f'model = hiervq.load("{c["name"]}")          # nothing is downloaded: the weights ship with hiervq',
        "codes = model.encode(images)                # images: float (N, C, H, W) on [0, 1]",
        "```",
        f"`hiervq encode {c['name']} images/ -o codes.npz`, `hiervq decode {c['name']} codes.npz -o out/`"
        + (f", `hiervq sample {c['name']} -n 8 -o samples.png`" if c["priors"] else ""),
        "",
        "## Model",
        f"- `{c['model']}`, {c['params']:,} parameters, {c['bits_per_image']:.0f} bits per image: "
        + ", ".join(f"{'x'.join(map(str, lv['grid']))} codes from K = {lv['codebook_size']}" for lv in c["levels"]),
        f"- weights stored as {c['weights_dtype']} ({c['size_bytes'] / 1e6:.2f} MB on disk with the card); they are cast "
        "to float32 on loading",
        "",
        "## Data",
        f"- {d['dataset']} ({d['name']} reader), {d['train_images']:,} training and {d['test_images']:,} test images, "
        f"brought to {d['image_size']}x{d['image_size']} with `fit: {d['fit']}`, {d['channels']} channel(s)",
        f"- licence of the data: {d['licence']} Whether the data's terms carry over to weights trained on it is not "
        "settled; check them for your use. The code of hiervq is MIT-licensed (LICENSE).",
        "",
        "## Test metrics (shipped weights)",
        "| images | MSE | PSNR (dB) | SSIM | MS-SSIM |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| whole test split ({t['images']:,}) | {t['mse']:.4e} | {t['psnr']:.2f} | {t.get('ssim', float('nan')):.4f} "
        f"| {t.get('ms_ssim', float('nan')):.4f} |",
        f"| first {ck['first']} test images (the check in tests/test_zoo.py) | {ck['mse']:.4e} | {ck['psnr']:.2f} | "
        f"{ck.get('ssim', float('nan')):.4f} | {ck.get('ms_ssim', float('nan')):.4f} |",
        "",
        f"MSE and PSNR are means over images on [0, 1]. Float32 weights of the same run: test MSE {t32['mse']:.4e}, "
        f"PSNR {t32['psnr']:.2f} dB; float16 changes the test MSE by {100 * c['float16_mse_change']:+.2f} % and "
        "picks the same code as float32 at "
        + ", ".join(f"{100 * a:.2f} %" for a in c["codes_same_as_float32"])
        + " of the code positions (per level) of the check images.",
        "",
    ]
    if c["priors"]:
        lines += [
            "## Priors",
            "| level | grid | K | class-conditional | test bits/code | test bits/image | uniform bits/image | epochs "
            "| stored as | bits/code float32 -> float16 (check) |",
            "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for p in c["priors"]:
            nll = p.get("check_bits_per_code") or {}
            change = (f"{nll['float32']:.4f} -> {nll['float16']:.4f} ({nll['images']} images)" if nll else "-")
            lines.append(
                f"| {p['level']} | {'x'.join(map(str, p['grid'] or []))} | {p['codebook_size']} | "
                f"{p['class_conditional']} | {p['bits_per_code']:.3f} | {p['bits_per_image']:.1f} | "
                f"{p['uniform_bits_per_image']:.0f} | {p['epochs']} | {p['weights_dtype']} | {change} |")
        lines += ["", "Test NLLs (negative log-likelihood of the test codes) are those of the prior runs, on the codes "
                  "of the float32 autoencoder; the check column measures both precisions of each prior on the codes "
                  "of the first test images.", ""]
    lines += [
        "## Training",
        f"- recipe `{c['recipe']}` with overrides: " + (", ".join(f"`{o}`" for o in c["overrides"]) or "none"),
        f"- {tr['epochs']} epochs, {tr['steps']} steps, {tr['train_s'] / 60:.1f} min of training"
        + (f"; {tr['note']}" if tr["note"] else ""),
        f"- hiervq commit `{c['hiervq_commit']}` (version {c['hiervq_version']}), torch {c['torch_version']}",
        "",
        "## Reproduce",
        "From the repository root, with the data under ../shared/data (see its README):",
        "```",
        *c["reproduce"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="finished run directory (with priors/ for a tokenizer with priors)")
    p.add_argument("name", help="tokenizer name, e.g. mnist-vqvae-512")
    p.add_argument("--recipe", help="the recipe the run was trained from (the card lists the overrides)")
    p.add_argument("--dtype", choices=["auto", "float16", "float32"], default="auto")
    p.add_argument("--prior-dtype", choices=["auto", "float16", "float32"], default="auto",
                   help="auto: float16 when a prior's test NLL stays within 1 %% of float32")
    p.add_argument("--prior-check", type=int, default=2000, help="test images whose codes measure the priors' NLL")
    p.add_argument("--check", type=int, default=500, help="test images of the quick check the tests repeat")
    p.add_argument("--description", default="")
    p.add_argument("--note", default="", help="how it was trained (machine, threads, wall-clock)")
    p.add_argument("--commit", help="hiervq commit the run was trained at (default: the repository's HEAD)")
    p.add_argument("--out", default=str(REPO / "src" / "hiervq" / "weights"))
    p.add_argument("--overwrite", action="store_true")
    ship(p.parse_args())


if __name__ == "__main__":
    main()
