"""What every command group shares: the flags that mean the same thing in every command (``--set``, ``--out``,
``--overwrite``; and on every command, before or after its name, ``--debug``, ``--quiet``, ``--verbose``,
``--threads``), the help formatter that shows every default, and the output folder they resolve to.

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


def add_set(p: argparse.ArgumentParser, help: str = "override a config key") -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides, applied by :func:`hiervq.train.config.apply_overrides`."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)


def add_out(p: argparse.ArgumentParser, help: str = "output folder (default runs/<config name>)") -> None:
    """``--out DIR``: where the command writes (see :func:`out_dir` for the default)."""
    p.add_argument("--out", help=help)


def add_overwrite(p: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: replace what the command wrote before (only hiervq's own output, see
    :func:`hiervq.train.rundir.check_replaceable`)."""
    p.add_argument("--overwrite", action="store_true", help=help)


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the default run directory of the command's CONFIG (``runs/<config name>``)."""
    from ..train.rundir import default_run_dir

    return Path(args.out) if args.out else default_run_dir(args.config)
