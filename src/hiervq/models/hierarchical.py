"""VQ-VAE and the N-level hierarchical VQ-VAE (VQ-VAE-2 style, conditioned or not).

Level 0 is the bottom (finest) level. Each level's encoder downsamples the level below by its factor; the
quantized levels are upsampled (learned transposed convolutions, channels kept) to the bottom grid and
concatenated into the *joint latent*, which the decoder turns back into an image.

* ``conditioned`` (VQ-VAE-2): levels are quantized top-down; each level's quantizer input also sees the decoded
  level above (a small decoder upsamples the quantized level above to this level's grid).
* ``unconditioned``: every level is quantized independently from its own encoder output.

A single-level :class:`VQVAE` is the same model with one level, so comparisons between the two are between
identically built networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nn import BLOCKS, Decoder, Encoder, Standardize, Upsample, log2_factor
from ..pretrained import register
from ..quantize import Quantized
from .base import DiscreteAutoencoder, LevelInfo, Output, QuantizerConfig, image_sides, level_info, migrate_saved_config

MODES = ("conditioned", "unconditioned")
OUTPUTS = ("linear", "tanh")
WIDTHS = ("hiervq", "vqvae2")


@dataclass
class LevelConfig:
    """One level: its downsampling factor relative to the level below (the image for level 0), its codebook
    size K, the channels ``dim`` at its quantizer input, an optional lower code dimension and an optional
    ``quantizer`` block of its own (e.g. ``{kind: fsq, levels: [8, 5, 5, 5]}``), which replaces the model's
    ``quantizer`` for this level (see :class:`~hiervq.models.QuantizerConfig`)."""

    downsample: int = 2
    codebook_size: int = 512
    dim: int = 64
    code_dim: int | None = None
    quantizer: QuantizerConfig | None = None

    def validate(self) -> None:
        log2_factor(self.downsample)
        if self.codebook_size < 2 or self.dim < 1 or (self.code_dim is not None and self.code_dim < 1):
            raise ValueError("codebook_size must be >= 2, dim and code_dim >= 1")


def _default_levels() -> list[LevelConfig]:
    return [LevelConfig(downsample=4), LevelConfig(downsample=2)]


@dataclass
class HierarchicalConfig:
    """Configuration of :class:`HierarchicalVQVAE` (and of :class:`VQVAE`, with one level).

    ``up_blocks``: blocks after each intermediate upsampling step of the image decoder (0: VQ-VAE-2's decoder).
    ``raw_input``: the inputs are not images in [0, 1] but e.g. another model's latents (a stage of a stack):
    they are encoded as they are (no [0, 1] -> [-1, 1] mapping) and reconstructed on their own scale.
    ``input_norm`` (with ``raw_input``): standardise every input channel with running statistics of the training
    inputs (:class:`~hiervq.nn.Standardize`, saved with the model) and reconstruct the standardised input, so that
    channels of small scale weigh as much in the loss as large ones; ``decode`` returns the input's own scale.
    ``output``: ``"linear"`` (the decoder's last convolution as it is) or ``"tanh"`` (a Tanh on it, so the [-1, 1]
    output, and the reconstruction on [0, 1], cannot leave the image range; images only, not ``raw_input``).
    ``widths``: ``"vqvae2"`` (the default) or ``"hiervq"``. ``vqvae2`` are the channel widths of the VQ-VAE-2
    reference implementation (rosinality/vq-vae-2-pytorch); ``hiervq`` (this library's default before 0.2, and
    what the shipped recipes pin) differs in two places of a conditioned hierarchy: the conditioning decoder of a
    level outputs ``channels`` instead of that level's ``dim``, and the encoder of a factor-2 level downsamples to
    ``channels`` instead of ``channels // 2`` (its 3x3 conv then widens to ``channels``; see
    :class:`~hiervq.nn.Encoder`'s ``half_first``; factor-4 encoders are the same). At the reference's settings
    (128 channels, levels /4 and /2 of dim 64) ``vqvae2`` has 1,388,867 parameters, ``hiervq`` 1,728,963 (+24 %,
    +9 % multiply-adds per image). A single level, or an unconditioned hierarchy, is the same either way.
    ``channels_last`` (default true): keep the convolution weights and activations in the channels-last memory
    layout: faster convolutions on CPUs (about +10 % per training step; see docs/performance.md, "What the
    defaults chose"). A step gives the same results as ``false`` up to float rounding, but over a long run the
    rounding changes the trajectory (the demo recipe ended at test MSE 7.96e-5 with it against 7.13e-5 without,
    one thread). Inputs and outputs (reconstructions, codes) are in the usual layout either way.
    Saved models from before these defaults (no ``widths`` / ``channels_last`` in their config) load with the
    values they were trained with (:meth:`HierarchicalVQVAE.migrate_config`).
    """

    image_size: int | list[int] = 32
    in_channels: int = 3
    raw_input: bool = False
    channels: int = 128
    blocks: int = 2
    res_channels: int = 32
    block: str = "res"
    up_blocks: int = 0
    mode: str = "conditioned"
    levels: list[LevelConfig] = field(default_factory=_default_levels)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    input_norm: bool = False
    output: str = "linear"
    widths: str = "vqvae2"
    channels_last: bool = True

    def validate(self) -> None:
        if self.widths not in WIDTHS:
            raise ValueError(f"widths must be one of {', '.join(WIDTHS)}, got {self.widths!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.output == "tanh" and self.raw_input:
            raise ValueError("output tanh bounds an image on [-1, 1]; raw_input reconstructs latents on their own scale")
        if self.input_norm and not self.raw_input:
            raise ValueError("input_norm standardises latent inputs: it needs raw_input (images are mapped to [-1, 1])")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {self.block!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.levels:
            raise ValueError("at least one level is needed")
        if self.in_channels < 1 or self.channels < 1 or self.blocks < 0 or self.up_blocks < 0:
            raise ValueError("in_channels and channels must be >= 1, blocks and up_blocks >= 0")
        if self.res_channels < 1:
            raise ValueError(f"res_channels must be >= 1, got {self.res_channels}")
        size = self.image_size
        sides = image_sides(size)
        total = math.prod(lv.downsample for lv in self.levels)
        if len(sides) != 2 or any(s % total for s in sides):
            raise ValueError(f"image_size {size} must be two sides divisible by the total downsampling {total}")
        for i, lv in enumerate(self.levels):
            try:
                self.quantizer_of(i).check_level(lv.codebook_size, lv.dim, lv.code_dim)
            except ValueError as exc:
                where = f"levels.{i}.quantizer" if lv.quantizer is not None else "quantizer"
                raise ValueError(f"{where}: {exc}") from None

    def quantizer_of(self, level: int) -> QuantizerConfig:
        """The quantizer settings of ``level``: its own block, or the model's."""
        return self.levels[level].quantizer or self.quantizer


@register("hvqvae")
class HierarchicalVQVAE(DiscreteAutoencoder):
    """N-level hierarchical VQ-VAE. Input (B, C, H, W) in [0, 1]; codes: list of (B, h_l, w_l), bottom first
    ((B, h_l, w_l, L) for a level quantized by ``kind: residual``, (B, T) tokens of all scales for
    ``kind: multiscale``).

    >>> model = HierarchicalVQVAE(HierarchicalConfig(in_channels=1, channels=32))
    >>> [lv.grid for lv in model.levels]
    [(8, 8), (4, 4)]
    """

    Config = HierarchicalConfig

    #: the values of keys whose default changed, for saved configs written before the key was listed (every
    #: config saved since lists all its keys)
    SAVED_DEFAULTS = {"widths": "hiervq", "channels_last": False}

    @classmethod
    def migrate_config(cls, params: dict) -> dict:
        """A saved config as this version reads it (:func:`~hiervq.models.base.migrate_saved_config`), with the
        settings it was trained with where it predates a key whose default changed (:data:`SAVED_DEFAULTS`)."""
        return {**cls.SAVED_DEFAULTS, **migrate_saved_config(params)}

    def __init__(self, config: HierarchicalConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        n = len(c.levels)
        self.conditioned = c.mode == "conditioned" and n > 1
        self.encoders = nn.ModuleList()
        self.pre_quant = nn.ModuleList()
        self.vq = nn.ModuleList()
        self.cond_decoders = nn.ModuleList()  # cond_decoders[l - 1] maps quantized level l to level l - 1's grid
        self.upsamplers = nn.ModuleList()  # upsamplers[l - 1] maps quantized level l to the bottom grid
        to_bottom = 1
        reference = c.widths == "vqvae2"
        # channels of the conditioning decoder that feeds level i - 1 (from level i)
        cond_out = [lv.dim if reference else c.channels for lv in c.levels]
        for i, lv in enumerate(c.levels):
            in_ch = c.in_channels if i == 0 else c.channels
            self.encoders.append(
                Encoder(in_ch, c.channels, lv.downsample, c.blocks, c.res_channels, c.block, half_first=reference)
            )
            has_cond = self.conditioned and i < n - 1
            self.pre_quant.append(nn.Conv2d(c.channels + (cond_out[i + 1] if has_cond else 0), lv.dim, 1))
            self.vq.append(c.quantizer_of(i).make(lv.dim, lv.codebook_size, lv.code_dim))
            if i > 0:
                to_bottom *= lv.downsample
                self.upsamplers.append(Upsample(lv.dim, to_bottom))
                if self.conditioned:
                    self.cond_decoders.append(
                        Decoder(lv.dim, cond_out[i], c.channels, lv.downsample, c.blocks, c.res_channels, c.block)
                    )
        self.decoder = Decoder(
            sum(lv.dim for lv in c.levels), c.in_channels, c.channels, c.levels[0].downsample,
            c.blocks, c.res_channels, c.block, c.up_blocks,
        )
        self.input_norm = Standardize(c.in_channels) if c.input_norm else None
        for i, info in enumerate(self.levels):  # the grids are known now (a config may leave image_size to the data)
            try:
                c.quantizer_of(i).check_grid(info.grid)
            except ValueError as exc:
                where = f"levels.{i}.quantizer" if c.levels[i].quantizer is not None else "quantizer"
                raise ConfigError(f"{where}: {exc}") from None
        if c.channels_last:
            self.to(memory_format=torch.channels_last)

    # ---------------------------------------------------------------- description
    @property
    def downsampling(self) -> int:
        return math.prod(lv.downsample for lv in self.config.levels)

    @property
    def any_size(self) -> bool:
        """Fully convolutional: any multiple of :attr:`downsampling`, unless a level is multi-scale (its scale
        schedule ends on the training grid)."""
        return all(self.config.quantizer_of(i).kind != "multiscale" for i in range(len(self.config.levels)))

    fixed_size_reason = "a multi-scale level's scales end on its training grid"

    @property
    def levels(self) -> list[LevelInfo]:
        _, h, w = self.image_shape
        out, f = [], 1
        for lv, vq in zip(self.config.levels, self.vq):
            f *= lv.downsample
            out.append(level_info((h // f, w // f), vq, lv.dim))
        return out

    def quantizers(self) -> list:
        return list(self.vq)

    # ---------------------------------------------------------------- computation
    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder reads and, for latent inputs, what the decoder reconstructs: images mapped to
        [-1, 1], latents as they are or standardised (``input_norm``)."""
        self.check_images(x)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.config.raw_input:
            return self.to_model_range(x)
        return x if self.input_norm is None else self.input_norm(x)

    def _encode_features(self, x: torch.Tensor, h: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Encoder outputs per level for ``x`` (or for its :meth:`model_input` ``h`` when already computed)."""
        h = self.model_input(x) if h is None else h
        feats = []
        for enc in self.encoders:
            h = enc(h)
            feats.append(h)
        return feats

    def _quantize(self, feats: list[torch.Tensor], quantize) -> list:
        """Quantize levels top-down; ``quantize(level, z)`` returns (quantized map, result)."""
        n = len(feats)
        results: list = [None] * n
        quantized: list[torch.Tensor | None] = [None] * n
        cond = None
        for i in reversed(range(n)):
            inp = feats[i] if cond is None else torch.cat([feats[i], cond], 1)
            quantized[i], results[i] = quantize(i, self.pre_quant[i](inp))
            if self.conditioned and i > 0:
                cond = self.cond_decoders[i - 1](quantized[i])
        return quantized, results

    def joint_latent(self, quantized: list[torch.Tensor]) -> torch.Tensor:
        """concat(q_0, up(q_1), ..., up(q_{N-1})) at the bottom grid: (B, sum of dims, h_0, w_0)."""
        parts = [quantized[0]] + [up(q) for up, q in zip(self.upsamplers, quantized[1:])]
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder: a joint latent (B, sum of level dims, h_0, w_0) -> reconstruction (B, C, H, W) on the
        input's scale ([0, 1] for images)."""
        y = self.decoder(latent)
        if not self.config.raw_input:
            y = y.contiguous()  # images in the usual layout (a no-op unless channels_last)
            return self.from_model_range(torch.tanh(y) if self.config.output == "tanh" else y)
        return y if self.input_norm is None else self.input_norm.inverse(y)

    def forward(self, x: torch.Tensor) -> Output:
        h = self.model_input(x)
        feats = self._encode_features(x, h)

        def quantize(i, z):
            r: Quantized = self.vq[i](z)
            return r.quantized, r

        quantized, results = self._quantize(feats, quantize)
        joint = self.joint_latent(quantized)
        if self.input_norm is None:
            recon = self.decode_latent(joint)
            recon_loss = F.mse_loss(recon, x)
        else:  # the loss on the standardised scale: every channel of the input counts
            y = self.decoder(joint)
            recon_loss = F.mse_loss(y, h)
            recon = self.input_norm.inverse(y)
        vq_loss = sum(r.loss for r in results)
        losses = {
            "recon": recon_loss.detach(),
            "commitment": sum(r.losses["commitment"] for r in results),
            "codebook": sum(r.losses["codebook"] for r in results),
        }
        return Output(
            recon=recon,
            loss=recon_loss + vq_loss,
            losses=losses,
            codes=[r.indices for r in results],
            stats=[r.stats for r in results],
            latent=joint,
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Codes per level, bottom first: [(B, h_0, w_0), ...]. No gradients and no codebook update."""
        self.check_values(x)
        return self.codes_of(x)

    @torch.no_grad()
    def codes_of(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`encode` without its value check (a stack's frozen stages, inside a forward)."""
        feats = self._encode_features(x)

        def quantize(i, z):
            idx = self.vq[i].encode(z)
            if isinstance(idx, list):  # a multi-scale level's maps per scale: its (B, T) tokens, as in forward
                idx = self.vq[i].flatten_codes(idx)
            return self.vq[i].decode(idx), idx

        return self._quantize(feats, quantize)[1]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Images (B, C, H, W) on [0, 1] from codes per level (bottom first), as the eval forward gives them."""
        if len(codes) != len(self.vq):
            raise ValueError(f"expected codes for {len(self.vq)} levels, got {len(codes)}")
        quantized = [vq.decode(idx) for vq, idx in zip(self.vq, codes)]
        return self.decode_latent(self.joint_latent(quantized))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The joint latent (B, sum of level dims, h_0, w_0): the decoder's input, for downstream heads.

        Runs the quantizers' forward, so in training mode it updates codebooks and passes gradients.
        """
        feats = self._encode_features(x)
        quantized, _ = self._quantize(feats, lambda i, z: (self.vq[i](z).quantized, None))
        return self.joint_latent(quantized)


def _single_level() -> list[LevelConfig]:
    return [LevelConfig(downsample=4)]


@dataclass
class VQVAEConfig(HierarchicalConfig):
    """Configuration of :class:`VQVAE`: a :class:`HierarchicalConfig` with exactly one level."""

    levels: list[LevelConfig] = field(default_factory=_single_level)

    def validate(self) -> None:
        super().validate()
        if len(self.levels) != 1:
            raise ValueError(f"a vqvae has exactly one level, got {len(self.levels)} (use model name hvqvae)")


@register("vqvae")
class VQVAE(HierarchicalVQVAE):
    """Single-level VQ-VAE: encoder -> one quantizer -> decoder. Codes: [(B, h, w)]."""

    Config = VQVAEConfig
