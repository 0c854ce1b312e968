"""What every command group shares: the flags that mean the same thing in every command (``--set``, ``--out``,
``--overwrite``; and on every command, before or after its name, ``--debug``, ``--quiet``, ``--verbose``,
``--threads``) and the help formatter that shows every default. What the commands share when they run (the
output folder, image files in, PNGs out) is in :mod:`hiervq.cli.commands.files`.

This module is what ``hiervq --help`` imports: argparse and torch (already loaded by the ``hiervq`` package) only.
"""

from __future__ import annotations

import argparse

import torch

from ..errors import HierVQError


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
    if threads < 1:
        raise HierVQError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- commands and their flags
def add_command(sub, name: str, func: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """The subcommand ``name`` of the subparsers ``sub``, run as ``func(args)``: ``func`` is ``"MODULE:FUNCTION"``
    (a module of :mod:`hiervq.cli.commands`, imported by :func:`hiervq.cli.main` only when the command runs, so
    ``hiervq --help`` does not import the library behind the commands); ``help`` is its line in ``hiervq --help``,
    ``description`` the top of its own ``--help``. The caller adds its arguments."""
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


def add_recursive(p: argparse.ArgumentParser, help: str) -> None:
    """``-r/--recursive``: a folder stands for every file of its tree (hidden files and folders skipped, links to
    folders not followed), each output at the input's path below the folder
    (:func:`hiervq.cli.commands.files.collect_tree`); without it, only the folder's top level."""
    p.add_argument("-r", "--recursive", action="store_true", help=help)


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
    """``--out DIR`` (also ``-o``/``--output``): where the command writes (see
    :func:`hiervq.cli.commands.files.out_dir` for the default)."""
    p.add_argument("--out", "-o", "--output", dest="out", help=help)


def add_overwrite(p: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: replace what the command wrote before (only hiervq's own output, see
    :func:`hiervq.train.rundir.check_replaceable`)."""
    p.add_argument("--overwrite", action="store_true", help=help)
