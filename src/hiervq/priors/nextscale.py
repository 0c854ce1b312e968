"""A next-scale prior (VAR, Tian et al., 2024) over the (B, T) tokens of a multi-scale level.

A multi-scale level (:class:`~hiervq.quantize.MultiScaleVQ`) codes an image as S maps of growing size
(h_s, w_s), coarse first: T = sum_s h_s w_s tokens of one codebook of K, in the order (scale, then row-major
within the scale), the layout of ``model.encode``. This prior factorises their distribution by scale,

    p(tokens) = prod_s prod_{(i, j) in scale s} p(z_s[i, j] | z_0, ..., z_{s-1} [, level above] [, class]),

so the tokens of one scale are independent given the earlier scales, and a whole scale is predicted at once.

Network (all token features have ``channels`` C):

* input of the tokens of scale s, (B, h_s w_s, C):
  - s = 0: a learned start vector (plus the class embedding when class-conditional), the same at every position;
  - s > 0: the accumulated embeddings of the earlier scales, area-averaged to scale s's grid: each earlier scale
    r's map (B, h_r, w_r) is embedded (a table of K rows per scale), upsampled bilinearly to the last scale's grid
    and summed over r < s (:func:`~hiervq.priors.embed.scale_maps`), then brought to (h_s, w_s) -- VAR's input,
    the partial reconstruction f_{<s} at scale s, with learned code vectors instead of the autoencoder's;
  - plus a learned embedding of the scale and a learned position embedding of each (scale, row, column) token;
  - plus, when the level has a level above (a hierarchical model), that level's code map embedded
    (:func:`~hiervq.priors.embed.embed_codes`: (B, h, w), (B, h, w, L) or a multi-scale level's (B, T')), passed
    through ``cond_blocks`` residual blocks at its own grid, area-resized to (h_s, w_s) and projected (1x1 conv);
* ``layers`` pre-norm transformer blocks (multi-head self-attention, GELU MLP) with a *block-causal* mask: a token
  of scale s attends to every token of scales <= s (its own scale included: their inputs hold no token of scale
  s), never to a later scale;
* a LayerNorm and one linear head give the logits (B, T, K).

The input of scale s holds only scales < s and attention never reaches a later scale, so the logits of scale s
depend only on the tokens of scales < s (``tests/test_multiscale_prior.py`` checks it token by token). Sampling
(and decompression) therefore needs one forward per scale (S forwards), against T for a token-by-token
transformer; the last scale's tokens are never an input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock
from ..pretrained import register, save_pretrained
from ..quantize.multiscale import check_scales, scale_offsets
from .embed import check_layout, code_layout, embed_codes, has_layout, scale_maps, table_rows
from .kinds import check_labels, check_num_classes, draw


@dataclass
class NextScaleConfig:
    """Configuration of :class:`NextScalePrior`.

    ``codebook_size`` (K), ``scales``, ``num_classes`` and the ``cond_*`` keys of the level above follow from the
    autoencoder and the data; ``channels`` (the token width), ``layers``, ``heads``, ``ff_mult``, ``dropout`` and
    ``cond_blocks`` shape the network.

    Attributes:
        codebook_size: K, the shared codebook of the modelled level's tokens.
        scales: the level's schedule, (h, w) per scale, coarse first (sides are taken too, as by the quantizer).
        channels: C, the width of the token features (a multiple of ``heads``).
        layers: transformer blocks.
        heads: attention heads.
        ff_mult: the MLP's hidden width, in multiples of C.
        dropout: dropout in the blocks (training only).
        num_classes: class labels (``None``: not class-conditional).
        cond_codebook_size: K of the level above (``None``: no level above).
        cond_depth: codes per position of the level above ((B, h, w, L) when > 1).
        cond_scales: the schedule of a multi-scale level above ((B, T') tokens), or ``None``.
        cond_blocks: residual blocks applied to the embedded level above, at its own grid.
    """

    codebook_size: int = 512
    scales: list[list[int]] = field(default_factory=lambda: [[1, 1], [2, 2], [4, 4]])
    channels: int = 128
    layers: int = 4
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    num_classes: int | None = None
    cond_codebook_size: int | None = None
    cond_depth: int = 1
    cond_scales: list[list[int]] | None = None
    cond_blocks: int = 2

    def validate(self) -> None:
        check_scales(self.scales)
        if self.codebook_size < 2 or self.layers < 1 or self.heads < 1 or self.ff_mult < 1:
            raise ValueError("codebook_size must be >= 2, layers, heads and ff_mult >= 1")
        if self.channels < 1 or self.channels % self.heads:
            raise ValueError(f"channels ({self.channels}) must be a positive multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_num_classes(self.num_classes)
        if self.cond_codebook_size is not None and self.cond_codebook_size < 1:
            raise ValueError("cond_codebook_size must be >= 1 or null")
        if self.cond_depth < 1 or self.cond_blocks < 0:
            raise ValueError("cond_depth must be >= 1 and cond_blocks >= 0")
        check_layout(self.cond_depth, self.cond_scales)


class Block(nn.Module):
    """Pre-norm transformer block on (B, N, C): x + attn(LN(x), mask), then x + MLP(LN(x)); ``mask`` (N, N) bool,
    True where query i may attend to key j."""

    def __init__(self, channels: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, ff_mult * channels), nn.GELU(),
                                 nn.Linear(ff_mult * channels, channels))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout.p if self.training else 0.0)
        x = x + self.dropout(self.proj(a.transpose(1, 2).reshape(b, n, c)))
        return x + self.dropout(self.mlp(self.norm2(x)))


@register("nextscale-prior")
class NextScalePrior(nn.Module):
    """Next-scale prior over a multi-scale level's (B, T) tokens; see the module docstring.

    ``forward(tokens (B, T) long, cond (level above) | None, labels (B,) | None)`` returns logits (B, T, K) in the
    tokens' order (scale by scale, row-major); the logits of scale s depend only on the tokens of scales < s, on
    ``cond`` and on ``labels``.

    >>> prior = NextScalePrior(NextScaleConfig(codebook_size=16, scales=[1, 2, 4], channels=16, layers=1))
    >>> prior(torch.zeros(2, 21, dtype=torch.long)).shape
    torch.Size([2, 21, 16])
    """

    Config = NextScaleConfig

    def __init__(self, config: NextScaleConfig | None = None, **kwargs) -> None:
        super().__init__()
        config = config or NextScaleConfig(**kwargs)
        config.validate()
        self.config = c = config
        self.scales = check_scales(c.scales)
        self.offsets = scale_offsets(self.scales)
        s, t, ch = len(self.scales), self.offsets[-1], c.channels
        self.embed = nn.Embedding(s * c.codebook_size, ch)  # one table of K rows per scale
        self.start = nn.Parameter(torch.randn(ch) * 0.02)
        self.class_embed = nn.Embedding(c.num_classes, ch) if c.num_classes is not None else None
        self.scale_embed = nn.Parameter(torch.randn(s, ch) * 0.02)
        self.position = nn.Parameter(torch.randn(t, ch) * 0.02)  # per (scale, row, column)
        self.cond_net: nn.Module | None = None
        if c.cond_codebook_size is not None:
            self.cond_embed = nn.Embedding(table_rows(c.cond_depth, c.cond_scales) * c.cond_codebook_size, ch)
            self.cond_net = nn.Sequential(*[ResBlock(ch, ch) for _ in range(c.cond_blocks)])
            self.cond_proj = nn.Conv2d(ch, ch, 1)
        self.blocks = nn.ModuleList(Block(ch, c.heads, c.ff_mult, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(ch)
        self.head = nn.Linear(ch, c.codebook_size)
        scale_of = torch.repeat_interleave(torch.arange(s), torch.tensor([h * w for h, w in self.scales]))
        self.register_buffer("scale_of", scale_of, persistent=False)
        self.register_buffer("mask", scale_of[None, :] <= scale_of[:, None], persistent=False)  # block-causal

    @property
    def num_tokens(self) -> int:
        """T, the tokens of one image."""
        return self.offsets[-1]

    # ------------------------------------------------------------------ inputs

    def condition_features(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The level above's codes -> features (B, C, h, w) at its own grid (``None`` without a level above)."""
        c = self.config
        if self.cond_net is None:
            if cond is not None:
                raise ValueError("this prior was built without cond_codebook_size; it takes no code map above")
            return None
        if cond is None:
            raise ValueError(f"this prior is conditioned on the level above: pass cond "
                             f"{code_layout(c.cond_depth, c.cond_scales)}")
        if not has_layout(cond, c.cond_depth, c.cond_scales) or cond.shape[0] != batch:
            raise ValueError(f"cond must be {code_layout(c.cond_depth, c.cond_scales)} code indices for {batch} "
                             f"images, got shape {tuple(cond.shape)}")
        f = embed_codes(self.cond_embed, cond, c.cond_codebook_size, c.cond_depth, c.cond_scales)
        return self.cond_net(f.permute(0, 3, 1, 2))

    def _inputs(self, tokens: torch.Tensor, n: int, features: torch.Tensor | None,
                labels: torch.Tensor | None) -> torch.Tensor:
        """Inputs (B, T_n, C) of the tokens of the first ``n`` scales, from ``tokens`` (B, >= T_{n-1}) (only the
        first n - 1 scales are read)."""
        b = tokens.shape[0]
        first = self.start.expand(b, -1)
        if self.class_embed is not None:
            first = first + self.class_embed(labels)
        h0, w0 = self.scales[0]
        parts = [first[:, None].expand(b, h0 * w0, -1)]
        if n > 1:
            size = self.scales[-1]
            maps = scale_maps(self.embed, tokens[:, : self.offsets[n - 1]], self.config.codebook_size, self.scales, size)
            acc = torch.stack(maps).cumsum(0)  # acc[r] = sum of the embedded scales 0..r at the last grid
            for s in range(1, n):
                m = acc[s - 1]
                if tuple(self.scales[s]) != tuple(size):
                    m = F.interpolate(m, size=self.scales[s], mode="area")
                parts.append(m.flatten(2).transpose(1, 2))
        x = torch.cat(parts, 1)
        if features is not None:
            x = x + torch.cat([self.cond_proj(F.adaptive_avg_pool2d(features, hw)).flatten(2).transpose(1, 2)
                               for hw in self.scales[:n]], 1)
        t = self.offsets[n]
        return x + self.scale_embed[self.scale_of[:t]] + self.position[:t]

    def _logits(self, tokens: torch.Tensor, n: int, features: torch.Tensor | None,
                labels: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, T_n, K) of the tokens of the first ``n`` scales given the earlier scales of ``tokens``."""
        x = self._inputs(tokens, n, features, labels)
        t = self.offsets[n]
        mask = self.mask[:t, :t]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))

    # ------------------------------------------------------------------ interface
    def forward(self, tokens: torch.Tensor, cond: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, K) of every token given the earlier scales (teacher forcing); see the class docstring."""
        if tokens.ndim != 2 or tokens.shape[1] != self.num_tokens:
            raise ValueError(f"tokens must be (B, {self.num_tokens}) code indices (scales {self.scales}), got shape "
                             f"{tuple(tokens.shape)}")
        check_labels(self.config.num_classes, labels, tokens.shape[0])
        features = self.condition_features(cond, tokens.shape[0])
        return self._logits(tokens, len(self.scales), features, labels)

    def nll(self, tokens: torch.Tensor, cond: torch.Tensor | None = None,
            labels: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood per image (B,) in nats, summed over its T tokens."""
        logits = self(tokens, cond, labels)
        return F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1)

    @torch.no_grad()
    def walk(self, n: int, cond: torch.Tensor | None, labels: torch.Tensor | None,
             choose: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Fill ``n`` images' tokens (n, T) scale by scale with one forward per scale: ``choose(logits (n, K))`` ->
        tokens (n,) is called for each token of the scale in order (row-major), all from that scale's one pass
        (the tokens of a scale do not depend on each other). Runs in eval mode."""
        device = self.position.device
        check_labels(self.config.num_classes, labels, n)
        features = self.condition_features(cond, n)
        tokens = torch.zeros(n, self.num_tokens, dtype=torch.long, device=device)
        was_training = self.training
        self.eval()
        try:
            for s in range(len(self.scales)):
                lo, hi = self.offsets[s], self.offsets[s + 1]
                logits = self._logits(tokens[:, :lo], s + 1, features, labels)[:, lo:hi]
                for i in range(hi - lo):
                    tokens[:, lo + i] = choose(logits[:, i])
        finally:
            self.train(was_training)
        return tokens

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``n`` images' tokens (n, T) (:meth:`walk`); ``temperature`` divides the logits."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.walk(n, cond, labels, lambda logits: draw(logits, temperature, generator))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory, extra: dict | None = None):
        """Write ``config.json`` + ``model.safetensors``; ``hiervq.load(directory)`` rebuilds the prior."""
        return save_pretrained(self, directory, extra)
