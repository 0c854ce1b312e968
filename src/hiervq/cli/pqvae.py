"""``hiervq bayes``, ``hiervq info`` and ``hiervq progressive``: analyses of a trained run's code sequences. Their
flags; the commands themselves are in :mod:`hiervq.cli.commands.pqvae`."""

from __future__ import annotations

from .common import add_batch_size, add_command, add_out, add_output, add_priors, add_run, add_sampling

RUN = "hiervq.cli.commands.pqvae"  # the module of the commands as they run
ANALYSIS_OUT = "output folder (default RUN/analysis)"


def add_commands(sub) -> None:
    """Add ``bayes``, ``info`` and ``progressive`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "bayes", f"{RUN}:cmd_bayes", "classify from codes with Bayes rule on code counts (no training)",
        "Fit the independent and 1-step conditional code-count Bayes classifiers on the training "
        "split's codes (Laplace smoothing) and report test accuracy vs the number of leading codes "
        "(raster order for 2-D code maps). Writes bayes.json and bayes.png to RUN/analysis/ (or --out).",
    )
    add_run(p, "autoencoder run directory (labeled data)")
    p.add_argument("--alpha", type=float, default=1.0, help="Laplace smoothing added to every count")
    add_batch_size(p, 256)
    add_out(p, ANALYSIS_OUT)

    p = add_command(
        sub, "info", f"{RUN}:cmd_info", "PQ-VAE: MSE with each code removed, conditional entropy per position",
        "For a PQ-VAE run: test MSE when the code at position l is removed (for every l) and "
        "H(z_l | x, z_<l) per position. Writes info.json and info.png to RUN/analysis/ (or --out).",
    )
    add_run(p, "PQ-VAE run directory")
    p.add_argument("--limit", type=int, default=1000, help="use the first N test images (0: all)")
    add_out(p, ANALYSIS_OUT)

    p = add_command(
        sub, "progressive", f"{RUN}:cmd_progressive", "PQ-VAE: keep the first l codes, sample the rest with the prior, decode",
        "Progressive reconstructions: for test images keep the first l codes, complete the sequence "
        "with the transformer prior and decode, for each l; one figure.",
    )
    add_run(p, "PQ-VAE run directory")
    add_priors(p, "prior run directory (default RUN/priors/)")
    p.add_argument("--lengths", default="1,2,4,8,16,32,48", help="comma-separated prefix lengths")
    p.add_argument("-n", type=int, default=8, help="number of test images (rows)")
    add_sampling(p, "divide the prior's logits by this")
    add_output(p, "output PNG", "progressive.png")
