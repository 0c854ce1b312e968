"""``hiervq compare`` and ``hiervq sweep``: capacity-matched comparisons and sweeps (the work is in
:mod:`hiervq.experiments.compare` and :mod:`hiervq.experiments.sweep`)."""

from __future__ import annotations

import argparse

from .common import add_command, add_writes, out_dir


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..experiments.capacity import match_capacity
    from ..train import load_config

    config = load_config(args.config, args.set)
    if args.dry_run:
        from ..data import load_data

        c, h, _ = load_data(config.data).train.shape
        cmp = config.compare
        match = match_capacity(
            config.model, image_size=h, in_channels=c,
            code_dim=cmp.single_code_dim if cmp else None, codebook_size=cmp.single_codebook_size if cmp else None,
            where=f"{config.source}: model",
        )
        print(match.describe())
        return 0
    from ..experiments.compare import run_compare

    run_compare(config, out_dir(args), overwrite=args.overwrite)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.sweep import parse_grid, run_sweep
    from ..train import load_config

    config = load_config(args.config, args.set)
    run_sweep(config, out_dir(args), grid=parse_grid(args.grid), workers=args.workers,
              overwrite=args.overwrite, dry_run=args.dry_run)
    return 0


def add_commands(sub) -> None:
    """Add ``compare`` and ``sweep`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "compare", _cmd_compare,
        "train a hierarchical model and its capacity-matched single-level twin identically",
        "Derive the single-level VQ-VAE with the same continuous (sum H*W*C) and discrete (sum K*D) "
        "budget as the config's hierarchical model, train both the same way and write OUT/report.md. "
        "Finished runs in OUT are reused, interrupted ones resumed.",
    )
    p.add_argument("config", help="YAML config with a hierarchical model (and optionally a compare: section)")
    add_writes(p, "delete the output folder first")
    p.add_argument("--dry-run", action="store_true", help="only print the matched model and both budgets")

    p = add_command(
        sub, "sweep", _cmd_sweep, "run a config over a grid of values / named variants and tabulate the results",
        "Every combination of the config's sweep.grid and --grid values, times its sweep.variants, "
        "is one point (a run, or a comparison when the config has a compare: section). Finished points are "
        "skipped on restart. Writes OUT/sweep.json, OUT/sweep.csv and heat maps.",
    )
    p.add_argument("config", help="YAML config (optionally with sweep:, compare:, study: sections)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="an axis, e.g. model.levels.*.codebook_size=64,256 ('*': every list item)")
    p.add_argument("--workers", type=int, help="worker processes (default sweep.workers, 1 = sequential)")
    add_writes(p, "delete the output folder first")
    p.add_argument("--dry-run", action="store_true", help="only list the points")
