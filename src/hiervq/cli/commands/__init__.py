"""The commands of ``hiervq`` as they run: one module per command group (its argparse part is the module of the same
name in :mod:`hiervq.cli`), each command a ``cmd_NAME(args) -> int`` function. These modules import the library at
their top; :func:`hiervq.cli.main` imports the one module of the command it runs, so ``hiervq --help`` imports
none of them."""
