"""``hiervq train``, ``eval``, ``encode`` and ``decode`` as they run (their flags: :mod:`hiervq.cli.autoencoder`):
train an autoencoder, measure it, turn images into codes and back."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ...data.readers import npz_array, open_npz
from ...errors import DataError, HierVQError
from ...io import NewFiles, atomic_write_bytes
from ...metrics.perceptual import load_metric
from ...metrics.plots import save_image_grid
from ...models import crop_images
from ...pretrained import load
from ...train import load_config, read_run_config, train_run
from ...train.config import with_overrides
from ...train.run import evaluate_run, model_run_config
from ...train.rundir import check_output_file
from .files import (
    bad_relative_name,
    collect_images,
    collect_tree,
    group_by_size,
    out_dir,
    png_targets,
    read_model_images,
    refuse_clashes,
    save_pngs,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.config:
            raise HierVQError("give either a CONFIG to start a run or --resume RUN_DIR, not both")
        config = read_run_config(args.resume)
        if args.set:
            config = with_overrides(config.to_dict(), args.set, config.source)
        run_dir = Path(args.resume)
    else:
        config = load_config(args.config, args.set)
        run_dir = out_dir(args)
    args.run_dir = run_dir  # for the message of an interrupt
    train_run(config, run_dir, resume=bool(args.resume), overwrite=args.overwrite)
    return 0


# ---------------------------------------------------------------------- eval
def data_path_overrides(path: str | None) -> list[str]:
    """``--data PATH`` as config overrides, guessing the dataset kind from the path."""
    if not path:
        return []
    p = Path(path)
    if p.suffix == ".npz":
        kind = "npz"
    elif p.is_dir() and any(p.glob("*idx3-ubyte*")):
        kind = "mnist"
    elif p.is_dir() and (any(p.glob("data_batch_*")) or (p / "cifar-10-batches-py").is_dir()):
        kind = "cifar10"
    else:
        kind = "folder"
    return [f"data.name={kind}", f"data.path={path}"]


def cmd_eval(args: argparse.Namespace) -> int:
    if args.output:
        check_output_file(args.output, args.overwrite)
    config = model_run_config(args.run)  # a run directory, a saved model folder or a tokenizer name
    overrides = data_path_overrides(args.data) + list(args.set or [])
    if overrides:
        config = with_overrides(config.to_dict(), overrides, config.source)
    folder = bool(args.data) and data_path_overrides(args.data)[0] == "data.name=folder"
    split = args.split or ("all" if folder else "test")
    metrics = []
    if args.metric:
        metrics = [load_metric(spec) for spec in args.metric]
    # a folder of images is evaluated at the images' own sizes unless --resize (or a split) asks otherwise
    native = args.data if folder and not args.resize and split == "all" else None
    result = evaluate_run(args.run, config, split=split, metrics=metrics, native_folder=native)
    logger.info(f"evaluated {result['images']} images ({split})")
    text = json.dumps(result, indent=2, allow_nan=False)
    if args.output:
        atomic_write_bytes(args.output, (text + "\n").encode())
    print(text)
    return 0


# ---------------------------------------------------------------------- encode / decode
def cmd_encode(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise HierVQError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.recursive:  # every image of a folder's tree, named by its path below the folder ("cats/a.png")
        files, relative = collect_tree(args.images)
        names = [r.as_posix() for r in relative]
        # `decode` writes each image to OUT/<its folders>/<its stem>.png: two images to one PNG are refused here
        refuse_clashes([r.parent / f"{r.stem}.png" for r in relative], files, "decoded")
    else:
        files = collect_images(args.images)
        names = [f.name for f in files]
    check_output_file(args.output, args.overwrite, inputs=files)
    model = load(args.run)
    images = read_model_images(files, args.run, model, args.convert, args.resize, args.keep_size)
    groups = group_by_size(images)
    if len(groups) > 1:
        (a, first), (b, second) = list(groups.items())[:2]
        raise DataError(f"images have different sizes ({files[first[0]]}: {a[0]}x{a[1]}, {files[second[0]]}: "
                        f"{b[0]}x{b[1]}, {len(groups)} sizes in all); a codes file holds images of one size: encode "
                        "each size in its own call, or pass --resize to bring them all to the model's size")
    (size,) = groups
    batch = torch.cat(images)
    codes = []
    with torch.no_grad():
        for start in range(0, len(batch), args.batch_size):
            codes.append(model.encode(model.pad_images(batch[start : start + args.batch_size])))
    per_batch = [model.codes_to_list(c_) for c_ in codes]
    levels = [torch.cat([b[i] for b in per_batch]) for i in range(len(per_batch[0]))]
    out = {f"level{i}": c_.numpy().astype(np.int32) for i, c_ in enumerate(levels)}
    out["names"] = np.array(names)
    out["image_sizes"] = np.tile(np.array(size, dtype=np.int32), (len(files), 1))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **out)
    atomic_write_bytes(args.output, buffer.getvalue())
    shapes_txt = ", ".join(f"{k} {v.shape}" for k, v in out.items() if k.startswith("level"))
    print(f"encoded {len(files)} images of {size[0]}x{size[1]} -> {args.output} ({shapes_txt}; "
          f"{model.bits_of(levels):.0f} bits/image)")
    return 0


def _read_codes(path: Path):
    """The code arrays (level0, level1, ...) as int64 tensors, the names (or None) and the images' original sizes
    ((N, 2) int64, or None: a codes file written before hiervq recorded them decodes at the grids' size) of a codes
    file written by ``hiervq encode``; everything is checked before anything is decoded or written."""
    archive = open_npz(path, "codes file")
    keys = [k for k in archive.files if k.startswith("level")]
    if not keys or not all(k[5:].isdigit() for k in keys):
        raise DataError(f"{path}: no level0, level1, ... arrays (write it with `hiervq encode`)")
    keys.sort(key=lambda k: int(k[5:]))
    levels = []
    for k in keys:
        arr = npz_array(archive, k, path)
        if arr.dtype.kind not in "iu":
            raise DataError(f"{path}: {k} holds {arr.dtype} values; codes must be integers (as `hiervq encode` writes)")
        if arr.ndim < 2 or len(arr) != len(npz_array(archive, keys[0], path)):
            raise DataError(f"{path}: {k} has shape {arr.shape}; every level needs one code array per image")
        levels.append(torch.from_numpy(arr.astype(np.int64)))
    names = None
    if "names" in archive.files:
        raw = npz_array(archive, "names", path)
        if raw.ndim != 1:
            raise DataError(f"{path}: names has shape {raw.shape}; expected one name per image")
        if raw.dtype.kind not in "US":
            raise DataError(f"{path}: names holds {raw.dtype} values; expected file names (as `hiervq encode` writes)")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw]
        for i, name in enumerate(names):  # each becomes a file below the output folder, never outside it
            if bad_relative_name(name):
                raise DataError(f"{path}: names[{i}] is {name[:80]!r}; a name must be a file name or a relative path "
                                "below the output folder as `hiervq encode -r` writes them (no '..', absolute paths, "
                                "backslashes or NUL bytes)")
    sizes = None
    if "image_sizes" in archive.files:
        raw = npz_array(archive, "image_sizes", path)
        if raw.dtype.kind not in "iu" or raw.shape != (len(levels[0]), 2) or (raw.size and int(raw.min()) < 1):
            raise DataError(f"{path}: image_sizes has shape {raw.shape} ({raw.dtype}); expected (images, 2) positive "
                            "integers, each image's height and width")
        sizes = raw.astype(np.int64)
    return levels, names, sizes


def cmd_decode(args: argparse.Namespace) -> int:
    model = load(args.run)
    path = Path(args.codes)
    levels, names, sizes = _read_codes(path)
    out = Path(args.output)
    # all checked before writing any; names with folders (`hiervq encode -r`) keep them below OUT
    targets = png_targets(path, out, names, len(levels[0]), args.overwrite, hint=" in names", inputs=[path],
                          folders=True)
    with torch.no_grad():
        try:
            images = model.decode(model.codes_from_list(levels))
        except (IndexError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: codes do not fit this model ({str(exc).splitlines()[0]})") from None
    if sizes is not None:  # crop each image back to the size it had before it was padded to the model's stride
        too_big = [i for i, (h, w) in enumerate(sizes) if h > images.shape[-2] or w > images.shape[-1]]
        if too_big:
            h, w = sizes[too_big[0]]
            raise DataError(f"{path}: image {too_big[0]} has image_sizes {h}x{w}, larger than its codes decode to "
                            f"({images.shape[-2]}x{images.shape[-1]})")
    mixed = sizes is not None and len({(int(h), int(w)) for h, w in sizes}) > 1  # not as `hiervq encode` writes
    if sizes is not None and not mixed:
        images = crop_images(images, tuple(sizes[0]))
    with NewFiles() as new:  # a failed write (disk full, permissions) removes the PNGs written before it
        new.folder(out)
        if mixed:
            for x, (h, w), target in zip(images, sizes, targets):
                save_pngs(x[None, :, :h, :w], [target], new.write)
        else:
            save_pngs(images, targets, new.write)
        save_image_grid(images, out / "grid.png", nrow=min(8, len(images)), write=new.write)
    print(f"decoded {len(images)} images -> {out}/")
    return 0
