"""Gated PixelCNN over a 2-D map of code indices, conditioned on the code map of the level above and a class.

The network (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN Decoders"):

* codes (B, H, W) are embedded to (B, C, H, W);
* a *vertical stack* sees every row strictly above the current one (its kernel covers ``k // 2 + 1`` rows
  ending at the current row; the first layer, type A, shifts its input down by one row so the current row is
  excluded); a *horizontal stack* sees the current row up to the current position (the first layer, type A,
  shifts its input right by one column so the current code is excluded; layers after it are type B and include
  the current position of the previous layer's causal features). The vertical stack feeds the horizontal one at
  every layer, so every earlier position in raster order is in the receptive field: no blind spot;
* gated activations ``tanh(a) * sigmoid(b)`` in both stacks; residual connections on the horizontal stack
  (every layer but the first);
* conditioning terms added to the gate pre-activations of every block: the code map of the level above,
  embedded (:func:`hiervq.priors.embed.embed_codes`; a multi-scale level above gives the sum of its scales' embedded
  maps at its last scale's grid), passed through a few non-causal residual blocks at its own grid, upsampled (nearest, then a 3x3 conv)
  to this level's grid and projected per block by a 1x1 conv; and a class embedding per block;
* a 1x1-conv head gives logits over the K codes at every position.

The masking is done by shifting and one-sided padding rather than by weight masks, so no masked weight can leak.
``tests/test_priors.py`` checks causality at every position of a small map in both directions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock
from ..pretrained import register
from ..quantize.common import code_bits as uniform_bits  # noqa: F401 - hiervq.priors exports it
from .embed import code_layout, embed_codes, has_layout, table_rows
from .kinds import CodeMapPrior, CodeMapPriorConfig, check_labels


@dataclass
class PixelCNNConfig(CodeMapPriorConfig):
    """Configuration of :class:`PixelCNN` (the shared keys: :class:`~hiervq.priors.kinds.CodeMapPriorConfig`).

    Attributes:
        codebook_size: K, the codebook size of the modelled level (logits over K per position).
        channels: C, channels of both stacks.
        layers: number of gated blocks (the first is type A).
        kernel_size: odd k; the vertical kernel is (k // 2 + 1) x k, the horizontal one 1 x (k // 2 + 1).
        cond_codebook_size: codebook size of the level above (``None``: no code-map conditioning).
        cond_channels: channels of the conditioning network (default ``channels``).
        cond_blocks: residual blocks applied to the embedded code map above, at its own grid.
        num_classes: number of class labels (``None``: not class-conditional).
        head_channels: hidden channels of the output head (default ``2 * channels``).
        dropout: dropout on the gated outputs of the horizontal stack (training only).
        depth: L, codes per position of the modelled level (L > 1: a residual quantizer's (B, H, W, L) codes,
            modelled in (position, depth) order by a depth head; see :class:`PixelCNN`).
        cond_depth: codes per position of the level above (its code map is (B, h, w, cond_depth) when > 1).
        cond_scales: the schedule ((h, w) per scale) of a multi-scale level above: its codes are (B, T) tokens,
            embedded per scale and summed at its last scale's grid (``None``: the level above is a map).
    """

    #: keys added after format version 1, left out of the codec's model id at these (their default) values, so
    #: that the ids of priors built before them, and the files compressed with them, do not change
    ID_DEFAULTS = {"depth": 1, "cond_depth": 1, "cond_scales": None}
    #: keys renamed since (old -> new): read as the new ones from older configs and saved priors, hashed under the
    #: old ones for the codec's model id (:mod:`hiervq.schema`)
    RENAMED_KEYS = {"num_codes": "codebook_size", "cond_num_codes": "cond_codebook_size"}

    layers: int = 8
    kernel_size: int = 3
    dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move a (B, C, H, W) map one row down (zeros enter at the top)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move a (B, C, H, W) map one column right (zeros enter at the left)."""
    return F.pad(x, (1, 0))[..., :-1]


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated PixelCNN layer over a vertical and a horizontal stack, (B, C, H, W) each.

    ``mask_type`` "A" (first layer) excludes the current position, "B" includes the previous layer's causal
    features at it. ``bias`` is the conditioning term (B, 4C, H, W) or broadcastable, split between the two stacks.
    """

    def __init__(self, channels: int, kernel_size: int, mask_type: str, dropout: float = 0.0) -> None:
        super().__init__()
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be A or B, got {mask_type!r}")
        self.mask_type = mask_type
        self.k = kernel_size // 2
        c = channels
        self.vconv = nn.Conv2d(c, 2 * c, (self.k + 1, kernel_size))  # rows i-k..i, cols j-k..j+k
        self.hconv = nn.Conv2d(c, 2 * c, (1, self.k + 1))  # row i, cols j-k..j
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k
        v_in, h_in = (_shift_down(v), _shift_right(h)) if self.mask_type == "A" else (v, h)
        v_pre = self.vconv(F.pad(v_in, (k, k, k, 0)))  # one-sided padding: output row i sees input rows <= i
        h_pre = self.hconv(F.pad(h_in, (k, 0))) + self.v_to_h(v_pre)
        if bias is not None:
            bv, bh = bias.chunk(2, dim=1)
            v_pre = v_pre + bv
            h_pre = h_pre + bh
        v_out = _gate(v_pre)
        h_new = self.h_out(self.dropout(_gate(h_pre)))
        h_out = h_new if self.mask_type == "A" else h + h_new
        return v_out, h_out


@register("pixelcnn")
class PixelCNN(CodeMapPrior):
    """Gated PixelCNN prior over a code map; see the module docstring for the architecture.

    Build it as ``PixelCNN(codebook_size, channels=64, layers=8, cond_codebook_size=None, num_classes=None, ...)`` or
    from a config, ``PixelCNN(PixelCNNConfig(...))`` (what ``hiervq.load`` does).

    ``forward(codes (B, H, W) long, cond (B, h, w) long | None, labels (B,) long | None)`` returns logits
    (B, K, H, W); the logits at (i, j) depend only on codes at earlier raster positions, on all of ``cond``
    and on ``labels``. ``cond``'s grid must divide this level's grid (it is upsampled by H / h, W / w).

    With ``depth`` L > 1 (a residual level) the codes are (B, H, W, L) and the logits (B, K, H, W, L), in the
    order (position in raster order, then depth 0..L-1, coarse to fine). The stacks see the sum of the L codes'
    embeddings (one table per depth) of the earlier positions only; a depth head gives the logits of code
    (p, d) from the stacks' features at p plus the embeddings of codes (p, 0..d-1) (a second set of tables per
    depth; their exclusive prefix sum) and a learned embedding of d. So (p, d) depends only on codes before it
    in that order. ``cond_depth`` > 1: the level above is residual too, its (B, h, w, cond_depth) codes are
    embedded the same way (summed). ``cond_scales``: the level above is multi-scale, its (B, T) tokens are embedded
    per scale and summed at its last scale's grid (:func:`~hiervq.priors.embed.embed_codes`).

    >>> prior = PixelCNN(16, channels=8, layers=2, cond_codebook_size=4, num_classes=3)
    >>> prior(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 2, 2, dtype=torch.long), torch.tensor([0, 2])).shape
    torch.Size([2, 16, 4, 4])
    """

    Config = PixelCNNConfig
    registry_name = "pixelcnn"

    def __init__(self, codebook_size: int | PixelCNNConfig | None = None, **kwargs) -> None:
        super().__init__()
        if isinstance(codebook_size, PixelCNNConfig):
            if kwargs:
                raise TypeError("pass either a PixelCNNConfig or keyword arguments, not both")
            config = codebook_size
        else:
            config = PixelCNNConfig(**({} if codebook_size is None else {"codebook_size": codebook_size}), **kwargs)
        config.validate()
        self.config = c = config
        ch = c.channels
        self.embed = nn.Embedding(c.depth * c.codebook_size, ch)  # depth > 1: one table of K rows per depth
        self.blocks = nn.ModuleList(
            GatedBlock(ch, c.kernel_size, "A" if i == 0 else "B", c.dropout) for i in range(c.layers)
        )
        self.cond_net: nn.Module | None = None
        self.cond_proj = None
        if c.cond_codebook_size is not None:
            cc = c.cond_channels or ch
            self.cond_embed = nn.Embedding(table_rows(c.cond_depth, c.cond_scales) * c.cond_codebook_size, cc)
            self.cond_net = nn.Sequential(*[ResBlock(cc, cc) for _ in range(c.cond_blocks)])
            self.cond_up = nn.Conv2d(cc, cc, 3, padding=1)
            self.cond_proj = nn.ModuleList(nn.Conv2d(cc, 4 * ch, 1) for _ in range(c.layers))
        self.class_embed = None
        if c.num_classes is not None:
            self.class_embed = nn.ModuleList(nn.Embedding(c.num_classes, 4 * ch) for _ in range(c.layers))
        hc = c.head_channels or 2 * ch
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, hc, 1), nn.ReLU(), nn.Conv2d(hc, c.codebook_size, 1))
        if c.depth > 1:  # the depth head's inputs: codes (p, <d) and d itself
            self.depth_embed = nn.Embedding(c.depth * c.codebook_size, ch)
            self.depth_pos = nn.Parameter(torch.zeros(c.depth, ch))
            nn.init.normal_(self.depth_pos, std=0.02)

    # ------------------------------------------------------------------ conditioning
    def condition_features(self, cond: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
        """The codes above -> conditioning features (B, C', H, W) at this level's grid ``size``: a map (B, h, w),
        (B, h, w, cond_depth) or, with ``cond_scales``, (B, T) multi-scale tokens (embedded at their last scale's
        grid, which must divide ``size``)."""
        if self.cond_net is None:
            if cond is not None:
                raise ValueError("this prior was built without cond_codebook_size; it takes no code map above")
            return None
        if cond is None:
            raise ValueError("this prior is conditioned on the level above: pass cond (B, h, w)")
        c = self.config
        if not has_layout(cond, c.cond_depth, c.cond_scales):
            raise ValueError(f"cond must be {code_layout(c.cond_depth, c.cond_scales)} code indices, got shape "
                             f"{tuple(cond.shape)}")
        f = embed_codes(self.cond_embed, cond, c.cond_codebook_size, c.cond_depth, c.cond_scales).permute(0, 3, 1, 2)
        h, w = f.shape[2:]
        if size[0] % h or size[1] % w:
            raise ValueError(f"cond grid {h}x{w} does not divide the code grid {size[0]}x{size[1]}")
        f = self.cond_net(f)
        if (h, w) != tuple(size):
            f = F.interpolate(f, size=tuple(size), mode="nearest")
        return self.cond_up(f)


    def _depth_logits(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H', W', L) of the depth head: the stacks' features h (B, C, H', W') at each position plus
        the exclusive prefix sum of the embeddings of that position's codes (B, H', W', L) and the depth's own."""
        k, depth = self.config.codebook_size, self.config.depth
        e = self.depth_embed(codes + k * torch.arange(depth, device=codes.device))  # (B, H', W', L, C)
        prefix = e.cumsum(-2) - e + self.depth_pos  # position (.., d): codes < d of the same position
        x = h.permute(0, 2, 3, 1)[..., None, :] + prefix  # (B, H', W', L, C)
        b, hh, ww = x.shape[:3]
        x = x.reshape(b, hh * ww, depth, -1).permute(0, 3, 1, 2)  # (B, C, H'*W', L): a 1x1 head per code
        return self.head(x).reshape(b, -1, hh, ww, depth)

    def _logits(self, codes: torch.Tensor, features: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, K, H', W'[, L]) for codes (B, H', W'[, L]) given conditioning features cropped to the same
        rows."""
        h = self._stacks(codes, features, labels)
        return self.head(h) if self.config.depth == 1 else self._depth_logits(h, codes)

    def _stacks(self, codes: torch.Tensor, features: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """The horizontal stack's output (B, C, H', W'): at each position, features of the earlier positions."""
        x = embed_codes(self.embed, codes, self.config.codebook_size, self.config.depth).permute(0, 3, 1, 2)
        v, h = x, x
        for i, block in enumerate(self.blocks):
            bias = None
            if features is not None:
                bias = self.cond_proj[i](features)
            if labels is not None:
                y = self.class_embed[i](labels)[:, :, None, None]
                bias = y if bias is None else bias + y
            v, h = block(v, h, bias)
        return h

    # ------------------------------------------------------------------ interface
    def forward(
        self, codes: torch.Tensor, cond: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, K, H, W) for codes (B, H, W) (depth L > 1: (B, K, H, W, L) for (B, H, W, L)); see the class
        docstring."""
        depth = self.config.depth
        if codes.ndim != 3 + (depth > 1) or (depth > 1 and codes.shape[-1] != depth):
            want = "(B, H, W)" if depth == 1 else f"(B, H, W, {depth})"
            raise ValueError(f"codes must be {want} code indices, got shape {tuple(codes.shape)}")
        check_labels(self.config.num_classes, labels, codes.shape[0])
        features = self.condition_features(cond, tuple(codes.shape[1:3]))
        return self._logits(codes, features, labels)

    def nll(
        self, codes: torch.Tensor, cond: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood per map (B,) in nats, summed over its H * W (x L) codes."""
        logits = self(codes, cond, labels)
        return F.cross_entropy(logits, codes, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def walk(
        self,
        n: int,
        size: tuple[int, int],
        cond: torch.Tensor | None,
        labels: torch.Tensor | None,
        choose: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Fill ``n`` code maps (n, H, W) in raster order, one position at a time for the whole batch:
        ``choose(logits (n, K))`` -> codes (n,) picks each position's codes (a draw when sampling, the entropy
        decoder when decompressing). With ``depth`` L > 1 the maps are (n, H, W, L) and ``choose`` is called L
        times per position, depth 0 first (the order of :meth:`forward`'s logits).

        Cache-free: each step recomputes the network, but only over the window that can reach position (i, j):
        rows i - R..i and columns j - R..j + R, R = :attr:`reach` (clipped at the map's edges), with the
        conditioning features (computed once) cropped alike. Every position of the window's receptive field lies
        inside it or beyond a real edge of the map, so the logits are those of the whole map (to float rounding),
        and a step costs O(R^2) instead of O(i W): on a 128x128 map with 6 layers, ~70x fewer positions.
        """
        device = self.embed.weight.device
        H, W = size
        check_labels(self.config.num_classes, labels, n)
        if cond is not None and cond.shape[0] != n:
            raise ValueError(f"cond has {cond.shape[0]} maps for {n} samples")
        features = self.condition_features(cond, (H, W))
        depth, reach = self.config.depth, self.reach
        codes = torch.zeros(n, H, W, *((depth,) if depth > 1 else ()), dtype=torch.long, device=device)
        for i in range(H):
            top = max(0, i - reach)
            for j in range(W):
                left, right = max(0, j - reach), min(W, j + reach + 1)
                window = codes[:, top : i + 1, left:right]
                f = None if features is None else features[:, :, top : i + 1, left:right]
                if depth == 1:
                    codes[:, i, j] = choose(self._logits(window, f, labels)[:, :, i - top, j - left])
                    continue
                h = self._stacks(window, f, labels)[:, :, i - top : i - top + 1, j - left : j - left + 1]
                for d in range(depth):
                    here = codes[:, i : i + 1, j : j + 1]
                    codes[:, i, j, d] = choose(self._depth_logits(h, here)[:, :, 0, 0, d])
        return codes

    @property
    def reach(self) -> int:
        """R: how far (rows up, columns left or right) a position's logits can see, ``layers * (k // 2) + 1``. Each
        gated layer widens the receptive field by k // 2 positions (its vertical kernel reaches k // 2 rows up
        and columns either side, its horizontal one k // 2 columns left), and the first layer's shift by one more."""
        return self.config.layers * (self.config.kernel_size // 2) + 1
