"""Why the CIFAR-10 codec models lose to WebP on photos: the same photos downscaled towards the training scale.

    OMP_NUM_THREADS=1 python benchmarks/codec_photo_scale.py [NAME=RUN ...] [--sides 32,64,128,256]

The codec-rate models (``configs/codec-rate-*.yaml``) are trained on 32x32 CIFAR-10 images. On the photos of
``benchmarks/codec_rd.py`` at their native sizes (300-1000 px a side) they need more bytes than WebP at equal PSNR;
on CIFAR-10 they need fewer. This benchmark separates the two things that differ, the content (photos vs CIFAR)
and the scale (how many pixels an object spans): each photo is downscaled (Pillow, ``Image.BOX``, the shorter side
to ``side`` pixels, the aspect ratio kept) and coded by every model and by WebP, JPEG and AVIF at every quality,
exactly as codec_rd.py codes its sets (real ``.hvq`` files with headers, PSNR averaged over images, the anchors'
bytes interpolated at each model's PSNR on their front). If the rate saved against WebP turns from a loss at the
native size into a gain as the photos approach the training scale, the models lose on photos for their scale, not
their content, and training on larger images (crops of photos at their own resolution) is what would close the
gap.

Writes ``benchmarks/results/codec_photo_scale.json``: ``{"script", "threads", "photos": [...], "sides": {SIDE:
{"pixels": int, "models": [{"name", "bpp_file", "psnr", "ms_ssim", "vs": {...}}], "jpeg": [...], "webp": [...],
"avif": [...]}}}`` (``vs`` as in codec_rd.json: per anchor ``saved_percent`` = 100 (1 - ours / anchor's bytes)
at our PSNR, or why it is not defined), after every side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from codec_rd import PHOTOS, QUALITIES, RATE_CONFIGS, anchor, code_and_decode, load_photos, log, quality, rate_saved  # noqa: E402

SCRIPT = "benchmarks/codec_photo_scale.py"


def downscale(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` (H, W, 3) uint8 with its shorter side at ``side`` pixels (box filter; never upscaled)."""
    from PIL import Image

    h, w = img.shape[:2]
    scale = side / min(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BOX))


def main() -> None:
    from hiervq.codec import Codec
    from hiervq.errors import HierVQError
    from hiervq.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", metavar="NAME=RUN", help="runs with priors (default: runs/codec-rate-*)")
    ap.add_argument("--sides", default="32,64,128,256", help="shorter sides to downscale the photos to")
    ap.add_argument("--photos", default=",".join(PHOTOS))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "codec_photo_scale.json"))
    args = ap.parse_args()

    specs = args.runs or [f"{n}=runs/{n}" for n in RATE_CONFIGS if (REPO / "runs" / n / "priors").is_dir()]
    runs = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in specs]
    photos = load_photos(args.photos.split(","))
    out = {"script": SCRIPT, "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python "
           + " ".join(sys.argv), "threads": torch.get_num_threads(), "photos": list(photos),
           "resize": "Pillow Image.BOX, shorter side to SIDE, aspect kept", "sides": {}}
    codecs = {name: Codec.from_run(run) for name, run in runs}
    for side in [int(s) for s in args.sides.split(",")]:
        small = {n: downscale(img, side) for n, img in photos.items()}
        entry: dict = {"pixels": int(sum(p.shape[0] * p.shape[1] for p in small.values())),
                       "sizes": {n: list(p.shape[:2]) for n, p in small.items()}}
        for fmt, qs in QUALITIES.items():
            entry[fmt] = [anchor(list(small.values()), fmt, q) for q in qs]
        models = []
        for name, codec in codecs.items():
            total, bits, originals, decoded = 0, 0.0, [], []
            try:
                for img in small.values():
                    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
                    files, d, b, _ = code_and_decode(codec, x)
                    total += len(files[0])
                    bits += b
                    originals.append(x[0])
                    decoded.append(d[0])
            except HierVQError as exc:
                entry.setdefault("failed", {})[name] = str(exc)
                continue
            models.append({"name": name, "bpp_file": total * 8 / entry["pixels"], "bpp_prior": bits / entry["pixels"],
                           "bytes": total, **quality(originals, decoded)})
        entry["models"] = sorted(models, key=lambda m: m["bpp_file"])
        rate_saved(entry)
        out["sides"][str(side)] = entry
        write_json(args.out, out)
        for m in entry["models"]:
            log(f"side {side}: {m['name']} {m['bpp_file']:.3f} bpp {m['psnr']:.2f} dB; webp {m['vs'].get('webp')}")
    log(f"-> {args.out}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    log(f"{time.perf_counter() - t0:.0f} s")
