"""``hiervq compress`` and ``hiervq decompress`` as they run (their flags: :mod:`hiervq.cli.compress`): images ->
entropy-coded ``.hvq`` files with a run's autoencoder and priors, and back to PNGs. The work is done by
:class:`hiervq.codec.Codec`; the format is in docs/compression.md."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ...codec import SUFFIX, Codec, header_bytes, unpack
from ...data.readers import list_files
from ...errors import DataError, HierVQError
from ...io import NewFiles, atomic_write_bytes
from ...log import get_logger
from ...pretrained import resolve_model_dir
from ...train.rundir import check_output_path
from .files import (
    check_targets,
    collect_images,
    collect_top_level,
    collect_tree,
    group_by_size,
    png_targets,
    read_model_images,
    refuse_clashes,
    refuse_output_inside_inputs,
    save_pngs,
)

#: network passes per image above which decompressing is slow enough to say so (a PixelCNN on a photo's code map;
#: a windowed PixelCNN pass took ~5 ms on one thread, benchmarks/results/codec_decode_speed.json: ~10 s)
SLOW_PASSES = 2000


def _warn_if_slow(codec: Codec, sizes) -> None:
    """One warning when decoding an image of one of ``sizes`` takes more than :data:`SLOW_PASSES` prior passes."""
    passes_of = {hw: codec.network_passes(*hw) for hw in sizes}
    worst = max(passes_of, key=passes_of.get)
    passes = passes_of[worst]
    if passes > SLOW_PASSES:
        get_logger("compress").warning(
            f"decompressing a {worst[0]}x{worst[1]} image with these priors takes {passes:,} network passes (they "
            f"decode one code per pass; ~5 ms each on one CPU thread: ~{passes * 0.005:,.0f} s per image). "
            f"Checkerboard priors decode a level in 2 passes: "
            f"`hiervq prior {codec.run} --level all --set model.arch=checkerboard --out DIR`, then --priors "
            f"DIR/level*")


def _check_batch_size(n: int) -> None:
    if n < 1:
        raise HierVQError(f"--batch-size must be >= 1, got {n}")


def cmd_compress(args: argparse.Namespace) -> int:
    _check_batch_size(args.batch_size)
    out = Path(args.output)
    if args.recursive:  # every image of a folder's tree, each output at the image's path below the folder
        refuse_output_inside_inputs(out, args.images)
        files, relative = collect_tree(args.images)
    else:
        files = collect_images(args.images)
        relative = [Path(f.name) for f in files]
    single = out.suffix == SUFFIX and not out.is_dir()
    if single and len(files) > 1:
        raise HierVQError(f"-o {out}: a {SUFFIX} file holds one image; give a folder for {len(files)} images")
    check_output_path(out, folder=not single, what="-o")
    targets = [out] if single else [out.joinpath(*r.parent.parts, f"{r.stem}{SUFFIX}") for r in relative]
    check_targets(out.parent if single else out, targets, files, args.overwrite, inputs=files)
    codec = Codec.from_run(args.run, args.priors)
    images = read_model_images(files, args.run, codec.model, args.convert, args.resize, args.keep_size)
    groups = group_by_size(images)  # images of one size are coded together; each file records its image's size
    for size in groups:
        try:
            codec.grids(*size)  # every size is checked (the model and its priors take it) before anything is written
        except DataError as exc:
            raise DataError(f"{files[groups[size][0]]}: {exc}") from None
    _warn_if_slow(codec, list(groups))
    t0 = time.perf_counter()
    total, estimate, pixels, first = 0, 0.0, 0, None
    # -r writes a tree: a failure half-way removes the files and sub-folders written before it (as decompress
    # does); without -r each file is written atomically and kept, as before
    with NewFiles() as new:
        write = new.write if args.recursive else atomic_write_bytes
        for (h, w), index in groups.items():
            for s in range(0, len(index), args.batch_size):
                part = index[s : s + args.batch_size]
                result = codec.compress_batch(torch.cat([images[i] for i in part]))
                for data, i in zip(result.files, part):
                    write(targets[i], data)
                    total += len(data)
                    first = first or data
                estimate += float(result.bits.sum())
                pixels += len(part) * h * w
    seconds = time.perf_counter() - t0
    n = len(images)
    sizes = ", ".join(f"{h}x{w}" for h, w in list(groups)[:3]) + (", ..." if len(groups) > 3 else "")
    print(f"compressed {n} images ({sizes}) -> {out} ({total / n:.1f} bytes/image, {total * 8 / pixels:.4f} bits/pixel "
          f"of the original pixels with the {header_bytes(first)}-byte header; the priors estimate {estimate / n:.1f} "
          f"bits/image; {n / seconds:.1f} images/s)")
    return 0


def _collect_files(items: list[str]) -> list[Path]:
    """Compressed files named on the command line (a folder: its ``.hvq`` files; one warning per folder whose
    sub-folders hold more, which are not read without ``-r/--recursive``)."""
    return collect_top_level(items, lambda p: sorted(q for q in p.iterdir() if q.suffix == SUFFIX and q.is_file()),
                             lambda p: list_files(p, (SUFFIX,), recursive=True), f"{SUFFIX} file", "",
                             get_logger("compress"))


def _is_model(item: str) -> bool:
    """Whether ``item`` names a model (a run or saved-model folder, or a tokenizer name that is not a path)."""
    try:
        resolve_model_dir(item)
    except HierVQError:
        return False
    return True


def _split_run(items: list[str]) -> tuple[str | None, list[str]]:
    """``decompress [RUN] FILE...``: (the model named first, the files), or (None, the files) when the first item
    is compressed data itself (a ``.hvq`` file, a folder that is not a model) and the headers must name the model."""
    first = Path(items[0])
    if len(items) == 1:
        if first.suffix != SUFFIX and _is_model(items[0]):
            raise HierVQError(f"{items[0]}: a model, and no files to decompress; name them after it "
                              f"(`hiervq decompress {items[0]} FILE...`)")
        return None, items
    if (first.suffix == SUFFIX and not first.is_dir()) or (first.is_dir() and not _is_model(items[0])):
        return None, items
    return items[0], items[1:]


def _codecs_from_headers(headers: dict[Path, bytes]) -> dict[bytes, Codec]:
    """{model id: codec} for the model ids of the files' headers ({file: its header's model id}), each found among
    the named tokenizers (:meth:`Codec.for_model_id`: a one-line error naming the first file whose model is not
    there)."""
    codecs: dict[bytes, Codec] = {}
    for path, key in headers.items():
        if key not in codecs:
            codecs[key] = Codec.for_model_id(key, str(path), "name the run that compressed it first: `hiervq "
                                             f"decompress RUN {path}`")
    return codecs


def cmd_decompress(args: argparse.Namespace) -> int:
    _check_batch_size(args.batch_size)
    run, args.files = _split_run(args.files)
    if run is None and args.priors:
        raise HierVQError("--priors: name the autoencoder run first (`hiervq decompress RUN --priors DIR... FILE...`)")
    out = Path(args.output)
    if args.recursive:  # every .hvq file of a folder's tree, each PNG at the file's path below the folder
        refuse_output_inside_inputs(out, args.files)
        paths, relative = collect_tree(args.files, (SUFFIX,), f"{SUFFIX} files")
        pngs = [out.joinpath(*r.parent.parts, f"{r.stem}.png") for r in relative]
        refuse_clashes(pngs, paths)  # two files of the trees to one PNG: named both (the rest: png_targets)
        targets = png_targets(out, out, [r.as_posix() for r in relative], len(paths), args.overwrite, grid=False,
                              inputs=paths, folders=True)
    else:
        paths = _collect_files(args.files)
        targets = png_targets(out, out, [str(p) for p in paths], len(paths), args.overwrite, grid=False,
                              inputs=paths)
    data, ids = [], {}
    for p in paths:
        try:
            data.append(p.read_bytes())
        except OSError as exc:
            raise HierVQError(f"{p}: cannot read ({exc.strerror or exc})") from None
        ids[p] = unpack(data[-1], str(p))[0].model_id  # damaged files are refused before any model is loaded
    if run is not None:
        codec = Codec.from_run(run, args.priors)
        codecs = {key: codec for key in ids.values()}  # another model's files are refused by codec.read
    else:
        codecs = _codecs_from_headers(ids)
    # (model id, image size) -> files, every file checked by its codec before any is decoded
    groups: dict[tuple[bytes, tuple[int, int]], list[int]] = {}
    for i, (d, p) in enumerate(zip(data, paths)):
        groups.setdefault((ids[p], codecs[ids[p]].read(d, str(p))[0].image_size), []).append(i)
    for key, codec in codecs.items():  # one entry per model id of the files
        _warn_if_slow(codec, [size for k, size in groups if k == key])
    t0 = time.perf_counter()
    with NewFiles() as new:  # a failed write (disk full, permissions) removes the PNGs written before it
        for (key, _), index in groups.items():
            for s in range(0, len(index), args.batch_size):
                part = index[s : s + args.batch_size]
                images = codecs[key].decompress([data[i] for i in part], [str(paths[i]) for i in part],
                                                args.batch_size)
                save_pngs(images, [targets[i] for i in part], new.write)
    seconds = time.perf_counter() - t0
    print(f"decompressed {len(paths)} images -> {out}/ ({len(paths) / seconds:.1f} images/s)")
    return 0
