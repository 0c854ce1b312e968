"""Trained tokenizers by name: those shipped inside the package and the user's own.

Every command and function that takes a run or model directory (``hiervq.load``, ``hiervq encode/decode/sample``)
also takes a tokenizer name. A name resolves, in this order, to

1. an existing path (a run directory or a saved model directory) -- a path always wins;
2. a tokenizer shipped inside the package: ``hiervq/weights/NAME/`` (``hiervq models`` lists them);
3. a folder ``NAME/`` in the user's directory named by ``$HIERVQ_MODELS`` (a folder of ``NAME/`` sub-folders,
   each holding ``config.json`` + ``model.safetensors`` as written by ``save_pretrained``, optionally a
   ``card.json`` and ``priors/level<N>/``).

Nothing is ever downloaded: a hub-style id (``org/name``) that is not a local path fails with a one-line message
saying where to put the files. A shipped tokenizer folder holds ``config.json`` and ``model.safetensors`` (the
autoencoder), ``card.md`` (its model card), ``card.json`` (the card's numbers) and, for one with priors,
``priors/level<N>/{config.json, model.safetensors}`` (what ``hiervq sample NAME`` uses).

This module depends only on :mod:`hiervq.layout`, :mod:`hiervq.io` and :mod:`hiervq.errors` (no torch at import).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .layout import MODEL_CONFIG

#: the environment variable naming the user's folder of tokenizers (one ``NAME/`` sub-folder each)
ENV = "HIERVQ_MODELS"
#: the package folder of the shipped tokenizers (``hiervq/weights/NAME/``)
PACKAGE_FOLDER = "weights"
CARD_JSON = "card.json"
CARD_MD = "card.md"

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Tokenizer:
    """A tokenizer known by name: where it lives, where it came from (``shipped`` or ``user``) and its card."""

    name: str
    path: Path
    source: str
    card: dict[str, Any] = field(default_factory=dict)

    def size_bytes(self) -> int:
        """The bytes of every file in its folder (weights, priors, card)."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def shipped_dir() -> Path:
    """The folder of the tokenizers shipped inside the installed package."""
    return Path(str(resources.files("hiervq") / PACKAGE_FOLDER))


def user_dir() -> Path | None:
    """The user's folder of tokenizers (``$HIERVQ_MODELS``), or None when the variable is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return Path(os.path.expanduser(value)) if value else None


def is_name(text: str) -> bool:
    """Whether ``text`` is spelled like a tokenizer name (letters, digits, ``.``, ``_``, ``-``; no separators)."""
    return bool(_NAME.match(text)) and text not in (".", "..")


def _read_card(folder: Path) -> dict[str, Any]:
    """The card's numbers (``card.json``); ``{}`` when it is missing or unreadable. Every value the listing reads
    is type-checked there, so a card of the wrong shape cannot break ``hiervq models``."""
    try:
        card = json.loads((folder / CARD_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _scan(folder: Path | None, source: str) -> list[Tokenizer]:
    """The tokenizers in ``folder``; an entry that cannot be read (permissions, a broken link) is skipped with a
    warning naming it."""
    if folder is None:
        return []
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError as exc:
        logger.warning("%s: cannot list the tokenizers in it (%s); skipped", folder, exc.strerror or exc)
        return []
    found = []
    for p in entries:
        try:
            if not (is_name(p.name) and (p / MODEL_CONFIG).is_file()):
                continue
            (p / MODEL_CONFIG).open("rb").close()
        except OSError as exc:
            logger.warning("%s: skipped, cannot be read (%s)", p, exc.strerror or exc)
            continue
        found.append(Tokenizer(p.name, p, source, _read_card(p)))
    return found


def list_tokenizers() -> list[Tokenizer]:
    """The shipped tokenizers, then the user's (``$HIERVQ_MODELS``) whose names are not shipped ones."""
    shipped = _scan(shipped_dir(), "shipped")
    taken = {t.name for t in shipped}
    return shipped + [t for t in _scan(user_dir(), "user") if t.name not in taken]


def names() -> list[str]:
    return [t.name for t in list_tokenizers()]


def find(name: str) -> Tokenizer | None:
    """The tokenizer called ``name`` (shipped first, then ``$HIERVQ_MODELS``), or None."""
    if not is_name(name):
        return None
    for folder, source in ((shipped_dir(), "shipped"), (user_dir(), "user")):
        if folder is not None and (folder / name / MODEL_CONFIG).is_file():
            return Tokenizer(name, folder / name, source, _read_card(folder / name))
    return None


def where_user_models() -> str:
    """Where the user's tokenizers are looked for, for messages: "$HIERVQ_MODELS = PATH" or "is not set"."""
    folder = user_dir()
    return f"${ENV} = {folder}" if folder is not None else f"${ENV} is not set"


def resolve(spec: str | os.PathLike) -> Path:
    """A run directory, model directory or tokenizer name as a path: an existing path as it is, else the
    tokenizer of that name; a one-line :class:`~hiervq.errors.CheckpointError` otherwise (listing the known names,
    or, for a hub-style ``org/name``, saying that nothing is downloaded and where to put the files)."""
    path = Path(spec)
    if path.exists():
        return path
    text = os.fspath(spec)
    found = find(text)
    if found is not None:
        return found.path
    if is_name(text):
        known = ", ".join(names()) or "none"
        raise CheckpointError(
            f"{text}: no such file or directory, nor a known tokenizer (known: {known}; `hiervq models` lists them; "
            f"your own go in ${ENV}/NAME/, {where_user_models()})")
    if _HUB_ID.match(text):
        local = text.split("/")[1]
        raise CheckpointError(
            f"{text}: no such file or directory; hub ids are not fetched (hiervq downloads nothing at run time): "
            f"put the model's {MODEL_CONFIG} and model.safetensors in a folder and pass its path, or put the folder "
            f"in ${ENV} as {local}/ and pass {local!r}")
    raise CheckpointError(f"{text}: no such file or directory")


__all__ = ["CARD_JSON", "CARD_MD", "ENV", "Tokenizer", "find", "is_name", "list_tokenizers", "names",
           "resolve", "shipped_dir", "user_dir"]
