"""``hiervq bayes``, ``hiervq info`` and ``hiervq progressive``: analyses of a trained run's code sequences.

The work is in :mod:`hiervq.experiments.pqvae`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..io import write_json
from ..layout import RunDir
from .common import add_batch_size, add_command, add_out, add_output, add_priors, add_run, add_sampling

ANALYSIS_OUT = "output folder (default RUN/analysis)"


def _out_dir(args) -> Path:
    out = Path(args.out) if args.out else RunDir(args.run).analysis
    out.mkdir(parents=True, exist_ok=True)
    return out


def _cmd_bayes(args: argparse.Namespace) -> int:
    from ..experiments.pqvae import bayes_curves, plot_bayes
    from ..pretrained import load
    from ..train import read_run_config
    from ..train.priors import run_codes

    model = load(args.run)
    if len({lv.codebook_size for lv in model.levels}) > 1:
        from ..errors import HierVQError

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


def _cmd_info(args: argparse.Namespace) -> int:
    from ..data import load_data
    from ..experiments.pqvae import conditional_entropy, earlier_matters_more, plot_information, removal_mse
    from ..pretrained import load
    from ..train import read_run_config

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


def _cmd_progressive(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_data
    from ..experiments.pqvae import plot_progressive, progressive_reconstructions
    from ..pretrained import load
    from ..priors import prior_kind_for
    from ..priors.sampling import check_sampling, find_priors, load_priors
    from ..train import read_run_config

    check_sampling(args.temperature, args.seed)
    model = load(args.run)
    kind = prior_kind_for(model)
    if not hasattr(kind, "complete"):
        from ..errors import HierVQError

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


def add_commands(sub) -> None:
    """Add ``bayes``, ``info`` and ``progressive`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "bayes", _cmd_bayes, "classify from codes with Bayes rule on code counts (no training)",
        "Fit the independent and 1-step conditional code-count Bayes classifiers on the training "
        "split's codes (Laplace smoothing) and report test accuracy vs the number of leading codes "
        "(raster order for 2-D code maps). Writes bayes.json and bayes.png to RUN/analysis/ (or --out).",
    )
    add_run(p, "autoencoder run directory (labeled data)")
    p.add_argument("--alpha", type=float, default=1.0, help="Laplace smoothing added to every count")
    add_batch_size(p, 256)
    add_out(p, ANALYSIS_OUT)

    p = add_command(
        sub, "info", _cmd_info, "PQ-VAE: MSE with each code removed, conditional entropy per position",
        "For a PQ-VAE run: test MSE when the code at position l is removed (for every l) and "
        "H(z_l | x, z_<l) per position. Writes info.json and info.png to RUN/analysis/ (or --out).",
    )
    add_run(p, "PQ-VAE run directory")
    p.add_argument("--limit", type=int, default=1000, help="use the first N test images (0: all)")
    add_out(p, ANALYSIS_OUT)

    p = add_command(
        sub, "progressive", _cmd_progressive, "PQ-VAE: keep the first l codes, sample the rest with the prior, decode",
        "Progressive reconstructions: for test images keep the first l codes, complete the sequence "
        "with the transformer prior and decode, for each l; one figure.",
    )
    add_run(p, "PQ-VAE run directory")
    add_priors(p, "prior run directory (default RUN/priors/)")
    p.add_argument("--lengths", default="1,2,4,8,16,32,48", help="comma-separated prefix lengths")
    p.add_argument("-n", type=int, default=8, help="number of test images (rows)")
    add_sampling(p, "divide the prior's logits by this")
    add_output(p, "output PNG", "progressive.png")
