"""What the commands share when they run: the output folder of a command that writes from a config; reading image
files for a model (``encode``, ``compress``) and writing images as PNGs (``decode``, ``decompress``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...data import fit_images, read_image
from ...data.readers import IMAGE_SUFFIXES, list_images
from ...errors import DataError, HierVQError
from ...io import write_image
from ...layout import RunDir
from ...pretrained import read_meta
from ...train import read_run_config
from ...train.rundir import check_output_file, check_output_path


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the default run directory of the command's CONFIG (``runs/<config name>``)."""
    return Path(args.out) if args.out else RunDir.default(args.config).path


# ---------------------------------------------------------------------- images in
def collect_files(items: list[str], find, what: str, hint: str = "") -> list[Path]:
    """Files named on the command line; a folder stands for ``find(folder)`` (a list of its files, refused when
    empty with "no ``what`` found (``hint``)")."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = find(p)
            if not found:
                raise HierVQError(f"{p}: no {what} found" + (f" ({hint})" if hint else ""))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise HierVQError(f"{p}: no such file or directory")
    return files


def collect_images(paths: list[str]) -> list[Path]:
    """Image files named on the command line (a folder: the images at its top level; one warning per folder whose
    sub-folders hold images, which are not read: each output is named after its image alone)."""
    for item in paths:
        p = Path(item)
        if p.is_dir():
            nested = len(list_images(p, recursive=True)) - len(list_images(p))
            if nested:
                logging.getLogger(__name__).warning(
                    f"{p}: {nested} image{'s' if nested > 1 else ''} in sub-folders not read (only the folder's top "
                    "level is); name the sub-folders too")
    return collect_files(paths, list_images, "images", ", ".join(IMAGE_SUFFIXES))


def run_fit(run: str) -> str:
    """How the run brought its training images to size (``data.fit``: resize or pad): from the run's config.yaml,
    else from the saved model's config.json (``data.fit``, recorded since hiervq 0.1.0), else resize."""
    try:
        return read_run_config(run).data.fit
    except HierVQError:
        pass
    try:
        return str((read_meta(run).get("data") or {}).get("fit") or "resize")
    except HierVQError:
        return "resize"


def read_model_images(files: list[Path], run: str, model, convert: bool = False, resize: bool = False,
                      keep_size: bool = False) -> list:
    """The images of ``files`` for ``model``, one float tensor (1, C, H, W) on [0, 1] each: at their own size
    (the model pads them to its stride when it codes them, :meth:`~hiervq.models.DiscreteAutoencoder.pad_images`;
    a model that codes its own size only refuses others, naming both sizes and ``--resize``), or with ``resize``
    brought to the model's image size the way the run's training images were (``data.fit``), warning (the
    ``hiervq`` logger) when resizing changes aspect ratios. ``convert`` converts them to the model's channel count.
    ``keep_size`` (the old ``--keep-size``) is the default and contradicts ``resize``."""
    if resize and keep_size:
        raise DataError("--resize and --keep-size contradict each other (images keep their size by default)")
    c, h, w = model.image_shape
    fit = run_fit(run) if resize else None
    arrays, reshaped = [], 0
    for f in files:
        arr = read_image(f, mode=("L" if c == 1 else "RGB") if convert else None)
        if arr.shape[2] != c:
            raise DataError(f"{f}: image has {arr.shape[2]} channels, the model expects {c} (pass --convert to convert)")
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
        if resize:
            reshaped += fit == "resize" and x.shape[-1] * h != x.shape[-2] * w
            try:
                x = fit_images(x, h, fit)
            except DataError as exc:
                raise DataError(f"{f}: {exc} (the run was trained with data.fit: {fit})") from None
        else:
            try:
                model.coded_size(*x.shape[-2:])
            except DataError as exc:
                raise DataError(f"{f}: {exc}") from None
        arrays.append(x.float() / 255.0)
    if reshaped:
        logging.getLogger(__name__).warning(
            f"{reshaped} of {len(files)} images changed their aspect ratio when resized to {h}x{w} "
            "(the run's data.fit: resize; without --resize images keep their size)")
    return arrays


def group_by_size(images: list) -> dict[tuple[int, int], list[int]]:
    """The indices of ``images`` ((1, C, H, W) tensors) per size (H, W), in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(images):
        groups.setdefault(tuple(x.shape[-2:]), []).append(i)
    return groups


# ---------------------------------------------------------------------- images out
def png_targets(source: Path, out: Path, names: list[str] | None, n: int, overwrite: bool, grid: bool = True,
                hint: str = "", inputs: list | tuple = ()) -> list[Path]:
    """The PNG each of ``n`` images goes to in the folder ``out`` (``NAME.png`` by the stem of ``names``, else
    ``00000.png``, ...; with ``grid`` also ``grid.png``); refuses existing files without ``overwrite`` (writing into
    the folder the images came from would replace the originals) and name clashes, before anything is written.
    ``source`` names what the images come from in messages, ``hint`` where to rename a clash; an existing file that
    is one of ``inputs`` or a file of a hiervq run is refused even with ``overwrite``."""
    check_output_path(out, folder=True, what="-o")
    if names is not None and len(names) != n:
        raise DataError(f"{source}: names has {len(names)} entries for {n} images")
    targets = [out / f"{Path(names[i]).stem if names else f'{i:05d}'}.png" for i in range(n)]
    seen: set[Path] = set()
    for i, target in enumerate(targets):
        if target in seen or (grid and target.name == "grid.png"):
            clash = "the grid" if grid and target.name == "grid.png" else "another image"
            raise DataError(f"{source}: image {names[i] if names else i} would be written to {target} over {clash}; "
                            f"rename it{hint}")
        seen.add(target)
    for target in [*targets, *([out / "grid.png"] if grid else [])]:
        if target.exists() or target.is_symlink():  # only with --overwrite, never an input or a run's own file
            check_output_file(target, overwrite, inputs)
    return targets


def save_pngs(images, targets: list[Path], write) -> None:
    """Write images (B, C, H, W) on [0, 1] (clamped, rounded to 8 bits) to ``targets``, one PNG each, each encoded
    in memory and written with ``write(path, data)`` (:meth:`hiervq.io.NewFiles.write`: atomic, and undone when the
    command fails later)."""
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for a, target in zip(arr, targets):
        write_image(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a), target, write)
