"""A causal transformer prior over 1-D code sequences (PQ-VAE), and the prior kind of sequence models.

The input at position l is the embedding of the previous code z_{l-1} (a start token, or the class embedding for a
class-conditional prior, at l = 1) plus a position-specific embedding; causal self-attention layers follow, and a
position-specific linear transform maps the hidden state at l to the K logits of z_l (codes at different positions
of a progressive sequence mean different things, though they share one codebook).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HierVQError
from ..pretrained import register, save_pretrained
from .kinds import (
    PriorKind,
    check_labels,
    check_num_classes,
    config_with_derived,
    draw,
    register_prior_kind,
    takes_labels,
)


@dataclass
class TransformerPriorConfig:
    """Configuration of :class:`TransformerPrior`.

    ``codebook_size`` (K), ``length`` (L) and ``num_classes`` follow from the autoencoder and the data; ``dim``,
    ``layers``, ``heads``, ``ff_mult`` and ``dropout`` shape the network.
    """

    #: keys renamed since (old -> new): read as the new ones from older configs and saved priors, hashed under the
    #: old ones for the codec's model id (:mod:`hiervq.schema`)
    RENAMED_KEYS = {"num_codes": "codebook_size"}

    codebook_size: int = 256
    length: int = 64
    dim: int = 128
    layers: int = 4
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    num_classes: int | None = None

    def validate(self) -> None:
        if self.codebook_size < 2 or self.length < 1 or self.layers < 1 or self.heads < 1 or self.ff_mult < 1:
            raise ValueError("codebook_size must be >= 2, length, layers, heads and ff_mult >= 1")
        if self.dim < 1 or self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a positive multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_num_classes(self.num_classes)


@register("transformer-prior")
class TransformerPrior(nn.Module):
    """Autoregressive prior p(z_1..z_L) = prod_l p(z_l | z_<l [, class]) over (B, L) code sequences."""

    Config = TransformerPriorConfig

    def __init__(self, config: TransformerPriorConfig | None = None, **kwargs) -> None:
        super().__init__()
        config = config or TransformerPriorConfig(**kwargs)
        config.validate()
        self.config = config
        c = config
        self.code_embedding = nn.Embedding(c.codebook_size, c.dim)
        self.start = nn.Parameter(torch.zeros(c.dim))
        self.class_embedding = nn.Embedding(c.num_classes, c.dim) if c.num_classes else None
        self.position = nn.Parameter(torch.randn(c.length, c.dim) * 0.02)  # position-specific input embedding
        layer = nn.TransformerEncoderLayer(
            c.dim, c.heads, c.ff_mult * c.dim, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        # position-specific linear output transform: logits_l = h_l W_l + b_l
        self.out_weight = nn.Parameter(torch.randn(c.length, c.dim, c.codebook_size) / math.sqrt(c.dim))
        self.out_bias = nn.Parameter(torch.zeros(c.length, c.codebook_size))
        self.register_buffer("mask", torch.triu(torch.full((c.length, c.length), float("-inf")), 1), persistent=False)


    def logits(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n, K) of z_1..z_n given the codes before each position; ``codes`` (B, n), n <= L
        (only z_1..z_{n-1} are read)."""
        b, n = codes.shape
        if n > self.config.length or n < 1:
            raise ValueError(f"expected 1..{self.config.length} codes per sequence, got {n}")
        check_labels(self.config.num_classes, labels, b)
        first = self.start.expand(b, 1, -1)
        if self.class_embedding is not None:
            first = first + self.class_embedding(labels)[:, None]
        x = torch.cat([first, self.code_embedding(codes[:, : n - 1])], 1) + self.position[:n]
        h = self.norm(self.blocks(x, mask=self.mask[:n, :n], is_causal=True))
        return torch.einsum("bld,ldk->blk", h, self.out_weight[:n]) + self.out_bias[:n]

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(codes, labels)

    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood (B,) in nats of whole sequences ``codes`` (B, L)."""
        logits = self.logits(codes, labels)
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(1)

    def nll_per_position(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(z_l | z_<l) (B, L) in nats: a model-based estimate of the conditional entropy per position."""
        logits = self.logits(codes, labels)
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")

    @torch.no_grad()
    def walk(
        self,
        n: int,
        labels: torch.Tensor | None,
        choose: Callable[[torch.Tensor], torch.Tensor],
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fill ``n`` sequences (n, L) position by position: ``choose(logits (n, K))`` -> codes (n,) picks each
        (a draw when sampling, the entropy decoder when decompressing); a ``prefix`` (n, m) is kept."""
        device = self.position.device
        length = self.config.length
        codes = torch.zeros(n, length, dtype=torch.long, device=device)
        start = 0
        if prefix is not None:
            if prefix.ndim != 2 or prefix.shape[0] != n or prefix.shape[1] > length:
                raise ValueError(f"prefix must be ({n}, m) with m <= {length}, got {tuple(prefix.shape)}")
            start = prefix.shape[1]
            codes[:, :start] = prefix.to(device)
        was_training = self.training
        self.eval()
        for pos in range(start, length):
            codes[:, pos] = choose(self.logits(codes[:, : pos + 1], labels)[:, pos])
        self.train(was_training)
        return codes

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample ``n`` sequences (n, L); a ``prefix`` (n, m) of given leading codes is kept and completed."""
        return self.walk(n, labels, lambda logits: draw(logits, temperature, generator), prefix)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory, extra: dict | None = None):
        return save_pretrained(self, directory, extra)


@register_prior_kind("pqvae")
class SequencePriorKind(PriorKind):
    """One :class:`TransformerPrior` over the (B, L) code sequence of a PQ-VAE (level 0)."""

    name = "transformer"

    def prior_levels(self, model) -> list[int]:
        return [0]

    def level_info(self, model, level: int) -> dict:
        info = model.levels[0]
        return {"grid": list(info.grid), "codebook_size": info.codebook_size, "codes_per_image": info.codes_per_image}

    def build_prior(self, model, level: int, params: dict, num_classes: int | None, where: str) -> nn.Module:
        info = model.levels[0]
        derived = {"codebook_size": info.codebook_size, "length": info.positions, "num_classes": num_classes}
        return TransformerPrior(config_with_derived(TransformerPriorConfig, params, derived, where))

    def nll(self, prior, codes, labels, level):
        return prior.nll(codes[0], labels if takes_labels(prior) else None)

    def _prior(self, model, priors) -> TransformerPrior:
        if 0 not in priors:
            raise HierVQError("no prior for the code sequence; train it with `hiervq prior RUN`")
        prior = priors[0]
        info = model.levels[0]
        if prior.config.length != info.positions or prior.config.codebook_size != info.codebook_size:
            raise HierVQError("the prior does not match this model's code sequence (length or K)")
        return prior

    def logits(self, prior, codes, labels, level):
        return prior.logits(codes[0], labels if takes_labels(prior) else None)

    @torch.no_grad()
    def walk(self, model, priors, n, labels, choose, grids=None):
        prior = self._prior(model, priors)
        if grids and tuple(grids[0]) != (prior.config.length,):
            raise HierVQError(f"the prior models sequences of {prior.config.length} codes, not {tuple(grids[0])}")
        return [prior.walk(n, labels if takes_labels(prior) else None, lambda logits: choose(0, logits))]

    @torch.no_grad()
    def complete(self, model, priors, prefix: torch.Tensor, labels=None, temperature=1.0, generator=None) -> torch.Tensor:
        """Keep the leading codes ``prefix`` (B, m) and sample the rest of the sequence: (B, L)."""
        prior = self._prior(model, priors)
        return prior.sample(prefix.shape[0], labels if takes_labels(prior) else None, temperature, generator, prefix)
