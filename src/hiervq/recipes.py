"""The recipes shipped inside the package: ``configs/*.yaml`` of the repository, installed as ``hiervq/configs``.

Every command that takes a CONFIG accepts a path (as before) or a recipe name (``demo``, ``vqvae-mnist``; with or
without ``.yaml``): a file that exists wins, otherwise the shipped recipe of that name is used, otherwise the error
lists the names. ``hiervq configs`` lists them with the first line of their leading comment.

Relative ``data.path`` values in a recipe (``../shared/data/mnist``) are, like every relative path hiervq is
given, relative to the working directory, not to the recipe file; ``--set data.path=...`` points a recipe at
your copy. The demo's dataset is embedded, so ``hiervq train demo`` works from any directory.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path

from .errors import ConfigError

SUFFIX = ".yaml"


def recipes_dir() -> Path:
    """The folder of the shipped recipes (inside the installed package)."""
    return Path(str(resources.files("hiervq") / "configs"))


def recipe_names() -> list[str]:
    """The names of the shipped recipes, sorted."""
    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


#: the recipes a new user starts from, named first when a config name is not found
STARTERS = ("demo", "vqvae-mnist", "vqvae-cifar10", "hvqvae2-cifar10", "hvqvae3-convnext-cifar10")


def recipe_path(name: str) -> Path | None:
    """The shipped recipe called ``name`` (``demo`` or ``demo.yaml``), or None."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if not stem or os.sep in stem or (os.altsep and os.altsep in stem) or stem.startswith("."):
        return None
    path = recipes_dir() / f"{stem}{SUFFIX}"
    return path if path.is_file() else None


def resolve_config(path: str | os.PathLike) -> Path:
    """A CONFIG argument as a file: the path itself when it exists, else the shipped recipe of that name; a
    :class:`~hiervq.errors.ConfigError` otherwise (listing the recipes when the argument looks like a name)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    if p.is_file():
        return p
    found = recipe_path(str(path))
    if found is not None:
        return found
    if os.sep in str(path) or (os.altsep and os.altsep in str(path)):
        raise ConfigError(f"{p}: no such config file")
    names = recipe_names()
    close = difflib.get_close_matches(p.stem, names, n=3)
    # the starting points first: the message is capped at 500 characters, and the list grows with every recipe
    ordered = [n for n in STARTERS if n in names] + [n for n in names if n not in STARTERS]
    raise ConfigError(f"{p}: no such config file, nor a shipped recipe ("
                      + (f"did you mean {', '.join(close)}? " if close else "")
                      + f"`hiervq configs` lists all {len(names)}: {', '.join(ordered)})")


def first_comment_line(path: Path) -> str:
    """The first line of a recipe's leading ``#`` comment ('' without one)."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def describe_recipes() -> list[tuple[str, str]]:
    """(name, first comment line) of every shipped recipe."""
    folder = recipes_dir()
    return [(name, first_comment_line(folder / f"{name}{SUFFIX}")) for name in recipe_names()]
