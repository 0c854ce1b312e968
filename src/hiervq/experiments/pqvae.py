"""Analyses of trained code sequences: Bayes classification from code counts, per-position information (PQ-VAE).

* :func:`bayes_curves` -- accuracy of the code-count Bayes classifiers (``independent``, 1-step ``conditional``)
  as a function of the number of leading codes, fitted on the training split's codes (no extra training).
* :func:`removal_mse` -- test MSE when the code at position l is removed (its step contributes nothing), per l.
* :func:`conditional_entropy` -- H(z_l | x, z_<l) per position: the entropy of softmax(-distance / temperature)
  at step l of the nearest-code chain, averaged over images, in bits.
* :func:`progressive_reconstructions` -- keep the first l codes of test images, sample the rest from a prior,
  decode.

Each returns plain dicts/tensors; ``plot_*`` draw the figures. ``hiervq bayes`` / ``hiervq info`` /
``hiervq progressive`` (:mod:`hiervq.cli.pqvae`) run them on a run directory.
"""

from __future__ import annotations

import math

import torch

from ..classify.bayes import METHODS, CodeCountBayes, as_sequence
from ..data import ImageSet
from ..errors import HierVQError
from ..metrics import mse_per_image
from ..metrics.plots import plot_bayes, plot_information, plot_progressive  # noqa: F401 - re-exported


def bayes_curves(
    train_codes: torch.Tensor | list[torch.Tensor],
    train_labels: torch.Tensor,
    test_codes: torch.Tensor | list[torch.Tensor],
    test_labels: torch.Tensor,
    codebook_size: int,
    num_classes: int | None = None,
    alpha: float = 1.0,
) -> dict:
    """``{"prefix_lengths": [1..L], "independent": [...], "conditional": [...], "alpha", "train_images",
    "test_images"}``: test accuracy of each method from the first n codes (raster order for 2-D code maps)."""
    if train_labels is None or test_labels is None:
        raise HierVQError("the Bayes classifier needs labeled data (train and test labels)")
    z_train, z_test = as_sequence(train_codes), as_sequence(test_codes)
    c = num_classes or int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    clf = CodeCountBayes(codebook_size, c, alpha).fit(z_train, train_labels)
    out: dict = {"prefix_lengths": list(range(1, z_test.shape[1] + 1))}
    for method in METHODS:
        out[method] = [round(float(a), 6) for a in clf.accuracy_by_prefix(z_test, test_labels, method)]
    out.update(alpha=alpha, train_images=int(z_train.shape[0]), test_images=int(z_test.shape[0]))
    return out


def _require_sequence_model(model) -> None:
    if not hasattr(model, "quantizer") or not hasattr(model, "step_entropies"):
        raise HierVQError(f"this analysis needs a PQ-VAE run (model {getattr(model, 'registry_name', '?')!r})")


@torch.no_grad()
def removal_mse(model, images: ImageSet, batch_size: int = 200) -> dict:
    """Test MSE (on [0, 1]) with all codes and with the code at each position l removed.

    Returns ``{"full_mse": float, "positions": [1..L], "removed_mse": [L floats], "images": N}``.
    """
    _require_sequence_model(model)
    model.eval()
    length = model.sequence_length
    full, removed, n = 0.0, torch.zeros(length, dtype=torch.float64), len(images)
    for start in range(0, n, batch_size):
        x, _ = images.batch(slice(start, min(start + batch_size, n)))
        codes = model.encode(x)
        full += float(mse_per_image(x, model.decode(codes).clamp(0, 1)).double().sum())
        for pos in range(length):
            keep = torch.ones(length, dtype=torch.bool)
            keep[pos] = False
            removed[pos] += mse_per_image(x, model.decode(codes, keep=keep).clamp(0, 1)).double().sum()
    return {
        "full_mse": full / n,
        "positions": list(range(1, length + 1)),
        "removed_mse": [float(v) / n for v in removed],
        "images": n,
    }


@torch.no_grad()
def conditional_entropy(model, images: ImageSet, batch_size: int = 500) -> dict:
    """H(z_l | x, z_<l) per position in bits, averaged over images; also the empirical code entropy per position
    (the entropy of the histogram of z_l over the images, in bits) for comparison.

    Returns ``{"positions", "conditional_entropy_bits", "marginal_entropy_bits", "images"}``.
    """
    _require_sequence_model(model)
    model.eval()
    total, counts, n = None, None, len(images)
    k = model.levels[0].codebook_size
    for start in range(0, n, batch_size):
        x, _ = images.batch(slice(start, min(start + batch_size, n)))
        codes = model.encode(x)
        ent = model.step_entropies(x).double().sum(0)
        total = ent if total is None else total + ent
        hist = torch.nn.functional.one_hot(codes, k).double().sum(0)  # (L, K)
        counts = hist if counts is None else counts + hist
    p = counts / counts.sum(-1, keepdim=True)
    marginal = -(p * p.clamp_min(1e-300).log()).sum(-1) / math.log(2)
    return {
        "positions": list(range(1, total.numel() + 1)),
        "conditional_entropy_bits": [float(v) / n / math.log(2) for v in total],
        "marginal_entropy_bits": [float(v) for v in marginal],
        "images": n,
    }


def earlier_matters_more(values: list[float], head: int | None = None) -> dict:
    """Summaries of whether a per-position quantity is larger early: mean over the first and last quarter and the
    Spearman rank correlation with the position (negative: decreasing)."""
    v = torch.tensor(values, dtype=torch.float64)
    n = v.numel()
    q = head or max(1, n // 4)
    ranks_v = v.argsort().argsort().double()
    ranks_p = torch.arange(n, dtype=torch.float64)
    rho = float(torch.corrcoef(torch.stack([ranks_v, ranks_p]))[0, 1]) if n > 1 else 0.0
    return {"first_quarter_mean": float(v[:q].mean()), "last_quarter_mean": float(v[-q:].mean()), "spearman_vs_position": rho}


@torch.no_grad()
def progressive_reconstructions(
    model, kind, priors: dict, x: torch.Tensor, lengths: list[int], temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rows: for each image of ``x`` (B, C, H, W): the original, then for each l in ``lengths`` the decode of its
    first l codes completed by the prior. Returns (B * (1 + len(lengths)), C, H, W) in [0, 1]."""
    _require_sequence_model(model)
    codes = model.encode(x)
    rows = []
    for i in range(x.shape[0]):
        rows.append(x[i : i + 1])
        for n in lengths:
            full = kind.complete(model, priors, codes[i : i + 1, :n], temperature=temperature, generator=generator)
            rows.append(model.decode(full).clamp(0, 1))
    return torch.cat(rows)
