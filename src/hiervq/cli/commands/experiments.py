"""``hiervq compare`` and ``hiervq sweep`` as they run (their flags: :mod:`hiervq.cli.experiments`):
capacity-matched comparisons and sweeps (the work is in :mod:`hiervq.experiments.compare` and
:mod:`hiervq.experiments.sweep`)."""

from __future__ import annotations

import argparse

from ...data import load_data
from ...experiments.capacity import match_capacity
from ...experiments.compare import run_compare
from ...experiments.sweep import parse_grid, run_sweep
from ...train import load_config
from .files import out_dir


def cmd_compare(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    if args.dry_run:
        c, h, _ = load_data(config.data).train.shape
        cmp = config.compare
        match = match_capacity(
            config.model, image_size=h, in_channels=c,
            code_dim=cmp.single_code_dim if cmp else None, codebook_size=cmp.single_codebook_size if cmp else None,
            where=f"{config.source}: model",
        )
        print(match.describe())
        return 0

    run_compare(config, out_dir(args), overwrite=args.overwrite)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    run_sweep(config, out_dir(args), grid=parse_grid(args.grid), workers=args.workers,
              overwrite=args.overwrite, dry_run=args.dry_run)
    return 0
