"""``hiervq bayes``, ``hiervq info`` and ``hiervq progressive`` as they run (their flags: :mod:`hiervq.cli.pqvae`):
analyses of a trained run's code sequences.

The work is in :mod:`hiervq.experiments.pqvae`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ...data import load_data
from ...errors import HierVQError
from ...experiments.pqvae import (
    bayes_curves,
    conditional_entropy,
    earlier_matters_more,
    plot_bayes,
    plot_information,
    plot_progressive,
    progressive_reconstructions,
    removal_mse,
)
from ...io import write_json
from ...layout import RunDir
from ...pretrained import load
from ...priors import prior_kind_for
from ...priors.sampling import check_sampling, find_priors, load_priors
from ...train import read_run_config
from ...train.priors import run_codes


def _out_dir(args) -> Path:
    out = Path(args.out) if args.out else RunDir(args.run).analysis
    out.mkdir(parents=True, exist_ok=True)
    return out


def cmd_bayes(args: argparse.Namespace) -> int:
    model = load(args.run)
    if len({lv.codebook_size for lv in model.levels}) > 1:
        raise HierVQError("the Bayes classifier needs one codebook size across levels")
    config = read_run_config(args.run)
    splits = run_codes(args.run, model, config.data, batch_size=args.batch_size)
    train, test = splits["train"], splits["test"]
    result = bayes_curves(train.codes, train.labels, test.codes, test.labels, model.levels[0].codebook_size,
                          train.num_classes, alpha=args.alpha)
    out = _out_dir(args)
    write_json(out / "bayes.json", result)
    plot_bayes(result, out / "bayes.png")
    best = {m: max(result[m]) for m in ("independent", "conditional")}
    print(json.dumps({"all_codes": {m: result[m][-1] for m in ("independent", "conditional")}, "best": best}))
    print(f"-> {out / 'bayes.json'}, {out / 'bayes.png'}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = load(args.run)
    config = read_run_config(args.run)
    test = load_data(config.data).test
    if args.limit and args.limit < len(test):
        test = test.subset(list(range(args.limit)))
    removal = removal_mse(model, test)
    entropy = conditional_entropy(model, test)
    result = {
        "removal": removal,
        "entropy": entropy,
        "summary": {
            "removed_mse": earlier_matters_more(removal["removed_mse"]),
            "conditional_entropy_bits": earlier_matters_more(entropy["conditional_entropy_bits"]),
            "marginal_entropy_bits": earlier_matters_more(entropy["marginal_entropy_bits"]),
        },
    }
    out = _out_dir(args)
    write_json(out / "info.json", result)
    plot_information(removal, entropy, out / "info.png")
    print(json.dumps(result["summary"], indent=2))
    print(f"-> {out / 'info.json'}, {out / 'info.png'}")
    return 0


def cmd_progressive(args: argparse.Namespace) -> int:
    check_sampling(args.temperature, args.seed)
    model = load(args.run)
    kind = prior_kind_for(model)
    if not hasattr(kind, "complete"):
        raise HierVQError("progressive reconstructions need a sequence model (pqvae) and its transformer prior")
    priors, _ = load_priors(args.run, args.priors or find_priors(args.run), model)
    lengths = [int(v) for v in args.lengths.split(",")]
    config = read_run_config(args.run)
    test = load_data(config.data).test
    x, _ = test.batch(slice(0, args.n))
    gen = torch.Generator().manual_seed(args.seed)
    images = progressive_reconstructions(model, kind, priors, x, lengths, args.temperature, gen)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_progressive(images, lengths, out)
    print(f"progressive reconstructions of {args.n} test images, l in {lengths} -> {out}")
    return 0
