"""``hiervq prior`` and ``hiervq sample``: fit priors over a run's codes, and generate images with them.

The work is done by :mod:`hiervq.train.priors` (prior runs) and :mod:`hiervq.priors.sampling`,
which dispatches on the autoencoder family through :func:`hiervq.priors.prior_kind_for`, so new families need no
change here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .common import add_command, add_output, add_overwrite, add_priors, add_run, add_sampling, add_writes


def _is_prior_run(path: str) -> bool:
    """Whether ``path`` is a prior run directory (its config.yaml names the autoencoder), not an autoencoder run."""
    from ..layout import RunDir
    from ..train.config import read_yaml_mapping

    config = RunDir(path).config
    return config.is_file() and "autoencoder" in read_yaml_mapping(config)


def _cmd_prior(args: argparse.Namespace) -> int:
    from ..errors import HierVQError
    from ..layout import RunDir
    from ..pretrained import load
    from ..priors import prior_kind_for
    from ..train.priors import check_not_shipped, no_out_message, prior_run, read_prior_config
    from ..zoo import resolve
    from .autoencoder import _data_path_overrides

    ref, resume_flag = args.run, bool(args.resume)
    if isinstance(args.resume, str):  # `prior --resume DIR`, as `train --resume RUN`
        if ref is not None:
            raise HierVQError(f"--resume {args.resume} names what to resume; drop {ref}, or write `hiervq prior {ref} "
                              f"--resume` to resume its priors")
        if _is_prior_run(args.resume):  # a prior run directory: its autoencoder and level are in its config
            saved = read_prior_config(args.resume)
            ref, args.level, args.out = saved.autoencoder, str(saved.level), args.resume
        else:  # the autoencoder run itself, as for train
            ref = args.resume
    if ref is None:
        raise HierVQError("name the autoencoder: `hiervq prior RUN` (a run, a saved model folder or a tokenizer name)")
    folder = resolve(ref)
    is_run = RunDir(folder).config.is_file()
    check_not_shipped(args.out)  # before the model is even loaded
    if args.out is None and not is_run:
        raise HierVQError(no_out_message(ref))
    overrides = _data_path_overrides(args.data) + list(args.set or [])
    codes = None
    resume = {}  # level -> resume it (--level all --resume: levels without a checkpoint start afresh)
    if args.level == "all":
        model = load(folder)
        levels = prior_kind_for(model).prior_levels(model)
        if args.out:  # --level all: OUT/level<N> for every level (and, for a model that is not a run, OUT/codes.npz)
            outs = {lv: RunDir(Path(args.out) / f"level{lv}") for lv in levels}
            codes = None if is_run else Path(args.out) / RunDir.CODES
        else:
            outs = {lv: RunDir(folder).prior(lv) for lv in levels}
        for level in levels:
            resume[level] = resume_flag and outs[level].has_checkpoint()
    else:
        levels = [args.level]
        outs = {args.level: args.out}
        resume[args.level] = resume_flag
    summaries = []
    for level in levels:
        summaries.append(
            prior_run(ref, level, args.class_conditional, overrides, outs[level], overwrite=args.overwrite,
                      resume=resume[level], codes=codes)
        )
    rows = [
        {k: s[k] for k in ("level", "grid", "codebook_size", "bits_per_code", "bits_per_image", "uniform_bits_per_image")}
        for s in summaries
    ]
    print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
    if args.level == "all":
        where = Path(args.out) if args.out else RunDir(folder).priors
        use = f" --priors {where}/level*" if args.out else ""
        logging.getLogger(__name__).info(f"priors in {where}/; sample with `hiervq sample {ref}{use}`, compress with "
                                         f"`hiervq compress {ref} IMAGES{use}`")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from ..io import NewFiles
    from ..metrics.plots import save_image_grid
    from ..priors.sampling import sample_run
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
