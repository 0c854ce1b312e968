"""Rate-distortion of the codec at several rates against JPEG, WebP and AVIF, on CIFAR-10 and on photos.

    OMP_NUM_THREADS=1 python benchmarks/codec_rd.py [NAME=RUN ...] [--images 2000]

Each RUN is a trained autoencoder run with a prior for every level (default: the runs of
``configs/codec-rate-*.yaml`` under ``runs/``, trained with ``hiervq train`` and given checkerboard priors by
``hiervq prior RUN --level all``). Two image sets:

* ``cifar10``: the first ``--images`` images of the CIFAR-10 test split (``test_images`` of
  ``../shared/data/cifar10/cifar10.npz``, in file order); nothing is selected on them;
* ``photos``: the colour images bundled with scikit-image that load offline (astronaut, chelsea, coffee,
  colorwheel, hubble_deep_field, immunohistochemistry, rocket; ``cat`` is chelsea again, ``logo`` an RGBA graphic,
  and ``retina`` (1411x1411) is left out by default: a 16x16-per-32x32 K = 1024 model's float64 logits alone would
  take 4 GB for it), each at its native size: the models are fully convolutional, and the codec pads an image to
  the model's stride and crops it back.

Per model and set: real ``.hvq`` files from :class:`hiervq.Codec` (headers included), ``bpp_file`` = all files'
bytes x 8 / all images' pixels, ``bpp_prior`` = the priors' estimate likewise, PSNR (mean over images of
10 log10(1 / MSE) of the decompressed image rounded to 8 bits) and MS-SSIM (mean over images,
:func:`hiervq.metrics.ssim_per_image`: the standard 5 scales on the photos, 3 scales with a 7-tap window on 32x32),
decode seconds per image (``Codec.decompress_codes`` + the decoder, wall clock); every file's decoded codes are
checked against the encoder's (the run stops if one differs). A model the codec refuses to code a photo with
(``HierVQError``) is recorded under ``photos.failed`` with the message and left out of ``photos.models``. On the
photos (coded at ``coding_threads``), ``decode_s_512_per_model`` is each model's time to decompress the 512x512
astronaut within that run; ``--sets timing`` measures the 512x512 compress and decompress times apart, on an
otherwise idle machine (fastest of 3 after a warm-up, at the process's thread count): ``decode_s_512`` and
``compress_s_512`` (the slowest model's), ``threads``, and per model with its network passes per level in
``timing``:

    OMP_NUM_THREADS=2 python benchmarks/codec_rd.py --sets timing

Anchors on the same images: JPEG (Pillow, ``optimize=True``, 4:2:0, quality 5..95), WebP (Pillow, lossy,
``method=6``, quality 0..100) and AVIF (Pillow's AVIF plugin, its default speed 6 and 4:2:0, quality 0..100): the
bytes of the encoded files, PSNR and MS-SSIM after decoding.

Rate saved: per model and anchor, the anchor's bytes at the model's PSNR, interpolated linearly in log(bytes)
against PSNR between the qualities on the anchor's front (those no other quality beats on both), where the
model's PSNR lies inside the anchor's measured range; ``saved_percent`` = 100 (1 - ours / anchor's) (negative: we need more bytes);
``dominated_by``: the cheapest quality with both fewer bits and a higher PSNR than the model, where one exists.

Writes ``benchmarks/results/codec_rd.json`` after every model and every anchor quality list, and continues from it
when run again (models by name, anchors by quality; ``--redo`` to start afresh); and ``docs/codec_rd_cifar10.png``,
``docs/codec_rd_photos.png`` (PSNR and MS-SSIM against bpp).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RATE_CONFIGS = ["codec-rate-8x8-k64", "codec-rate-8x8-k512", "codec-rate-16x16-8x8", "codec-rate-16x16-k128",
                "codec-rate-16x16-k1024"]
PHOTOS = ["astronaut", "chelsea", "coffee", "colorwheel", "hubble_deep_field", "immunohistochemistry", "rocket"]
QUALITIES = {"jpeg": list(range(5, 96, 5)), "webp": list(range(0, 101, 5)), "avif": list(range(0, 101, 10))}
SCRIPT = "benchmarks/codec_rd.py"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------------------------------------------- quality
def quality(originals: list[torch.Tensor], decoded: list[torch.Tensor]) -> dict[str, float]:
    """Mean PSNR (dB) and MS-SSIM over images of 8-bit ``decoded`` against ``originals`` (uint8, each (C, H, W) or
    a batch (B, C, H, W) of one size)."""
    from hiervq.metrics import mse_per_image, psnr, ssim_per_image

    p, m = [], []
    for a, b in zip(originals, decoded):
        x, y = a.float() / 255, b.float() / 255
        if x.ndim == 3:
            x, y = x[None], y[None]
        for s in range(0, len(x), 500):
            p.append(psnr(mse_per_image(x[s : s + 500], y[s : s + 500])))
            m.append(ssim_per_image(x[s : s + 500], y[s : s + 500])[1])
    return {"psnr": float(torch.cat(p).mean()), "ms_ssim": float(torch.cat(m).mean())}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


# ---------------------------------------------------------------------------------------------------- anchors
def anchor(images: list[np.ndarray], fmt: str, q: int) -> dict:
    """One Pillow codec at one quality over all images (each (H, W, 3) uint8): bpp of the files, PSNR, MS-SSIM."""
    from PIL import Image

    options = {"jpeg": {"optimize": True}, "webp": {"method": 6}, "avif": {}}[fmt]
    total, pixels, decoded = 0, 0, []
    for img in images:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, fmt.upper(), quality=q, **options)
        total += buffer.tell()
        pixels += img.shape[0] * img.shape[1]
        back = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        assert back.shape == img.shape, (fmt, q, back.shape, img.shape)
        decoded.append(back)
    to_t = lambda arrays: [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1) for a in arrays]  # noqa: E731
    if len({a.shape for a in images}) == 1:  # one size: score as one batch
        orig = [torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)]
        dec = [torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)]
    else:
        orig, dec = to_t(images), to_t(decoded)
    return {"quality": q, "bpp": total * 8 / pixels, "bytes": total, **quality(orig, dec)}


# ---------------------------------------------------------------------------------------------------- models
def run_info(run: Path) -> dict:
    """The recipe and training times recorded in a run folder."""
    info: dict = {"run": str(run)}
    cfg = REPO / "configs" / f"{run.name}.yaml"
    if cfg.is_file():
        info["recipe"] = str(cfg.relative_to(REPO))
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        info["train_epochs"] = len(rows)
        info["train_s"] = round(rows[-1].get("train_s", 0.0), 1) if rows else None  # cumulative in metrics.jsonl
        info["val_psnr"] = rows[-1].get("val", {}).get("psnr")
    priors = []
    for summary in sorted((run / "priors").glob("level*/summary.json")):
        s = json.loads(summary.read_text())
        pm = summary.parent / "metrics.jsonl"
        lines = [x for x in pm.read_text().splitlines() if x.strip()] if pm.is_file() else []
        train_s = json.loads(lines[-1]).get("train_s") if lines else None  # cumulative, like the autoencoder's
        priors.append({"level": summary.parent.name, "test_bits_per_code": s.get("test", {}).get("bits_per_code", s.get("bits_per_code")),
                       "train_s": None if train_s is None else round(train_s, 1)})
    info["priors"] = priors
    return info


def code_and_decode(codec, batch: torch.Tensor) -> tuple[list[bytes], torch.Tensor, float, float]:
    """Compress a batch of one size, decompress it (timed), check the codes: (files, decoded uint8, bits sum,
    decode seconds)."""
    result = codec.compress_batch(batch.float() / 255)
    t0 = time.perf_counter()
    codes, size = codec.decompress_codes(result.files)
    with torch.no_grad():
        images = codec.model.decode(codec.model.codes_from_list(codes))[..., : size[0], : size[1]].clamp(0, 1)
    seconds = time.perf_counter() - t0
    for a, e in zip(codes, result.codes):
        if not torch.equal(a, e):
            raise SystemExit(f"decoded codes differ from the encoder's ({tuple(batch.shape)})")
    return result.files, to_uint8(images), float(result.bits.sum()), seconds


def measure_cifar(codec, name: str, run: Path, originals: torch.Tensor, batch_size: int) -> dict:
    from hiervq.codec import header_bytes

    files, decoded, bits, seconds = [], [], 0.0, 0.0
    for s in range(0, len(originals), batch_size):
        f, d, b, t = code_and_decode(codec, originals[s : s + batch_size])
        files += f
        decoded.append(d)
        bits += b
        seconds += t
    n, pixels = len(files), originals.shape[-1] * originals.shape[-2]
    total = sum(len(f) for f in files)
    return {"name": name, "bpp_file": total * 8 / n / pixels, "bpp_prior": bits / n / pixels,
            **quality([originals], [torch.cat(decoded)]), "decode_s_per_image": seconds / n,
            "bytes": total, "header_bytes": header_bytes(files[0]), "codes_exact": True, **run_info(run)}


def measure_photos(codec, name: str, run: Path, photos: dict[str, np.ndarray]) -> dict:
    total, bits, pixels, seconds, per_image, originals, decoded = 0, 0.0, 0, 0.0, {}, [], []
    for pname, img in photos.items():
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        f, d, b, t = code_and_decode(codec, x)
        q = quality([x], [d])
        per_image[pname] = {"size": list(img.shape[:2]), "bytes": len(f[0]), "bpp": len(f[0]) * 8 / (img.shape[0] * img.shape[1]),
                            **q, "decode_s": round(t, 3)}
        log(f"  {name} {pname}: {per_image[pname]}")
        total += len(f[0])
        bits += b
        pixels += img.shape[0] * img.shape[1]
        seconds += t
        originals.append(x[0])
        decoded.append(d[0])
    return {"name": name, "bpp_file": total * 8 / pixels, "bpp_prior": bits / pixels, **quality(originals, decoded),
            "decode_s_per_image": seconds / len(photos), "bytes": total, "codes_exact": True, "per_image": per_image,
            "run": str(run)}


def timing_512(entry: dict, runs: list[tuple[str, Path]], threads: int, repeats: int = 3) -> None:
    """Wall-clock seconds to compress and to decompress the 512x512 astronaut with every model at ``threads``
    torch threads (the fastest of ``repeats``, after one untimed warm-up that builds the codec's caches; the
    decoded codes checked against the encoder's each time): ``photos.decode_s_512`` (the slowest model's),
    ``photos.compress_s_512``, per model in ``photos.timing``, and ``photos.threads``."""
    from hiervq.codec import Codec
    from hiervq.priors.checkerboard import PASSES, CheckerboardPrior

    load = list(os.getloadavg())
    img = load_photos(["astronaut"])["astronaut"]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
    per_model = {}
    for name, run in runs:
        codec = Codec.from_run(run)
        best_c = best_d = math.inf
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            result = codec.compress_batch(x)
            t1 = time.perf_counter()
            codes, size = codec.decompress_codes(result.files)
            with torch.no_grad():
                codec.model.decode(codec.model.codes_from_list(codes))
            t2 = time.perf_counter()
            if not all(torch.equal(a, b) for a, b in zip(codes, result.codes)):
                raise SystemExit(f"{name}: decoded codes differ from the encoder's (512x512)")
            if r:  # the first round is the warm-up
                best_c, best_d = min(best_c, t1 - t0), min(best_d, t2 - t1)
        per_model[name] = {"compress_s": round(best_c, 3), "decompress_s": round(best_d, 3),
                           "bytes": len(result.files[0]),
                           "network_passes_per_level": {str(lv): PASSES if isinstance(p, CheckerboardPrior) else "one per code"
                                                        for lv, p in codec.priors.items()}}
        log(f"timing {name} at {threads} threads: compress {best_c:.2f} s, decompress {best_d:.2f} s")
    entry["timing"] = {"image": "astronaut (512x512)", "threads": threads, "repeats": repeats,
                       "load_average_before": load, "models": per_model}
    entry["decode_s_512"] = max(m["decompress_s"] for m in per_model.values())
    entry["compress_s_512"] = max(m["compress_s"] for m in per_model.values())
    entry["threads"] = threads


# ---------------------------------------------------------------------------------------------------- rate saved
def front(rows: list[dict]) -> list[tuple[float, float]]:
    """(PSNR, bytes) of the qualities no other quality beats on both (higher-or-equal PSNR for fewer bytes),
    by PSNR."""
    pts = sorted((r["psnr"], r["bpp"]) for r in rows)
    out: list[tuple[float, float]] = []
    for p, b in reversed(pts):  # from the best PSNR down, keep strictly cheaper points
        if not out or b < out[-1][1]:
            out.append((p, b))
    return out[::-1]


def anchor_bpp_at(rows: list[dict], target: float) -> float | None:
    """The anchor's bpp at PSNR ``target``: log(bpp) linear in PSNR between its front's points; None outside."""
    pts = front(rows)
    if not pts or target < pts[0][0] or target > pts[-1][0]:
        return None
    return float(math.exp(np.interp(target, [p for p, _ in pts], [math.log(b) for _, b in pts])))


def rate_saved(entry: dict) -> None:
    """Per model and anchor: the anchor's bpp at the model's PSNR and the rate saved (in ``entry['models']``)."""
    for m in entry.get("models", []):
        vs = {}
        for fmt in ("jpeg", "webp", "avif"):
            rows = entry.get(fmt) or []
            if not rows:
                continue
            pts = front(rows)
            at = anchor_bpp_at(rows, m["psnr"])
            vs[fmt] = ({"anchor_bpp": at, "saved_percent": 100 * (1 - m["bpp_file"] / at)} if at is not None else
                       {"anchor_bpp": None, "saved_percent": None,
                        "why": f"PSNR {m['psnr']:.2f} outside the measured {pts[0][0]:.2f}-{pts[-1][0]:.2f} dB"})
            better = [r for r in rows if r["bpp"] <= m["bpp_file"] and r["psnr"] >= m["psnr"]]
            if better:  # qualities that beat the model on both: fewer bits and a higher PSNR
                r = min(better, key=lambda r: r["bpp"])
                vs[fmt]["dominated_by"] = {k: r[k] for k in ("quality", "bpp", "psnr", "ms_ssim")}
        m["vs"] = vs


# ---------------------------------------------------------------------------------------------------- main
def load_photos(names: list[str]) -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for n in names:
        img = np.asarray(getattr(skimage.data, n)())
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise SystemExit(f"skimage.data.{n}: {img.shape} {img.dtype} is not an RGB uint8 photo")
        out[n] = img
    return out


def main() -> None:
    from hiervq.codec import Codec
    from hiervq.data.readers import npz_array, open_npz
    from hiervq.errors import HierVQError
    from hiervq.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", metavar="NAME=RUN", help="runs with priors (default: runs/codec-rate-*)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10" / "cifar10.npz"))
    ap.add_argument("--photos", default=",".join(PHOTOS))
    ap.add_argument("--sets", default="cifar10,photos",
                    help="cifar10, photos and/or timing (the 512x512 compress/decompress times at this process's "
                         "thread count, which become photos.decode_s_512 and photos.threads)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "codec_rd.json"))
    ap.add_argument("--redo", action="store_true", help="ignore the results already in --out")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args()

    specs = args.runs or [f"{n}=runs/{n}" for n in RATE_CONFIGS if (REPO / "runs" / n / "priors").is_dir()]
    runs = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in specs]
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.is_file() and not args.redo else {}
    out["script"] = SCRIPT
    out["command"] = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python " + " ".join(sys.argv)
    threads = torch.get_num_threads()
    for m in out.get("cifar10", {}).get("models", []):  # the runs' recipe and training times, read afresh
        if Path(m.get("run", "")).is_dir():
            m.update(run_info(Path(m["run"])))

    def save() -> None:
        for key in ("cifar10", "photos"):
            if key in out:
                rate_saved(out[key])
        write_json(out_path, out)

    sets = args.sets.split(",")
    if "cifar10" in sets:
        archive = open_npz(args.data)
        test = npz_array(archive, "test_images", args.data)[: args.images]
        originals = torch.from_numpy(np.ascontiguousarray(test)).permute(0, 3, 1, 2).contiguous()
        entry = out.get("cifar10", {})
        if entry.get("images") != len(originals):
            entry = {}
        entry.update(images=len(originals), threads=threads, data=args.data, split="test, first images in file order")
        out["cifar10"] = entry
        for fmt, qs in QUALITIES.items():
            rows = {r["quality"]: r for r in entry.get(fmt, [])}
            for q in qs:
                if q not in rows:
                    rows[q] = anchor(list(test), fmt, q)
                    log(f"cifar10 {fmt} q={q}: {rows[q]['bpp']:.3f} bpp {rows[q]['psnr']:.2f} dB {rows[q]['ms_ssim']:.4f}")
            entry[fmt] = [rows[q] for q in sorted(rows)]
            save()
        models = {m["name"]: m for m in entry.get("models", [])}
        for name, run in runs:
            if name in models:
                continue
            t0 = time.perf_counter()
            codec = Codec.from_run(run)
            models[name] = measure_cifar(codec, name, run, originals, args.batch_size)
            models[name]["eval_s"] = round(time.perf_counter() - t0, 1)
            entry["models"] = sorted(models.values(), key=lambda m: m["bpp_file"])
            save()
            m = models[name]
            log(f"cifar10 {name}: {m['bpp_file']:.4f} bpp ({m['bpp_prior']:.4f} est.) {m['psnr']:.2f} dB "
                f"{m['ms_ssim']:.4f}, decode {m['decode_s_per_image'] * 1000:.1f} ms/image; vs {m['vs']}")

    if "photos" in sets:
        photos = load_photos(args.photos.split(","))
        entry = out.get("photos", {})
        if entry.get("images") != list(photos):
            entry = {}
        entry.update(images=list(photos), sizes={n: list(p.shape[:2]) for n, p in photos.items()}, coding_threads=threads,
                     pixels=int(sum(p.shape[0] * p.shape[1] for p in photos.values())))
        entry.setdefault("threads", threads)  # the thread count of decode_s_512: --sets timing measures it apart
        out["photos"] = entry
        for fmt, qs in QUALITIES.items():
            rows = {r["quality"]: r for r in entry.get(fmt, [])}
            for q in qs:
                if q not in rows:
                    rows[q] = anchor(list(photos.values()), fmt, q)
                    log(f"photos {fmt} q={q}: {rows[q]['bpp']:.3f} bpp {rows[q]['psnr']:.2f} dB {rows[q]['ms_ssim']:.4f}")
            entry[fmt] = [rows[q] for q in sorted(rows)]
            save()
        models = {m["name"]: m for m in entry.get("models", [])}
        failed = entry.setdefault("failed", {})
        for name, run in runs:
            if name in models or name in failed:
                continue
            codec = Codec.from_run(run)
            try:
                models[name] = measure_photos(codec, name, run, photos)
            except HierVQError as exc:  # recorded, not hidden: the codec refused to code a photo with this model
                failed[name] = str(exc)
                save()
                log(f"photos {name}: FAILED: {exc}")
                continue
            entry["models"] = sorted(models.values(), key=lambda m: m["bpp_file"])
            per_model = {n: m["per_image"]["astronaut"]["decode_s"] for n, m in models.items()
                         if "astronaut" in m["per_image"]}
            if per_model:
                entry["decode_s_512_per_model"] = per_model
                entry["decode_s_512"] = max(per_model.values())
                entry["decode_s_512_image"] = "astronaut (512x512)"
            save()
            m = models[name]
            log(f"photos {name}: {m['bpp_file']:.4f} bpp {m['psnr']:.2f} dB {m['ms_ssim']:.4f}; vs {m['vs']}")

    if "timing" in sets:
        timing_512(out.setdefault("photos", {}), runs, threads)
        save()

    save()
    if not args.no_figures:
        from hiervq.metrics.plots import plot_rate_distortion

        for key in ("cifar10", "photos"):
            e = out.get(key)
            if e and e.get("models"):
                plot_rate_distortion({k.upper(): e[k] for k in ("jpeg", "webp", "avif") if e.get(k)},
                                     {m["name"]: {"bpp": m["bpp_file"], "psnr": m["psnr"], "ms_ssim": m["ms_ssim"]}
                                      for m in e["models"]}, REPO / "docs" / f"codec_rd_{key}.png")
    log(f"-> {out_path}")


if __name__ == "__main__":
    main()
