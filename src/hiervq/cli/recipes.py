"""``hiervq configs`` and ``hiervq models``: the recipes and the trained tokenizers shipped inside the package.
Their flags; the commands themselves are in :mod:`hiervq.cli.commands.recipes`."""

from __future__ import annotations

from .common import add_command

RUN = "hiervq.cli.commands.recipes"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``configs`` and ``models`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "configs", f"{RUN}:cmd_configs", "list the recipes shipped with hiervq (names for `hiervq train NAME`)",
        "List the shipped recipes with the first line of their comment. Any command that takes a "
        "CONFIG accepts a recipe name (`hiervq train demo`) or a path to a YAML file; copy a recipe to change it "
        "(`cp \"$(hiervq configs --path)/demo.yaml\" mine.yaml`). Relative data.path values are relative to the "
        "working directory; --set data.path=... points a recipe at your copy of the data.",
    )
    p.add_argument("--path", action="store_true", help="print the folder that holds the recipes instead")

    p = add_command(
        sub, "models", f"{RUN}:cmd_models",
        "list the trained tokenizers shipped with hiervq (names for `hiervq encode NAME`, `hiervq.load(NAME)`)",
        "List the trained tokenizers known by name: those shipped inside the package, then yours in "
        "the folder named by $HIERVQ_MODELS (one NAME/ sub-folder each, holding config.json and model.safetensors "
        "as save_pretrained writes them). A name works wherever a run or model directory does (an existing path "
        "wins); nothing is downloaded. Each shipped tokenizer has a model card (card.md) in its folder.",
    )
    p.add_argument("name", nargs="?", help="print this tokenizer's model card instead of the list")
    p.add_argument("--path", action="store_true", help="print the folder that holds the shipped tokenizers instead")
