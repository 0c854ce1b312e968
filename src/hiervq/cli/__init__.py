"""The ``hiervq`` command line: one package, two modules per command group, and the only place argparse lives.

=================  ==============================================================
module             commands
=================  ==============================================================
``autoencoder``    ``train``, ``eval``, ``encode``, ``decode``
``priors``         ``prior``, ``sample``
``compress``       ``compress``, ``decompress`` (entropy-coded files with the priors)
``pqvae``          ``bayes``, ``info``, ``progressive`` (analyses of code sequences)
``experiments``    ``compare``, ``sweep``
``classify``       ``classify``, ``tiles``
``recipes``        ``configs`` (the recipes shipped in the package), ``models`` (the shipped tokenizers)
``common``         the shared flags (``--set``, ``--out``, ``--overwrite``, ``--debug``, ``--quiet``,
                   ``--verbose``, ``--threads``) and the help formatter
=================  ==============================================================

Each group is two modules: ``cli/GROUP.py`` declares its commands and flags (``add_commands(sub)``, argparse only)
and ``cli/commands/GROUP.py`` holds the commands as they run, one ``cmd_NAME(args) -> int`` function each, importing
the library at its top (``cli/commands/files.py``: what they share, image files in and PNGs out). A command names
its function as a string, ``"hiervq.cli.commands.GROUP:cmd_NAME"``; :func:`main` imports that one module when the
command runs. So ``hiervq --help`` imports none of the library behind the commands (``hiervq.train``, the
experiments, PyYAML: about 0.25 s measured, on top of the 2 s of ``import hiervq``, which loads torch) and no
command function needs an import of its own.

A new command goes into the two modules of its group (or a new pair listed in :data:`COMMAND_GROUPS`): a
``cmd_NAME(args) -> int`` function and a few lines in ``add_commands(sub)``; every command gets ``--debug``,
``--quiet``, ``--verbose`` and (unless it is in :data:`NO_THREADS`) ``--threads`` from :func:`build_parser`;
``--help`` shows every default (:class:`~hiervq.cli.common.DefaultsFormatter`).

Every command ends with a one-line ``hiervq: error: ...`` and a non-zero exit code on bad input; ``--debug``
shows the traceback instead."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import HierVQError
from ..log import set_verbosity
from . import autoencoder, classify, compress, experiments, pqvae, priors, recipes
from .common import DefaultsFormatter, add_debug, add_threads, add_verbosity, apply_threads

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130

#: the longest error message printed (a message quoting a huge value is cut, ending with "...")
MAX_MESSAGE = 500

#: the command groups, in the order ``hiervq --help`` lists their commands
COMMAND_GROUPS = (autoencoder, priors, compress, pqvae, experiments, classify, recipes)
#: commands that compute nothing, so take no ``--threads``
NO_THREADS = ("configs", "models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiervq",
        description="Hierarchical discrete representations of images with vector-quantized autoencoders.",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hiervq {__version__}")
    add_debug(parser, top=True)
    add_verbosity(parser, top=True)
    add_threads(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    for name, command in sub.choices.items():  # every command takes these (last, after its own flags)
        command.formatter_class = DefaultsFormatter
        add_debug(command)
        add_verbosity(command)
        if name not in NO_THREADS:
            add_threads(command)
    return parser


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (newlines become spaces), cut to ``limit`` characters with "..."."""
    message = " ".join(message.splitlines())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def command_function(func: str):
    """The function named by ``"MODULE:FUNCTION"`` (what :func:`~hiervq.cli.common.add_command` records), its
    module imported now: the one dynamic import of the CLI."""
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives a lone nargs="+" positional only the words before the first option (`decompress RUN -r DIR`);
    # a command that names such a positional in `intermixed` takes the later words too, and options it does not
    # know are still refused as parse_args refuses them
    field = getattr(args, "intermixed", None)
    if field is not None and extra and not any(word.startswith("-") for word in extra):
        setattr(args, field, getattr(args, field) + extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    set_verbosity(quiet=args.quiet, verbose=args.verbose and not args.quiet)
    try:
        apply_threads(args.threads)
        if args.threads is not None:
            logging.getLogger("hiervq").debug("torch threads: %d", args.threads)
        return int(command_function(args.func)(args) or 0)
    except HierVQError as exc:
        if args.debug:
            raise
        print(f"hiervq: error: {one_line(str(exc))}", file=sys.stderr)
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
        text = str(exc)
        first = one_line(text.splitlines()[0] if text else "")
        print(
            f"hiervq: error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
