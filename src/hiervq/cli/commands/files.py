"""What the commands share when they run: the output folder of a command that writes from a config; reading image
files for a model (``encode``, ``compress``; with ``-r`` a folder's whole tree, each file with its path below the
folder) and writing images as PNGs (``decode``, ``decompress``), checking every output before anything is
written."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from ...data import fit_images, read_image
from ...data.readers import IMAGE_SUFFIXES, list_files, list_images
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


def collect_top_level(items: list[str], find, find_tree, noun: str, hint: str, logger: logging.Logger) -> list[Path]:
    """:func:`collect_files` with ``find`` (a folder's top-level files), first warning once per folder whose
    sub-folders hold more (``find_tree``: the folder's whole tree), which are not read without ``-r/--recursive``
    (:func:`collect_tree`). ``noun``: what a file is, in the messages ("image", ".hvq file")."""
    for item in items:
        p = Path(item)
        if p.is_dir():
            nested = sum(1 for f in find_tree(p) if f.parent != p)
            if nested > 0:
                logger.warning(
                    f"{p}: {nested} {noun}{'s' if nested > 1 else ''} in sub-folders not read (only the folder's top "
                    "level is); pass -r/--recursive to read them too (outputs mirror the folder's tree)")
    return collect_files(items, find, f"{noun}s", hint)


def collect_images(paths: list[str]) -> list[Path]:
    """Image files named on the command line (a folder: the images at its top level; one warning per folder whose
    sub-folders hold images, which are not read without ``-r/--recursive``: see :func:`collect_tree`)."""
    return collect_top_level(paths, list_images, lambda p: list_images(p, recursive=True), "image",
                             ", ".join(IMAGE_SUFFIXES), logging.getLogger(__name__))


def collect_tree(items: list[str], suffixes=IMAGE_SUFFIXES, what: str = "images",
                 hint: str = "") -> tuple[list[Path], list[PurePosixPath]]:
    """``-r/--recursive``: the files named on the command line and each one's path below the folder it was found
    in (a folder stands for every visible file of ``suffixes`` in its tree, hidden files and folders skipped and
    links to folders not followed, as :func:`~hiervq.data.readers.list_images` with ``recursive=True`` reads them;
    a file named itself is at the top: its name). Outputs mirror these paths below the output folder."""
    hint = hint or ", ".join(suffixes)
    files: list[Path] = []
    relative: list[PurePosixPath] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_files(p, suffixes, recursive=True)
            if not found:
                raise HierVQError(f"{p}: no {what} found, sub-folders included ({hint})")
            files += found
            relative += [PurePosixPath(f.relative_to(p).as_posix()) for f in found]
        elif p.is_file():
            files.append(p)
            relative.append(PurePosixPath(p.name))
        else:
            raise HierVQError(f"{p}: no such file or directory")
    return files, relative


def refuse_output_inside_inputs(out: Path, items: list[str]) -> None:
    """``-r/--recursive``: refuse an output folder that is, or lies inside, a folder named as input. The command
    lists its inputs before it writes, so its own outputs are never read back by the same run; but a mirrored tree
    inside its source mixes outputs with inputs: the next recursive run over the folder reads them (PNGs that
    ``decompress -r`` wrote become images for ``compress -r``), and ``-o DIR`` itself would put each output beside
    the file it came from, where ``decompress -r`` would target the original images."""
    target = out.resolve()
    for item in items:
        p = Path(item)
        if p.is_dir():
            folder = p.resolve()
            if target == folder or folder in target.parents:
                raise HierVQError(f"-o {out} is inside the input folder {p}; with -r/--recursive its outputs would "
                                  "mix with the folder's files (and be read by the next recursive run): choose an "
                                  "output folder outside it")


def bad_relative_name(name: str) -> bool:
    """Whether ``name`` (of a codes file's ``names``) cannot be written below an output folder: it must be a plain
    file name or a relative path of plain names joined by ``/`` (as ``hiervq encode -r`` writes them), with no
    empty, ``.`` or ``..`` parts, no absolute path, backslashes or NUL bytes, and a file name with a stem."""
    parts = name.split("/")
    return ("\\" in name or "\0" in name or any(not part.strip() or part in (".", "..") for part in parts)
            or not PurePosixPath(name).stem)


def check_targets(out: Path, targets: list[Path], sources: list, overwrite: bool, inputs: list | tuple = (),
                  verb: str = "written") -> None:
    """Before anything is written: refuse two ``sources`` written to one of ``targets`` (one line naming both), a
    target that another one needs as a folder, a sub-folder that cannot be made (a file in its place, no permission)
    or that leads out of ``out`` (a link), and an existing target unless ``overwrite`` (never an input or a file of
    a hiervq run: :func:`~hiervq.train.rundir.check_output_file`)."""
    first = refuse_clashes(targets, sources, verb)
    check_target_folders(out, targets, lambda i, folder: (
        f"{first[folder]} would be {verb} to {folder}, the folder of {sources[i]} ({targets[i]}); rename one"))
    for target in targets:
        if target.exists() or target.is_symlink():  # only with --overwrite, never an input or a run's own file
            check_output_file(target, overwrite, inputs)


def refuse_clashes(targets: list, sources: list, verb: str = "written") -> dict:
    """Refuse two ``sources`` that would be ``verb`` to the same of ``targets`` (one line naming both); returns
    each target's source."""
    first: dict = {}
    for source, target in zip(sources, targets):
        if target in first:
            raise DataError(f"{first[target]} and {source} would both be {verb} to {target}; rename one")
        first[target] = source
    return first


def check_target_folders(out: Path, targets: list[Path], clash) -> None:
    """The sub-folders of ``out`` that ``targets`` are written into: refused (``DataError(clash(i, folder))``) when
    one is itself a target, else checked as :func:`~hiervq.train.rundir.check_output_path` checks ``-o`` (a file in
    its place, no permission) and refused when it leads out of ``out`` (a link). Top-level targets: nothing to do."""
    names = set(targets)
    root = None
    checked: set[Path] = set()
    for i, target in enumerate(targets):
        if target.parent == out:
            continue
        for folder in target.parents:
            if folder == out:
                break
            if folder in names:
                raise DataError(clash(i, folder))
        folder = target.parent
        if folder in checked:
            continue
        checked.add(folder)
        check_output_path(folder, folder=True, what="-o")
        root = root or out.resolve()
        real = folder.resolve()
        if real != root and root not in real.parents:
            raise HierVQError(f"-o {out}: {folder} leads outside it (to {real}, through a link); remove the link or "
                              "choose another output folder")


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
                hint: str = "", inputs: list | tuple = (), folders: bool = False) -> list[Path]:
    """The PNG each of ``n`` images goes to in the folder ``out`` (``NAME.png`` by the stem of ``names``, else
    ``00000.png``, ...; with ``grid`` also ``grid.png``); refuses existing files without ``overwrite`` (writing into
    the folder the images came from would replace the originals) and name clashes, before anything is written.
    ``source`` names what the images come from in messages, ``hint`` where to rename a clash; an existing file that
    is one of ``inputs`` or a file of a hiervq run is refused even with ``overwrite``. With ``folders`` each name is
    a relative path (``cats/a.png``, checked by :func:`bad_relative_name` first) and keeps its folders below
    ``out`` (``out/cats/a.png``), which are checked as :func:`check_target_folders` checks them."""
    check_output_path(out, folder=True, what="-o")
    if names is not None and len(names) != n:
        raise DataError(f"{source}: names has {len(names)} entries for {n} images")
    if names and folders:
        relative = [PurePosixPath(name) for name in names]
        targets = [out.joinpath(*r.parent.parts, f"{r.stem}.png") for r in relative]
    else:
        targets = [out / f"{Path(names[i]).stem if names else f'{i:05d}'}.png" for i in range(n)]
    grid_file = out / "grid.png"
    seen: set[Path] = set()
    for i, target in enumerate(targets):
        if target in seen or (grid and target == grid_file):
            clash = "the grid" if grid and target == grid_file else "another image"
            raise DataError(f"{source}: image {names[i] if names else i} would be written to {target} over {clash}; "
                            f"rename it{hint}")
        seen.add(target)
    check_target_folders(out, targets, lambda i, folder: (
        f"{source}: image {names[i]} would be written into {folder}, the file of another image; rename it{hint}"))
    for target in [*targets, *([grid_file] if grid else [])]:
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
