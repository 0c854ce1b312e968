"""``hiervq configs``: the recipes shipped inside the package (:mod:`hiervq.recipes`)."""

from __future__ import annotations

import argparse

from .common import add_command


def _cmd_configs(args: argparse.Namespace) -> int:
    from ..recipes import describe_recipes, recipes_dir

    rows = describe_recipes()
    if args.path:
        print(recipes_dir())
        return 0
    width = max((len(name) for name, _ in rows), default=0)
    for name, line in rows:
        print(f"{name:<{width}}  {line}")
    return 0


def add_commands(sub) -> None:
    """Add ``configs`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "configs", _cmd_configs, "list the recipes shipped with hiervq (names for `hiervq train NAME`)",
        "List the shipped recipes with the first line of their comment. Any command that takes a "
        "CONFIG accepts a recipe name (`hiervq train demo`) or a path to a YAML file; copy a recipe to change it "
        "(`cp \"$(hiervq configs --path)/demo.yaml\" mine.yaml`). Relative data.path values are relative to the "
        "working directory; --set data.path=... points a recipe at your copy of the data.",
    )
    p.add_argument("--path", action="store_true", help="print the folder that holds the recipes instead")
