"""The ``hiervq`` command line: one package, one module per command group, and the only place argparse lives.

=================  ==============================================================
module             commands
=================  ==============================================================
``autoencoder``    ``train``, ``eval``, ``encode``, ``decode``
``priors``         ``prior``, ``sample``
``compress``       ``compress``, ``decompress`` (entropy-coded files with the priors)
``pqvae``          ``bayes``, ``info``, ``progressive`` (analyses of code sequences)
``experiments``    ``compare``, ``sweep``
``classify``       ``classify``, ``tiles``
``common``         the shared flags (``--set``, ``--out``, ``--overwrite``, ``--debug``)
=================  ==============================================================

A new command goes into the module of its group (or a new module listed in :data:`COMMAND_GROUPS`) as a
``_cmd_NAME(args) -> int`` function and a few lines in that module's ``add_commands(sub)``; every command gets
``--debug`` from :func:`build_parser`. Command modules import
only argparse-level things at import time (torch and the library inside the command functions), so ``hiervq
--help`` stays fast.

Every command ends with a one-line ``hiervq: error: ...`` and a non-zero exit code on bad input; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import HierVQError
from . import autoencoder, classify, compress, experiments, pqvae, priors
from .common import add_debug

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130

#: the command groups, in the order ``hiervq --help`` lists their commands
COMMAND_GROUPS = (autoencoder, priors, compress, pqvae, experiments, classify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiervq",
        description="Hierarchical discrete representations of images with vector-quantized autoencoders.",
    )
    parser.add_argument("--version", action="version", version=f"hiervq {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    for command in sub.choices.values():  # every command takes --debug (last, after its own flags)
        add_debug(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HierVQError as exc:
        if args.debug:
            raise
        print(f"hiervq: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = ""
        if getattr(args, "command", None) == "train" and getattr(args, "run_dir", None) is not None:
            hint = f" (checkpoints are written after every epoch: continue with `hiervq train --resume {args.run_dir}`)"
        print(f"hiervq: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into a message
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"hiervq: error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
