"""Real compression on CIFAR-10: trained hiervq models with their priors against JPEG and WebP.

    python benchmarks/compression_cifar10.py [NAME=]RUN [[NAME=]RUN ...] [--images 2000] [--batch-size 100]

Each RUN is a trained autoencoder run on 32x32 RGB images with a prior for every level (``hiervq prior RUN
--level all``). On the first ``--images`` images of the CIFAR-10 test split (``test_images`` of
``../shared/data/cifar10/cifar10.npz``, in file order: a fixed subset) it measures

* per model: ``bpp_file`` = mean file size (bytes x 8, headers included) / pixels (32 x 32); ``bpp_prior`` = mean
  of the priors' estimate (-log2 p(codes | class) + log2(10) for the class of class-conditional priors) / pixels;
  ``psnr`` and ``ms_ssim`` of the decompressed images after rounding them to 8 bits (as PNG stores them) against
  the originals; ``encode_img_s`` (``Codec.compress``: the autoencoder's encoder, the priors and the range coder)
  and ``decode_img_s`` (``Codec.decompress``: the priors position by position and the decoder), wall clock; every
  image's decompressed codes are checked against the compressed ones (the run stops if one differs);
* JPEG (Pillow, ``optimize=True``, default 4:2:0 chroma subsampling) and WebP (Pillow, lossy, ``method=6``) over
  ``--qualities``: bits per pixel of the whole file, PSNR and MS-SSIM of the decoded images.

PSNR: mean over images of 10 log10(1 / MSE) on [0, 1]. MS-SSIM: 32x32 images are too small for the standard
5 scales with an 11-tap window (pytorch_msssim's ``ms_ssim`` refuses images below (win - 1) x 16 pixels whatever the
number of scales), so every codec is scored with 3 scales (32, 16, 8 px), a 5-tap Gaussian window (sigma 1.5) and
the first three standard weights (0.0448, 0.2856, 0.3001) renormalised, built on pytorch_msssim's per-scale
``_ssim``; mean over images.

Writes (atomically) ``benchmarks/results/compression_cifar10.json``: ``{"images": int, "threads": int, "models":
[{"name", "bpp_file", "bpp_prior", "psnr", "ms_ssim", "encode_img_s", "decode_img_s"}, ...], "jpeg": [{"quality",
"bpp", "psnr", "ms_ssim"}, ...], "webp": [...]}``; ``compression_cifar10_log.json`` beside it (header bytes, timings,
and per model the fewest bpp at which JPEG and WebP reach its PSNR, interpolated between qualities); and ``docs/compression_cifar10.png`` (PSNR and
MS-SSIM against bpp, every codec).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (a busy shared machine; see priors_cifar10.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PIXELS = 32 * 32
MS_SSIM_WIN, MS_SSIM_SIGMA, MS_SSIM_WEIGHTS = 5, 1.5, (0.0448, 0.2856, 0.3001)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image (B,) of images (B, C, H, W) on [0, 1]: 3 scales, 5-tap window (see the module docstring)."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    x, y = x.double(), y.double()
    win = _fspecial_gauss_1d(MS_SSIM_WIN, MS_SSIM_SIGMA).repeat([x.shape[1], 1, 1, 1])
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64)
    weights = weights / weights.sum()
    values = []
    for scale in range(len(weights)):
        ssim, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False)  # (B, C) each
        if scale < len(weights) - 1:
            values.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    values.append(torch.relu(ssim))
    return torch.prod(torch.stack(values) ** weights.view(-1, 1, 1), 0).mean(1)


def quality(originals: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and MS-SSIM of 8-bit ``decoded`` images against ``originals`` (uint8, (B, C, H, W))."""
    from hiervq.metrics import mse_per_image, psnr

    x, y = originals.float() / 255, decoded.float() / 255
    return {"psnr": float(psnr(mse_per_image(x, y)).mean()), "ms_ssim": float(ms_ssim(x, y).mean())}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def classical(originals: torch.Tensor, fmt: str, q: int) -> dict:
    """One Pillow codec at one quality over all images: bpp of the files, PSNR, MS-SSIM."""
    from PIL import Image

    options = {"JPEG": {"optimize": True}, "WEBP": {"method": 6}}[fmt]
    total, decoded = 0, []
    for img in originals.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, fmt, quality=q, **options)
        total += buffer.tell()
        decoded.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    back = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return {"quality": q, "bpp": total * 8 / len(originals) / PIXELS, **quality(originals, back)}


def measure_model(run: str, originals: torch.Tensor, batch_size: int) -> tuple[dict, dict]:
    """(row of the results file, details for the log) of one run with its priors."""
    from hiervq.codec import Codec, header_bytes

    codec = Codec.from_run(run)
    if codec.model.image_shape != (3, 32, 32):
        raise SystemExit(f"{run}: a model of {codec.model.image_shape} images, not CIFAR-10's (3, 32, 32)")
    images = originals.float() / 255
    files, bits, codes = [], [], []
    t0 = time.perf_counter()
    for s in range(0, len(images), batch_size):
        result = codec.compress_batch(images[s : s + batch_size])
        files += result.files
        bits.append(result.bits)
        codes.append(result.codes)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded, wrong = [], 0  # Codec.decompress, batch by batch, checking the codes on the way
    for b, s in enumerate(range(0, len(files), batch_size)):
        back, _ = codec.decompress_codes(files[s : s + batch_size])
        wrong += sum(int((a != e).flatten(1).any(1).sum()) for a, e in zip(back, codes[b]))
        with torch.no_grad():
            decoded.append(codec.model.decode(codec.model.codes_from_list(back)).clamp(0, 1))
    decode_s = time.perf_counter() - t0
    if wrong:
        raise SystemExit(f"{run}: {wrong} images decompressed to other codes than they were compressed from")
    decoded = torch.cat(decoded)
    n = len(files)
    header = header_bytes(files[0])
    row = {
        "name": Path(run).resolve().name,
        "bpp_file": sum(len(f) for f in files) * 8 / n / PIXELS,
        "bpp_prior": float(torch.cat(bits).mean()) / PIXELS,
        **quality(originals, to_uint8(decoded)),
        "encode_img_s": n / encode_s,
        "decode_img_s": n / decode_s,
    }
    log = {"run": str(run), "model_id": codec.id.hex(), "header_bytes": header, "codes_exact": True,
           "bytes_per_image": sum(len(f) for f in files) / n, "encode_s": encode_s, "decode_s": decode_s}
    return row, log


def bpp_for(rows: list[dict], target_psnr: float) -> float | None:
    """The fewest bits per pixel at which a classical codec reaches ``target_psnr``: interpolated linearly between
    its qualities; its lowest rate when every quality gives more; None when none reaches it."""
    pts = sorted((r["psnr"], r["bpp"]) for r in rows)
    if target_psnr > pts[-1][0]:
        return None
    if target_psnr < pts[0][0]:
        return min(b for _, b in pts)
    return float(np.interp(target_psnr, [p for p, _ in pts], [b for _, b in pts]))


def main() -> None:
    from hiervq.data.readers import npz_array, open_npz
    from hiervq.io import write_json
    from hiervq.metrics.plots import plot_rate_distortion

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="[NAME=]RUN",
                    help="trained 32x32 RGB runs with priors for every level, each optionally named (default: the "
                         "run folder's name)")
    ap.add_argument("--images", type=int, default=2000, help="the first N test images (default 2000)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10" / "cifar10.npz"))
    ap.add_argument("--qualities", default="1,5,10,20,30,40,50,60,70,80,90,95", help="JPEG and WebP qualities")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "compression_cifar10.json"))
    ap.add_argument("--figure", default=str(REPO / "docs" / "compression_cifar10.png"))
    args = ap.parse_args()

    archive = open_npz(args.data)
    test = npz_array(archive, "test_images", args.data)[: args.images]  # (N, 32, 32, 3) uint8, file order
    originals = torch.from_numpy(np.ascontiguousarray(test)).permute(0, 3, 1, 2).contiguous()
    qualities = [int(q) for q in args.qualities.split(",")]

    models, logs = [], []
    for spec in args.runs:
        name, _, run = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        row, log = measure_model(run, originals, args.batch_size)
        row["name"] = name or row["name"]
        models.append(row)
        logs.append(log)
        print(f"{row['name']}: {row['bpp_file']:.4f} bpp ({row['bpp_prior']:.4f} estimated), PSNR {row['psnr']:.2f} dB, "
              f"MS-SSIM {row['ms_ssim']:.4f}; {row['encode_img_s']:.1f} / {row['decode_img_s']:.1f} images/s", flush=True)
    jpeg = [classical(originals, "JPEG", q) for q in qualities]
    webp = [classical(originals, "WEBP", q) for q in qualities]
    result = {"script": "benchmarks/compression_cifar10.py", "images": len(originals), "threads": torch.get_num_threads(), "models": models, "jpeg": jpeg, "webp": webp}
    results = Path(args.results)
    write_json(results, result)

    for row, log in zip(models, logs):  # the classical codecs' rate at the model's PSNR
        log["name"] = row["name"]
        for name, rows in (("jpeg", jpeg), ("webp", webp)):
            log[f"{name}_bpp_for_psnr"] = bpp_for(rows, row["psnr"])
        print(f"{row['name']}: {row['bpp_file']:.4f} bpp at {row['psnr']:.2f} dB; to reach it JPEG needs "
              f"{log['jpeg_bpp_for_psnr']} bpp, WebP {log['webp_bpp_for_psnr']} (None: no quality measured does)")
    write_json(results.with_name(results.stem + "_log.json"), {"script": "benchmarks/compression_cifar10.py", "data": args.data, "models": logs})
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    plot_rate_distortion({"JPEG": jpeg, "WebP": webp},
                         {r["name"]: {"bpp": r["bpp_file"], "psnr": r["psnr"], "ms_ssim": r["ms_ssim"]} for r in models},
                         args.figure)
    print(f"-> {results}, {args.figure}")


if __name__ == "__main__":
    main()
