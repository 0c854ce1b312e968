"""Decompression time of a photo against its size, with the PixelCNN priors run over the window that can reach
each position (``PixelCNN.walk``, the default) and over the whole row prefix as before (the baseline), in one run.

    OMP_NUM_THREADS=1 python benchmarks/codec_decode_speed.py [--sides 64,128,256] [--model cifar10-hvqvae3-prior]

Decoding with a PixelCNN prior takes one network pass per code (21,504 for a 512x512 photo with the shipped
3-level tokenizer: 128x128 + 64x64 + 32x32). The baseline ran each pass over rows 0..i of the whole map (what a
position can depend on in raster order); a position's logits can only see R = layers * (k // 2) + 1 rows up and
columns either side, so the default runs each pass over that window (rows i - R..i, columns j - R..j + R). The
baseline is the same code with the reach set beyond the map, which is exactly the earlier computation.

Each photo (scikit-image's astronaut, a centre square resized with Pillow's BOX filter to SIDE pixels) is
compressed once; both decoders must give the same images (bit for bit) and the time of each is the median of
``--repeats`` alternating runs. Writes ``benchmarks/results/codec_decode_speed.json``: ``{"script", "command",
"threads", "model", "reach": {level: R}, "rows": [{"side", "passes", "bytes", "baseline_s", "window_s",
"speedup", "identical", "load_avg"}]}`` after every side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hiervq.codec import Codec  # noqa: E402
from hiervq.io import write_json  # noqa: E402
from hiervq.priors import PixelCNN  # noqa: E402

SCRIPT = "benchmarks/codec_decode_speed.py"
RESULT = REPO / "benchmarks" / "results" / "codec_decode_speed.json"


def photo(side: int) -> torch.Tensor:
    """(1, 3, side, side) on [0, 1]: the centre square of scikit-image's astronaut, resized (Pillow BOX)."""
    from PIL import Image
    from skimage import data

    img = data.astronaut()
    s = min(img.shape[:2])
    top, left = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    small = Image.fromarray(img[top : top + s, left : left + s]).resize((side, side), Image.BOX)
    return torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)[None].float() / 255


def timed(codec: Codec, files: list[bytes], whole_prefix: bool) -> tuple[float, torch.Tensor]:
    """Seconds to decompress ``files`` and the images, the priors' window set to the whole map for the baseline."""
    reach = PixelCNN.reach
    if whole_prefix:
        PixelCNN.reach = property(lambda self: 1 << 30)  # rows 0..i, every column: the computation before windows
    try:
        t0 = time.perf_counter()
        images = codec.decompress(files)
        return time.perf_counter() - t0, images
    finally:
        PixelCNN.reach = reach


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar10-hvqvae3-prior", help="tokenizer name or run (with priors)")
    parser.add_argument("--sides", default="64,128,256", help="comma-separated photo sizes (pixels a side)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each decoder per size")
    parser.add_argument("--result", default=str(RESULT), help="where the JSON goes")
    args = parser.parse_args()
    codec = Codec.from_run(args.model)
    out = {"script": SCRIPT, "command": " ".join(["python", SCRIPT, *sys.argv[1:]]),
           "threads": torch.get_num_threads(), "model": args.model,
           "load_avg_start": round(os.getloadavg()[0], 2),  # other jobs on the machine (1-minute load average)
           "reach": {str(lv): p.reach for lv, p in codec.priors.items() if isinstance(p, PixelCNN)}, "rows": []}
    for side in (int(s) for s in args.sides.split(",")):
        files = codec.compress(photo(side))
        base, window, same = [], [], True
        for _ in range(args.repeats):
            t, a = timed(codec, files, whole_prefix=True)
            base.append(t)
            t, b = timed(codec, files, whole_prefix=False)
            window.append(t)
            same &= torch.equal(a, b)
        row = {"side": side, "passes": codec.network_passes(side, side), "bytes": len(files[0]),
               "baseline_s": round(statistics.median(base), 3), "window_s": round(statistics.median(window), 3),
               "identical": same}
        row["speedup"] = round(row["baseline_s"] / row["window_s"], 2)
        row["load_avg"] = round(os.getloadavg()[0], 2)
        out["rows"].append(row)
        print(row, flush=True)
        write_json(args.result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
