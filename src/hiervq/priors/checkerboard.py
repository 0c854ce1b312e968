"""Two-pass checkerboard prior over a 2-D code map: decoded in 2 network passes per level, whatever the grid.

The positions of a (H, W) map are split by checkerboard parity: the *anchors* ((i + j) even) and the rest.

* pass 1 predicts every anchor's code from the conditioning only (the code map of the level above, embedded and
  upsampled exactly as the PixelCNN's conditioning is, and the class label): the input map holds a learned
  "unknown" embedding at every position;
* pass 2 predicts the other positions from the same conditioning plus the anchors' codes: the input holds the
  anchors' embedded codes and "unknown" everywhere else.

The network is fully convolutional (a 3x3 conv, ``blocks`` residual 3x3 blocks, a 1x1 head), one set of weights
for both passes, so it runs at any grid size; each pass runs its head only at the half of the positions it
predicts. Given the anchors, the codes of the other half are independent of
each other (each one sees its 4 anchor neighbours and further anchors within the receptive field); that is the
bits it costs against the PixelCNN, which sees every earlier position in raster order.

Training (teacher forcing): ``forward`` runs both passes and returns the pass-1 logits at the anchors and the
pass-2 logits elsewhere, so the negative log-likelihood is one cross-entropy over the map, as for the PixelCNN.
Sampling and decoding (:meth:`CheckerboardPrior.walk`): pass 1, all anchors at once; pass 2, all the rest. The
coding order is :meth:`CheckerboardPrior.order`: the anchors in raster order, then the rest in raster order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock
from ..pretrained import register
from .embed import code_layout, embed_codes, has_layout, table_rows
from .kinds import CodeMapPrior, CodeMapPriorConfig, check_labels

#: network passes per level to decode a map, whatever its size
PASSES = 2


@dataclass
class CheckerboardConfig(CodeMapPriorConfig):
    """Configuration of :class:`CheckerboardPrior` (the shared keys: :class:`~hiervq.priors.kinds.CodeMapPriorConfig`).

    Attributes:
        codebook_size: K, the codebook size of the modelled level.
        channels: C, width of the residual trunk.
        blocks: residual 3x3 blocks of the trunk (receptive field 3 + 2 x blocks positions).
        cond_codebook_size: codebook size of the level above (``None``: no code-map conditioning, the top level).
        cond_channels: channels of the conditioning network (default ``channels``).
        cond_blocks: residual blocks applied to the embedded code map above, at its own grid.
        num_classes: number of class labels (``None``: not class-conditional).
        head_channels: hidden channels of the output head (default ``2 * channels``).
        depth: codes per position of the modelled level; must be 1 (a residual level needs the PixelCNN).
        cond_depth: codes per position of the level above.
        cond_scales: the schedule of a multi-scale level above (``None``: the level above is a map).
    """

    blocks: int = 4

    def validate(self) -> None:
        super().validate()
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")
        if self.depth != 1:
            raise ValueError(f"the checkerboard prior models one code per position, not {self.depth} (a residual "
                             "level needs arch: pixelcnn)")


def anchors(size: tuple[int, int], device=None) -> torch.Tensor:
    """(H, W) bool: the anchor positions ((i + j) even), decoded in pass 1."""
    i = torch.arange(size[0], device=device)[:, None]
    j = torch.arange(size[1], device=device)[None, :]
    return (i + j) % 2 == 0


@register("checkerboard")
class CheckerboardPrior(CodeMapPrior):
    """Two-pass checkerboard prior over a code map (see the module docstring).

    ``forward(codes (B, H, W) long, cond (B, h, w) long | None, labels (B,) long | None)`` returns logits
    (B, K, H, W): at an anchor they depend only on ``cond`` and ``labels``; elsewhere also on the anchors' codes,
    never on another non-anchor's code.

    >>> prior = CheckerboardPrior(CheckerboardConfig(16, channels=8, blocks=1, cond_codebook_size=4))
    >>> prior(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 2, 2, dtype=torch.long)).shape
    torch.Size([2, 16, 4, 4])
    """

    Config = CheckerboardConfig
    registry_name = "checkerboard"

    def __init__(self, config: CheckerboardConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = CheckerboardConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a CheckerboardConfig or keyword arguments, not both")
        config.validate()
        self.config = c = config
        ch = c.channels
        self.embed = nn.Embedding(c.codebook_size + 1, ch)  # row K: the learned "unknown" code
        self.cond_net: nn.Module | None = None
        if c.cond_codebook_size is not None:
            cc = c.cond_channels or ch
            self.cond_embed = nn.Embedding(table_rows(c.cond_depth, c.cond_scales) * c.cond_codebook_size, cc)
            self.cond_net = nn.Sequential(*[ResBlock(cc, cc) for _ in range(c.cond_blocks)])
            self.cond_up = nn.Conv2d(cc, cc, 3, padding=1)
            self.cond_proj = nn.Conv2d(cc, ch, 1)
        self.class_embed = nn.Embedding(c.num_classes, ch) if c.num_classes is not None else None
        self.stem = nn.Conv2d(ch, ch, 3, padding=1)
        self.trunk = nn.Sequential(*[ResBlock(ch, ch) for _ in range(c.blocks)])
        hc = c.head_channels or 2 * ch
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, hc, 1), nn.ReLU(), nn.Conv2d(hc, c.codebook_size, 1))

    # ------------------------------------------------------------------ conditioning
    def condition_features(self, cond: torch.Tensor | None, size: tuple[int, int],
                           labels: torch.Tensor | None) -> torch.Tensor | None:
        """What the level above and the label add to every position: (B, C, H, W), (B, C, 1, 1) or ``None``."""
        c = self.config
        out = None
        if self.cond_net is None:
            if cond is not None:
                raise ValueError("this prior was built without cond_codebook_size; it takes no code map above")
        else:
            if cond is None:
                raise ValueError("this prior is conditioned on the level above: pass cond (B, h, w)")
            if not has_layout(cond, c.cond_depth, c.cond_scales):
                raise ValueError(f"cond must be {code_layout(c.cond_depth, c.cond_scales)} code indices, got shape "
                                 f"{tuple(cond.shape)}")
            f = embed_codes(self.cond_embed, cond, c.cond_codebook_size, c.cond_depth, c.cond_scales)
            f = f.permute(0, 3, 1, 2)
            h, w = f.shape[2:]
            if size[0] % h or size[1] % w:
                raise ValueError(f"cond grid {h}x{w} does not divide the code grid {size[0]}x{size[1]}")
            f = self.cond_net(f)
            if (h, w) != tuple(size):
                f = F.interpolate(f, size=tuple(size), mode="nearest")
            out = self.cond_proj(self.cond_up(f))
        if labels is not None:
            y = self.class_embed(labels)[:, :, None, None]
            out = y if out is None else out + y
        return out

    def _pass(self, known: torch.Tensor, features: torch.Tensor | None, where: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, P) at the P positions of ``where`` ((H, W) bool, raster order) from codes (B, H, W) where K
        marks an unknown position: the trunk runs over the whole map, the head (1x1 convolutions, most of the
        work for a large K) only where the pass predicts."""
        x = self.embed(known).permute(0, 3, 1, 2)
        if features is not None:
            x = x + features
        h = self.trunk(self.stem(x))[:, :, where]  # (B, C, P)
        if h.shape[-1] == 0:  # nothing to predict (the second pass of a 1x1 map)
            return h.new_zeros(h.shape[0], self.config.codebook_size, 0)
        return self.head(h.unsqueeze(-1)).squeeze(-1)

    def _unknown(self, n: int, size: tuple[int, int], device) -> torch.Tensor:
        return torch.full((n, *size), self.config.codebook_size, dtype=torch.long, device=device)

    # ------------------------------------------------------------------ interface
    def forward(
        self, codes: torch.Tensor, cond: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, K, H, W): pass 1's at the anchors, pass 2's (given the true anchors) elsewhere."""
        if codes.ndim != 3:
            raise ValueError(f"codes must be (B, H, W) code indices, got shape {tuple(codes.shape)}")
        check_labels(self.config.num_classes, labels, codes.shape[0])
        size = tuple(codes.shape[1:])
        features = self.condition_features(cond, size, labels)
        mask = anchors(size, codes.device)
        unknown = self._unknown(codes.shape[0], size, codes.device)
        first = self._pass(unknown, features, mask)  # (B, K, anchors)
        second = self._pass(torch.where(mask, codes, unknown), features, ~mask)
        out = first.new_empty(codes.shape[0], self.config.codebook_size, *size)
        out[:, :, mask] = first
        out[:, :, ~mask] = second
        return out

    def nll(
        self, codes: torch.Tensor, cond: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood per map (B,) in nats, summed over its H * W codes."""
        return F.cross_entropy(self(codes, cond, labels), codes, reduction="none").flatten(1).sum(1)

    @staticmethod
    def order(size: tuple[int, int], device=None) -> torch.Tensor:
        """(H * W,) the raster indices in coding order: the anchors in raster order, then the rest."""
        flat = anchors(size, device).flatten()
        return torch.cat([flat.nonzero()[:, 0], (~flat).nonzero()[:, 0]])

    @torch.no_grad()
    def walk(
        self,
        n: int,
        size: tuple[int, int],
        cond: torch.Tensor | None,
        labels: torch.Tensor | None,
        choose: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Fill ``n`` code maps (n, H, W) in :data:`PASSES` network passes: ``choose(logits (n, P, K))`` -> codes
        (n, P) picks the anchors' codes (P of them, raster order), then the other positions' (a draw when
        sampling, the entropy decoder when decompressing)."""
        device = self.embed.weight.device
        size = tuple(size)
        check_labels(self.config.num_classes, labels, n)
        if cond is not None and cond.shape[0] != n:
            raise ValueError(f"cond has {cond.shape[0]} maps for {n} samples")
        features = self.condition_features(cond, size, labels)
        mask = anchors(size, device)
        codes = self._unknown(n, size, device)
        for part in (mask, ~mask):
            logits = self._pass(codes, features, part)  # (n, K, P)
            codes[:, part] = choose(logits.transpose(1, 2).contiguous()).to(codes.dtype)
        return codes
