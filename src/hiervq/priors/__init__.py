"""Priors over codes: autoregressive models of a trained autoencoder's codes, for likelihoods and generation.

* :class:`PixelCNN` -- gated PixelCNN over a 2-D code map, conditioned on the code map of the level above and on
  a class label (:mod:`hiervq.priors.pixelcnn`).
* :class:`CheckerboardPrior` -- two-pass checkerboard prior over a code map: decoded in 2 network passes per
  level whatever the grid (:mod:`hiervq.priors.checkerboard`); ``model.arch: checkerboard`` picks it.
* :class:`NextScalePrior` -- next-scale (VAR) transformer over a multi-scale level's tokens, one forward per scale
  (:mod:`hiervq.priors.nextscale`); the hierarchical kind picks it for a ``multiscale`` level.
* :class:`CodeSet`, :func:`cached_codes` -- a dataset's codes, extracted once and cached (:mod:`.codes`).
* :class:`PriorKind`, :func:`register_prior_kind`, :func:`prior_kind_for` -- how each autoencoder family builds,
  scores and samples its priors (:mod:`.kinds`); the hierarchical VQ-VAE's kind is in :mod:`.hierarchical`.
* :class:`TransformerPrior` -- causal transformer over a PQ-VAE's 1-D code sequence, and its kind
  :class:`SequencePriorKind` (:mod:`.transformer`).

* :class:`PriorTask` -- a prior as a task of the training engine (:mod:`.task`); :func:`load_priors`,
  :func:`sample_run` -- a model's priors and sampling level by level (:mod:`.sampling`); the ``priors:`` run-config
  section (:mod:`.config`).

Prior runs (a prior fitted into a run directory with the training engine) are :mod:`hiervq.train.priors`; this
package imports nothing from :mod:`hiervq.train`.
"""

from .checkerboard import CheckerboardConfig, CheckerboardPrior
from .codes import CODES_FILE, CodeSet, cache_key, cached_codes, extract_codes, load_codes, save_codes
from .hierarchical import HierarchicalPriorKind
from .kinds import PRIOR_KINDS, PriorKind, prior_kind_for, register_prior_kind, takes_labels
from .nextscale import NextScaleConfig, NextScalePrior
from .pixelcnn import GatedBlock, PixelCNN, PixelCNNConfig, uniform_bits
from .transformer import SequencePriorKind, TransformerPrior, TransformerPriorConfig

__all__ = [
    "CODES_FILE",
    "CheckerboardConfig",
    "CheckerboardPrior",
    "CodeSet",
    "GatedBlock",
    "HierarchicalPriorKind",
    "NextScaleConfig",
    "NextScalePrior",
    "PRIOR_KINDS",
    "PixelCNN",
    "PixelCNNConfig",
    "PriorKind",
    "SequencePriorKind",
    "TransformerPrior",
    "TransformerPriorConfig",
    "cache_key",
    "cached_codes",
    "extract_codes",
    "load_codes",
    "prior_kind_for",
    "register_prior_kind",
    "save_codes",
    "takes_labels",
    "uniform_bits",
]
