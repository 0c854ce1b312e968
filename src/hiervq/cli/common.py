"""What every command group shares: the flags that mean the same thing in every command (``--set``, ``--out``,
``--overwrite``, ``--debug``) and the output folder they resolve to.

Importing this module costs nothing (argparse only); the command functions import torch and the library lazily.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` on a subcommand. SUPPRESS: a subcommand's default must not overwrite ``hiervq --debug COMMAND``."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors")


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
    from ..layout import RunDir

    return Path(args.out) if args.out else RunDir.default(args.config).path
