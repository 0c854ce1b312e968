"""``hiervq prior`` and ``hiervq sample``: fit priors over a run's codes, and generate images with them.

The work is done by :mod:`hiervq.priors.run`,
which dispatches on the autoencoder family through :func:`hiervq.priors.prior_kind_for`, so new families need no
change here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .common import add_command, add_output, add_overwrite, add_priors, add_run, add_sampling, add_writes


def _cmd_prior(args: argparse.Namespace) -> int:
    from ..errors import HierVQError
    from ..layout import RunDir
    from ..pretrained import load
    from ..priors import prior_kind_for
    from ..priors.run import prior_run

    resume = {}  # level -> resume it (--level all --resume: levels without a checkpoint start afresh)
    if args.level == "all":
        model = load(args.run)
        levels = prior_kind_for(model).prior_levels(model)
        if args.out and len(levels) > 1:
            raise HierVQError("--level all writes RUN/priors/level<N> for every level; drop --out or name one level")
        for level in levels:
            resume[level] = args.resume and RunDir(args.run).prior(level).has_checkpoint()
    else:
        levels = [args.level]
        resume[args.level] = args.resume
    summaries = []
    for level in levels:
        summaries.append(
            prior_run(args.run, level, args.class_conditional, args.set, args.out, overwrite=args.overwrite,
                      resume=resume[level])
        )
    rows = [
        {k: s[k] for k in ("level", "grid", "codebook_size", "bits_per_code", "bits_per_image", "uniform_bits_per_image")}
        for s in summaries
    ]
    print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
    if args.level == "all":
        logging.getLogger(__name__).info(f"priors in {RunDir(args.run).priors}/; sample with `hiervq sample {args.run}`")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from ..io import NewFiles
    from ..metrics.plots import save_image_grid
    from ..priors.run import sample_run
    from ..train.rundir import check_output_file

    check_output_file(args.output, args.overwrite)
    result = sample_run(args.run, args.priors, args.n, args.class_label, args.temperature, args.seed)
    out = Path(args.output)
    with NewFiles() as new:  # written atomically; a folder made for it goes again when the write fails
        save_image_grid(result.images, out, nrow=result.nrow, row_labels=result.row_labels, write=new.write)
    rows = "one row per class, " if result.labels is not None and args.class_label is None else ""
    print(
        f"sampled {len(result.images)} images in {result.seconds:.2f}s ({result.samples_per_s:.1f} samples/s, "
        f"all levels + decoder) -> {out} ({rows}{result.nrow} per row)"
    )
    return 0


def add_commands(sub) -> None:
    """Add ``prior`` and ``sample`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "prior", _cmd_prior, "fit a prior over a trained run's codes (one level)",
        "Fit an autoregressive prior (for hierarchical VQ-VAEs a gated PixelCNN per level, a next-scale "
        "transformer for a multiscale level) over the "
        "codes of a finished run; the codes are extracted once and cached in RUN/codes.npz. Defaults come from "
        "the run config's priors: section. Writes RUN/priors/level<N>/ (or --out) with model/, metrics.jsonl, "
        "summary.json (test NLL in bits per code and per image, next to uniform log2(K) x codes) and a checkpoint "
        "after every epoch (--resume continues it).",
    )
    add_run(p, "autoencoder run directory")
    p.add_argument("--level", help="top, bottom, a level index (0 = bottom), or all (default: the only level)")
    p.add_argument("--class-conditional", action=argparse.BooleanOptionalAction, default=None,
                   help="condition the prior on the class label (default: priors.class_conditional)")
    add_writes(p, "replace an existing prior run directory",
               set_help="override a prior config key, e.g. train.epochs=5 or model.layers=6",
               out="prior run directory (default RUN/priors/level<N>)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted prior run from its checkpoint, with its saved config (with --level "
                   "all: every level that has a checkpoint; the others start afresh)")

    p = add_command(
        sub, "sample", _cmd_sample, "sample images with priors (level by level, top first)",
        "Sample codes level by level (top first) with the priors, decode them and save a grid; "
        "class-conditional priors without --class give one row per class.",
    )
    add_run(p, "autoencoder run directory, or the name of a tokenizer with priors (`hiervq models`)")
    add_priors(p, "prior run directories, one per level (default: every prior under RUN/priors/, or the tokenizer's)")
    p.add_argument("-n", type=int, default=64, help="number of images (class-conditional: spread over the classes)")
    p.add_argument("--class", dest="class_label", metavar="CLASS", help="sample this class (index or name)")
    add_sampling(p, "divide the logits by this (lower: safer samples)")
    add_output(p, "output PNG grid", "samples.png")
    add_overwrite(p, "replace the -o file if it exists")
