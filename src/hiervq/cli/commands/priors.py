"""``hiervq prior`` and ``hiervq sample`` as they run (their flags: :mod:`hiervq.cli.priors`): fit priors over a
run's codes, and generate images with them.

The work is done by :mod:`hiervq.train.priors` (prior runs) and :mod:`hiervq.priors.sampling`,
which dispatches on the autoencoder family through :func:`hiervq.priors.prior_kind_for`, so new families need no
change here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ...errors import HierVQError
from ...io import NewFiles
from ...layout import RunDir
from ...metrics.plots import save_image_grid
from ...pretrained import load
from ...priors import prior_kind_for
from ...priors.sampling import sample_run
from ...train.config import read_yaml_mapping
from ...train.priors import check_not_shipped, no_out_message, prior_run, read_prior_config
from ...train.rundir import check_output_file
from ...zoo import resolve
from .autoencoder import data_path_overrides


def _is_prior_run(path: str) -> bool:
    """Whether ``path`` is a prior run directory (its config.yaml names the autoencoder), not an autoencoder run."""
    config = RunDir(path).config
    return config.is_file() and "autoencoder" in read_yaml_mapping(config)


def cmd_prior(args: argparse.Namespace) -> int:
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
    overrides = data_path_overrides(args.data) + list(args.set or [])
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


def cmd_sample(args: argparse.Namespace) -> int:
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
