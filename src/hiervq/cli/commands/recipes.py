"""``hiervq configs`` and ``hiervq models`` as they run (their flags: :mod:`hiervq.cli.recipes`): the recipes and
the trained tokenizers shipped inside the package (:mod:`hiervq.recipes`, :mod:`hiervq.zoo`)."""

from __future__ import annotations

import argparse
import json

from ...errors import HierVQError
from ...recipes import describe_recipes, recipes_dir
from ...zoo import CARD_MD, ENV, find, list_tokenizers, resolve, shipped_dir, user_dir


def cmd_configs(args: argparse.Namespace) -> int:
    rows = describe_recipes()
    if args.path:
        print(recipes_dir())
        return 0
    width = max((len(name) for name, _ in rows), default=0)
    for name, line in rows:
        print(f"{name:<{width}}  {line}")
    return 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _show_card(name: str) -> int:
    """``hiervq models NAME``: the tokenizer's card (card.md, else its numbers) and where it lives."""
    t = find(name)
    if t is None:
        resolve(name)  # the one-line error listing the known names
        raise HierVQError(f"{name}: a folder, not a tokenizer name; its files are in {name}")
    print(f"# {t.name} ({t.source}): {t.path}")
    try:
        print((t.path / CARD_MD).read_text(encoding="utf-8").rstrip())
    except OSError:
        print(json.dumps(t.card, indent=2) if t.card else "(no card)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.path:
        print(shipped_dir())
        return 0
    if args.name:
        return _show_card(args.name)
    header = ("name", "source", "data", "bits/image", "test MSE", "PSNR", "priors", "size")
    rows = []
    for t in list_tokenizers():
        card = t.card
        test = card.get("test") if isinstance(card.get("test"), dict) else {}
        data = card.get("data") if isinstance(card.get("data"), dict) else {}
        priors = card.get("priors") if isinstance(card.get("priors"), (list, dict)) else []
        try:
            size = _size(t.size_bytes())
        except OSError:
            size = "?"
        rows.append((
            t.name,
            t.source,
            str(data.get("dataset") or data.get("name", "?")),
            _num(card.get("bits_per_image"), ".0f"),
            _num(test.get("mse"), ".2e"),
            _num(test.get("psnr"), ".2f"),
            str(len(priors)),
            size,
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    folder = user_dir()
    print(f"(test metrics on the full test split, from each card; your own: ${ENV}/NAME/, "
          f"{f'now {folder}' if folder else 'unset'})")
    return 0
