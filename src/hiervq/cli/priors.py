"""``hiervq prior`` and ``hiervq sample``: fit priors over a run's codes, and generate images with them. Their flags;
the commands themselves are in :mod:`hiervq.cli.commands.priors`."""

from __future__ import annotations

import argparse

from .common import add_command, add_output, add_overwrite, add_priors, add_run, add_sampling, add_writes

RUN = "hiervq.cli.commands.priors"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``prior`` and ``sample`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "prior", f"{RUN}:cmd_prior", "fit a prior over a trained run's codes (one level)",
        "Fit a prior (for hierarchical VQ-VAEs a two-pass checkerboard prior per level, which decodes a level "
        "in 2 network passes at any size; --set model.arch=pixelcnn for a gated PixelCNN, ~6 % fewer bits and "
        "better samples but one pass per code; a next-scale transformer for a multiscale level) over the "
        "codes of a finished run; the codes are extracted once and cached in RUN/codes.npz. Defaults come from "
        "the run config's priors: section. A saved model folder or a tokenizer name (whose folder is never written "
        "into) needs --out DIR: `hiervq prior NAME --level all --out DIR` writes DIR/codes.npz and DIR/level<N>/, "
        "used with `--priors DIR/level*` by sample, compress and decompress; it trains on the data its config.json "
        "recorded (--data to point elsewhere). Writes RUN/priors/level<N>/ (or --out) with model/, metrics.jsonl, "
        "summary.json (test NLL in bits per code and per image, next to uniform log2(K) x codes) and a checkpoint "
        "after every epoch (--resume continues it).",
    )
    p.add_argument("run", nargs="?",
                   help="the autoencoder: a run directory, a saved model folder or a tokenizer name (`hiervq models`); "
                        "a model that is not a run needs --out")
    p.add_argument("--level", help="top, bottom, a level index (0 = bottom), or all (default: the only level)")
    p.add_argument("--data", help="the images to extract codes from, when the run's or the model's recorded data is "
                                  "not here (.npz, MNIST folder, CIFAR batches, image folder; or --set data.path=...)")
    p.add_argument("--class-conditional", action=argparse.BooleanOptionalAction, default=None,
                   help="condition the prior on the class label (default: priors.class_conditional)")
    add_writes(p, "replace an existing prior run directory",
               set_help="override a prior config key, e.g. train.epochs=5 or model.layers=6, or a data key "
                        "(data.path=...)",
               out="prior run directory (default RUN/priors/level<N>); with --level all, the folder of the level<N> "
                   "prior runs (and, for a model that is not a run, of their cached codes.npz)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue an interrupted prior run from its checkpoint, with its saved config (with --level "
                   "all: every level that has a checkpoint; the others start afresh); `--resume PRIOR_DIR` alone "
                   "resumes that prior run, as `train --resume RUN` does")

    p = add_command(
        sub, "sample", f"{RUN}:cmd_sample", "sample images with priors (level by level, top first)",
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
