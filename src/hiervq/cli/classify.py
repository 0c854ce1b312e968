"""``hiervq classify`` (semi-supervised classification with fractions of the labels, the work is in
:mod:`hiervq.experiments.label_fractions`) and ``hiervq tiles`` (histology tile selection, :mod:`hiervq.data.tiles`)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .common import add_command, add_output, add_writes, out_dir


def _cmd_classify(args: argparse.Namespace) -> int:
    from ..errors import HierVQError
    from ..train import load_config

    config = load_config(args.config, args.set)
    fractions = None
    if args.fractions:
        try:
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
        except ValueError:
            raise HierVQError(f"--fractions {args.fractions!r}: expected numbers like 1,0.5,0.1,0.01") from None
    if args.finetune or args.augment:
        from dataclasses import replace

        from ..classify.config import ClassifyConfig

        cc = config.classify or ClassifyConfig()
        head = replace(cc.head, finetune=cc.head.finetune or args.finetune, augment=cc.head.augment or args.augment)
        config.classify = replace(cc, head=head)
    out = out_dir(args)
    if args.overwrite and out.exists() and not args.pretrained:
        from ..train.rundir import RUN_MARKER, check_replaceable

        check_replaceable(out, "classify output folder")
        for item in out.iterdir():  # keep the pretraining run (and its lock): --overwrite redoes the classification
            if item.name not in ("pretrain", RUN_MARKER) and not item.name.startswith(".pretrain."):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    from ..experiments.label_fractions import run_label_fractions

    run_label_fractions(config, out, fractions, args.pretrained, args.overwrite)
    return 0


def _cmd_tiles(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ..data.readers import read_image
    from ..data.tiles import TileFilter, tile_image
    from ..errors import DataError
    from ..io import write_image

    Image.MAX_IMAGE_PIXELS = None  # slides are large on purpose
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    filt = TileFilter(args.min_std, args.min_laplacian)
    kept = total = 0
    for item in args.images:
        path = Path(item)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        image = read_image(path, mode="RGB")
        tiles, origins = tile_image(image, args.size, args.stride, filt)
        total += len(range(0, image.shape[0] - args.size + 1, args.stride or args.size)) * len(
            range(0, image.shape[1] - args.size + 1, args.stride or args.size))
        for tile, (r, c) in zip(tiles, origins):
            write_image(Image.fromarray(np.ascontiguousarray(tile)), out / f"{path.stem}_{r}_{c}.png")
        kept += len(tiles)
    print(f"kept {kept} of {total} tiles (std >= {filt.min_std}, Laplacian variance >= {filt.min_laplacian}) -> {out}/")
    return 0


def add_commands(sub) -> None:
    """Add ``classify`` and ``tiles`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "classify", _cmd_classify, "pretrain on unlabeled images, then classify with fractions of the labels",
        "Pretrain the config's model (or reuse --pretrained RUN / a finished OUT/pretrain), train an MLP "
        "head on its features for every label fraction and every classify.models row (plus raw pixels), select the "
        "epoch on the validation split and write OUT/results.json and OUT/report.md.",
    )
    p.add_argument("config", help="YAML config with a classify: section (e.g. configs/svqvae-dual-pbc.yaml)")
    p.add_argument("--fractions", help="comma-separated label fractions (default classify.fractions), e.g. 1,0.5,0.1,0.01")
    p.add_argument("--pretrained", metavar="RUN", help="use this finished run instead of pretraining")
    p.add_argument("--finetune", action="store_true",
                   help="fine-tune the pretrained model with the head (rows given as a bare path; default: frozen)")
    p.add_argument("--augment", action="store_true",
                   help="random flips and 90-degree rotations of the training images (classify.head.augment)")
    add_writes(p, "redo the classification (a finished OUT/pretrain is kept)")

    p = add_command(
        sub, "tiles", _cmd_tiles, "cut slide images into tiles and keep those with tissue in focus",
        "Cut each image into SIZE x SIZE tiles and keep those whose pixel std >= --min-std and whose "
        "Laplacian variance >= --min-laplacian; the kept tiles are written as PNGs (a flat folder for data.name: folder).",
    )
    p.add_argument("images", nargs="+", help="slide images (PNG/JPEG/TIFF)")
    add_output(p, "output folder", required=True)
    p.add_argument("--size", type=int, default=512, help="tile side in pixels (default 512)")
    p.add_argument("--stride", type=int, help="pixels between tiles (default: the size, no overlap)")
    p.add_argument("--min-std", type=float, default=10.0, help="minimum pixel standard deviation, 0-255 (default 10)")
    p.add_argument("--min-laplacian", type=float, default=20.0, help="minimum Laplacian variance (default 20)")
