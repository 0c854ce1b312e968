"""What every command group shares: the flags that mean the same thing in every command (``--set``, ``--out``,
``--overwrite``; and on every command, before or after its name, ``--debug``, ``--quiet``, ``--verbose``,
``--threads``), the help formatter that shows every default, and the output folder they resolve to; reading image
files for a model (``encode``, ``compress``) and writing images as PNGs (``decode``, ``decompress``).

Importing this module costs nothing (argparse only); the command functions import torch and the library lazily.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` with every default: ``(default: X)`` is added to an option's help unless the help already says
    what the default is (or there is none: None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def add_debug(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` (on the top parser with ``top``, else on a subcommand). SUPPRESS on subcommands: their default
    must not overwrite ``hiervq --debug COMMAND``."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("--debug", action="store_true", default=default, help="show the full traceback on errors")


def add_verbosity(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``-q/--quiet`` (warnings and errors only, no progress) and ``-v/--verbose`` (also debug messages)."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="show only warnings and errors (no progress); results still go to stdout")
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="also show debug messages")


def add_threads(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--threads N``: torch's intra-op threads (``torch.set_num_threads``), set before the command's work."""
    p.add_argument("--threads", type=int, metavar="N", default=None if top else argparse.SUPPRESS,
                   help="CPU threads for torch (default: torch's own choice, the physical cores or $OMP_NUM_THREADS)")


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when ``--threads`` was given (validated: >= 1)."""
    if threads is None:
        return
    from ..errors import HierVQError

    if threads < 1:
        raise HierVQError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- commands and their flags
def add_command(sub, name: str, func, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """The subcommand ``name`` of the subparsers ``sub``, run as ``func(args)``: ``help`` is its line in
    ``hiervq --help``, ``description`` the top of its own ``--help``. The caller adds its arguments."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


def add_run(p: argparse.ArgumentParser, help: str = "run directory") -> None:
    """The positional ``run``: the run directory (or saved model directory) the command reads."""
    p.add_argument("run", help=help)


def add_output(p: argparse.ArgumentParser, help: str, default: str | None = None, required: bool = False) -> None:
    """``-o/--output`` (also ``--out``): the file or folder the command writes (``default``, or ``required``)."""
    p.add_argument("-o", "--output", "--out", dest="output", default=default, required=required, help=help)


def add_batch_size(p: argparse.ArgumentParser, default: int, help: str = "images encoded at once") -> None:
    """``--batch-size N``: images (or files) processed together."""
    p.add_argument("--batch-size", type=int, default=default, help=help)


def add_image_options(p: argparse.ArgumentParser) -> None:
    """``--convert`` and ``--resize``: how image files are brought to the model (:func:`read_model_images`);
    ``--keep-size``, the old flag for what is now the default, is still accepted and does nothing."""
    p.add_argument("--convert", action="store_true", help="convert images to the model's channel count")
    p.add_argument("--resize", action="store_true",
                   help="bring images to the model's training size as its training images were (the run's data.fit: "
                        "resize or pad); default: each image at its own size, padded to the model's stride and "
                        "cropped back when decoded")
    p.add_argument("--keep-size", action="store_true", help=argparse.SUPPRESS)  # now the default: a no-op


def add_priors(p: argparse.ArgumentParser,
               help: str = "prior run directories, one per level (default: every prior under RUN/priors/)") -> None:
    """``--priors DIR ...`` (also ``--prior``): the prior runs to use (default: those under ``RUN/priors/``)."""
    p.add_argument("--priors", "--prior", nargs="+", metavar="DIR", help=help)


def add_sampling(p: argparse.ArgumentParser, temperature_help: str = "divide the logits by this") -> None:
    """``--temperature`` and ``--seed`` of codes sampled from a prior."""
    p.add_argument("--temperature", type=float, default=1.0, help=temperature_help)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled codes")


def add_writes(p: argparse.ArgumentParser, overwrite: str, set_help: str = "override a config key",
               out: str = "output folder (default runs/<config name>)") -> None:
    """``--set``, ``--out`` and ``--overwrite`` (their helps), the flags of a command that writes a run or an
    experiment's folder from a config."""
    add_set(p, set_help)
    add_out(p, out)
    add_overwrite(p, overwrite)


def add_set(p: argparse.ArgumentParser, help: str = "override a config key") -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides, applied by :func:`hiervq.train.config.apply_overrides`."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)


def add_out(p: argparse.ArgumentParser, help: str = "output folder (default runs/<config name>)") -> None:
    """``--out DIR`` (also ``-o``/``--output``): where the command writes (see :func:`out_dir` for the default)."""
    p.add_argument("--out", "-o", "--output", dest="out", help=help)


def add_overwrite(p: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: replace what the command wrote before (only hiervq's own output, see
    :func:`hiervq.train.rundir.check_replaceable`)."""
    p.add_argument("--overwrite", action="store_true", help=help)


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the default run directory of the command's CONFIG (``runs/<config name>``)."""
    from ..layout import RunDir

    return Path(args.out) if args.out else RunDir.default(args.config).path


# ---------------------------------------------------------------------- images in
def collect_files(items: list[str], find, what: str, hint: str = "") -> list[Path]:
    """Files named on the command line; a folder stands for ``find(folder)`` (a list of its files, refused when
    empty with "no ``what`` found (``hint``)")."""
    from ..errors import HierVQError

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
    """Image files named on the command line (a folder: the images in it)."""
    from ..data.readers import IMAGE_SUFFIXES, list_images

    return collect_files(paths, list_images, "images", ", ".join(IMAGE_SUFFIXES))


def run_fit(run: str) -> str:
    """How the run brought its training images to size (``data.fit``: resize or pad): from the run's config.yaml,
    else from the saved model's config.json (``data.fit``, recorded since hiervq 0.1.0), else resize."""
    from ..errors import HierVQError
    from ..pretrained import read_meta
    from ..train import read_run_config

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
    import logging

    import numpy as np
    import torch

    from ..data import fit_images, read_image
    from ..errors import DataError

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
    from ..errors import DataError
    from ..train.rundir import check_output_file, check_output_path

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
    import torch
    from PIL import Image

    from ..io import write_image

    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for a, target in zip(arr, targets):
        write_image(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a), target, write)
