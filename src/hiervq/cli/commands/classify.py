"""``hiervq classify`` and ``hiervq tiles`` as they run (their flags: :mod:`hiervq.cli.classify`): semi-supervised
classification with fractions of the labels (the work is in :mod:`hiervq.experiments.label_fractions`) and
histology tile selection (:mod:`hiervq.data.tiles`)."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ...classify.config import ClassifyConfig
from ...data.readers import read_image
from ...data.tiles import TileFilter, tile_image
from ...errors import DataError, HierVQError
from ...experiments.label_fractions import run_label_fractions
from ...io import write_image
from ...train import load_config
from ...train.rundir import RUN_MARKER, check_replaceable
from .files import out_dir


def cmd_classify(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    fractions = None
    if args.fractions:
        try:
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
        except ValueError:
            raise HierVQError(f"--fractions {args.fractions!r}: expected numbers like 1,0.5,0.1,0.01") from None
    if args.finetune or args.augment:
        cc = config.classify or ClassifyConfig()
        head = replace(cc.head, finetune=cc.head.finetune or args.finetune, augment=cc.head.augment or args.augment)
        config.classify = replace(cc, head=head)
    out = out_dir(args)
    if args.overwrite and out.exists() and not args.pretrained:
        check_replaceable(out, "classify output folder")
        for item in out.iterdir():  # keep the pretraining run (and its lock): --overwrite redoes the classification
            if item.name not in ("pretrain", RUN_MARKER) and not item.name.startswith(".pretrain."):
                shutil.rmtree(item) if item.is_dir() else item.unlink()

    run_label_fractions(config, out, fractions, args.pretrained, args.overwrite)
    return 0


def cmd_tiles(args: argparse.Namespace) -> int:
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
