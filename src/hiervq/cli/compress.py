"""``hiervq compress`` and ``hiervq decompress``: images -> entropy-coded ``.hvq`` files with a run's autoencoder
and priors, and back to PNGs. The work is done by :class:`hiervq.codec.Codec`; the format is in
docs/compression.md."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import HierVQError
from .common import (
    add_batch_size,
    add_command,
    add_image_options,
    add_output,
    add_overwrite,
    add_priors,
    add_run,
    collect_files,
    collect_images,
    png_targets,
    read_model_images,
    save_pngs,
)


def _check_batch_size(n: int) -> None:
    if n < 1:
        raise HierVQError(f"--batch-size must be >= 1, got {n}")


def _cmd_compress(args: argparse.Namespace) -> int:
    from ..codec import SUFFIX, Codec, header_bytes
    from ..errors import DataError
    from ..io import atomic_write_bytes
    from ..train.rundir import check_output_path

    _check_batch_size(args.batch_size)
    files = collect_images(args.images)
    out = Path(args.output)
    single = out.suffix == SUFFIX and not out.is_dir()
    if single and len(files) > 1:
        raise HierVQError(f"-o {out}: a {SUFFIX} file holds one image; give a folder for {len(files)} images")
    check_output_path(out, folder=not single, what="-o")
    targets = [out] if single else [out / f"{f.stem}{SUFFIX}" for f in files]
    first: dict[Path, Path] = {}
    for f, target in zip(files, targets):
        if target in first:
            raise DataError(f"{first[target]} and {f} would both be written to {target}; rename one")
        first[target] = f
    if not args.overwrite:
        existing = next((t for t in targets if t.exists() or t.is_symlink()), None)
        if existing is not None:
            raise DataError(f"{existing} already exists; pass --overwrite to replace it, or -o another folder")
    codec = Codec.from_run(args.run, args.priors)
    images = read_model_images(files, args.run, codec.model, args.convert, args.keep_size)
    t0 = time.perf_counter()
    total, estimate = 0, 0.0
    for s in range(0, len(images), args.batch_size):
        result = codec.compress_batch(images[s : s + args.batch_size])
        for data, target in zip(result.files, targets[s : s + args.batch_size]):
            atomic_write_bytes(target, data)
            total += len(data)
        estimate += float(result.bits.sum())
    seconds = time.perf_counter() - t0
    n, pixels = len(images), images.shape[-2] * images.shape[-1]
    print(f"compressed {n} images -> {out} ({total / n:.1f} bytes/image, {total * 8 / n / pixels:.4f} bits/pixel with "
          f"the {header_bytes(result.files[0])}-byte header; the priors estimate {estimate / n:.1f} bits/image; "
          f"{n / seconds:.1f} images/s)")
    return 0


def _collect_files(items: list[str]) -> list[Path]:
    """Compressed files named on the command line (a folder: its ``.hvq`` files)."""
    from ..codec import SUFFIX

    return collect_files(items, lambda p: sorted(q for q in p.iterdir() if q.suffix == SUFFIX and q.is_file()),
                         f"{SUFFIX} files")


def _cmd_decompress(args: argparse.Namespace) -> int:
    from ..codec import Codec, unpack
    from ..io import NewFiles

    _check_batch_size(args.batch_size)
    paths = _collect_files(args.files)
    out = Path(args.output)
    targets = png_targets(out, out, [str(p) for p in paths], len(paths), args.overwrite, grid=False)
    data = []
    for p in paths:
        try:
            data.append(p.read_bytes())
        except OSError as exc:
            raise HierVQError(f"{p}: cannot read ({exc.strerror or exc})") from None
        unpack(data[-1], str(p))  # damaged files are refused before the model is even loaded
    codec = Codec.from_run(args.run, args.priors)
    groups: dict[tuple[int, int], list[int]] = {}  # image size -> files (all checked before any is decoded)
    for i, (d, p) in enumerate(zip(data, paths)):
        groups.setdefault(codec.read(d, str(p))[0].image_size, []).append(i)
    t0 = time.perf_counter()
    with NewFiles() as new:  # a failed write (disk full, permissions) removes the PNGs written before it
        for index in groups.values():
            for s in range(0, len(index), args.batch_size):
                part = index[s : s + args.batch_size]
                images = codec.decompress([data[i] for i in part], [str(paths[i]) for i in part], args.batch_size)
                save_pngs(images, [targets[i] for i in part], new.write)
    seconds = time.perf_counter() - t0
    print(f"decompressed {len(paths)} images -> {out}/ ({len(paths) / seconds:.1f} images/s)")
    return 0


def add_commands(sub) -> None:
    """Add ``compress`` and ``decompress`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "compress", _cmd_compress, "compress images to .hvq files (codes entropy-coded with the run's priors)",
        "Encode images with a run's autoencoder and range-code the codes with its priors (train them "
        "first with `hiervq prior RUN --level all`): one .hvq file per image. Images are brought to the model's size "
        "as `hiervq encode` does. Format and determinism: docs/compression.md.",
    )
    add_run(p, "autoencoder run directory (with priors under RUN/priors/)")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    add_output(p, "output folder (one NAME.hvq per image; default compressed), or a .hvq file for one image",
               "compressed")
    add_priors(p)
    add_image_options(p, "do not resize images to the model's image size (hierarchical models only)")
    add_batch_size(p, 64, "images encoded and range-coded together")
    add_overwrite(p, "replace .hvq files that already exist")

    p = add_command(
        sub, "decompress", _cmd_decompress, "decompress .hvq files to PNGs",
        "Decode .hvq files written by `hiervq compress` with the same run (its autoencoder and priors; "
        "another model's files are refused): one PNG per file, named after it.",
    )
    add_run(p, "the autoencoder run directory that compressed the files")
    p.add_argument("files", nargs="+", help=".hvq files or folders of them")
    add_output(p, "output folder (one NAME.png per file)", "decompressed")
    add_priors(p)
    add_batch_size(p, 64, "files decoded together")
    add_overwrite(p, "replace PNGs that already exist in the output folder")
