"""``hiervq compare`` and ``hiervq sweep``: capacity-matched comparisons and sweeps. Their flags; the commands
themselves are in :mod:`hiervq.cli.commands.experiments`."""

from __future__ import annotations

from .common import add_command, add_writes

RUN = "hiervq.cli.commands.experiments"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``compare`` and ``sweep`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "compare", f"{RUN}:cmd_compare",
        "train a hierarchical model and its capacity-matched single-level twin identically",
        "Derive the single-level VQ-VAE with the same continuous (sum H*W*C) and discrete (sum K*D) "
        "budget as the config's hierarchical model, train both the same way and write OUT/report.md. "
        "Finished runs in OUT are reused, interrupted ones resumed.",
    )
    p.add_argument("config", help="YAML config with a hierarchical model (and optionally a compare: section)")
    add_writes(p, "delete the output folder first")
    p.add_argument("--dry-run", action="store_true", help="only print the matched model and both budgets")

    p = add_command(
        sub, "sweep", f"{RUN}:cmd_sweep", "run a config over a grid of values / named variants and tabulate the results",
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
