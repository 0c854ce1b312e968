"""PQ-VAE: an encoder, a :class:`~hiervq.quantize.progressive.ProgressiveQuantizer` and a decoder.

Images are encoded into a 1-D sequence of codes from one shared codebook, ordered coarse to fine: any prefix
of the sequence decodes to an image (missing steps contribute nothing), so the first codes carry the most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import BLOCKS, Decoder, Encoder, log2_factor
from ..pretrained import register
from ..quantize.codebook import DEFAULT_CHUNK_ELEMENTS, CodebookConfig
from ..quantize.common import code_bits
from ..quantize.progressive import PQ_CODEBOOK, PQ_ESTIMATORS, ProgressiveQuantizer
from .base import Budget, DiscreteAutoencoder, LevelInfo, Output, image_sides
from .hierarchical import OUTPUTS

RECON_REDUCTIONS = ("mean", "sum")


#: the quantizer settings a PQ-VAE config held at the top of its model section before they moved into
#: ``model.quantizer`` (:data:`PQVAEConfig.RENAMED_KEYS`: older configs and saved models are read with them)
QUANTIZER_KEYS = ("estimator", "temperature", "beta", "entropy_weight", "ema_decay", "init", "kmeans_iters",
                  "dead_threshold", "dead_window")


@dataclass
class PQQuantizerConfig(CodebookConfig):
    """``model.quantizer`` of a PQ-VAE: the :class:`~hiervq.quantize.progressive.ProgressiveQuantizer`'s settings,
    under the same keys as the other families' ``quantizer`` block (:class:`~hiervq.models.base.QuantizerConfig`),
    with the PQ-VAE's defaults: ``estimator`` (``gumbel`` or ``ste``), ``temperature`` (tau of the Gumbel-softmax
    and of the step entropies), ``beta`` (commitment), ``entropy_weight`` (lambda_h), and the codebook settings of
    :class:`~hiervq.quantize.CodebookConfig` (``ema_decay``, null: learned codes; ``init``, here ``kmeans`` by
    default; ``kmeans_iters``, ``dead_threshold``, ``dead_window``, ``reseed``, ``chunk_elements``; ``init_after``
    and ``cosine`` are not supported).

    Written flat in the model section before (``model.estimator``); those keys are still read, with a
    ``DeprecationWarning`` (:data:`PQVAEConfig.RENAMED_KEYS`), and saved runs with them load unchanged.
    """

    #: keys of the other families' quantizer block that a PQ-VAE refuses, and why
    REFUSED_KEYS = {key: "a PQ-VAE's quantizer is its progressive quantizer (the method itself); quantizer kinds "
                    "(vq, residual, multiscale, fsq, lfq) are for vqvae, hvqvae and svqvae models"
                    for key in ("kind", "levels", "stages", "scales", "bits", "simvq")}
    #: keys added since the codec's format version 1, left out of a model's id at their default
    ID_DEFAULTS = {"reseed": "sample", "init_after": 0, "cosine": False, "chunk_elements": DEFAULT_CHUNK_ELEMENTS}

    init: str = PQ_CODEBOOK.init  # the codebook setting whose default differs: k-means
    estimator: str = "gumbel"
    temperature: float = 1.0
    beta: float = 0.25
    entropy_weight: float = 0.01

    def validate(self) -> None:
        if self.estimator not in PQ_ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(PQ_ESTIMATORS)}, got {self.estimator!r}")
        super().validate()
        if self.init_after or self.cosine:
            raise ValueError("a progressive quantizer does not support init_after or cosine")

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~hiervq.quantize.progressive.ProgressiveQuantizer` these settings give."""
        return dict(estimator=self.estimator, temperature=self.temperature, beta=self.beta,
                    entropy_weight=self.entropy_weight, codebook=self.codebook_config())


@dataclass
class PQVAEConfig:
    """Configuration of :class:`PQVAE`.

    The encoder downsamples by ``downsample`` to ``channels``, a 1x1 conv maps to ``latent_channels`` (C), and
    the progressive quantizer splits the (C, H/ds, W/ds) map into small ``map_size`` x ``map_size`` maps,
    quantized in ``steps`` steps each with a shared codebook of ``codebook_size`` codes of dimension
    ``spatial_dim * channel_dim``. Codes per image: ``steps`` x number of small maps.

    ``output``: ``"linear"`` or ``"tanh"`` (a Tanh on the decoder output, before the [-1, 1] -> [0, 1] mapping).
    ``recon_reduction``: the reconstruction term of the loss, ``"mean"`` (MSE averaged over every element, the
    default) or ``"sum"`` (squared error summed over channels and pixels, averaged over the batch: C*H*W times the
    mean, e.g. 1024 for 32x32 MNIST, 3072 for CIFAR-10). The other terms (beta * commitment, entropy_weight * the
    entropy sum over steps in nats) are not rescaled, so with ``sum`` they weigh C*H*W times less against the
    reconstruction. ``losses["recon"]`` stays the per-element MSE either way.

    ``quantizer``: the progressive quantizer's settings (:class:`PQQuantizerConfig`; ``model.quantizer.estimator``
    as for every other family; the flat ``model.estimator`` etc. of older configs and saved models are still read,
    with a warning).
    """

    #: settings moved into ``quantizer`` (old key -> new), read as their new keys from older configs and saved
    #: models by :func:`hiervq.schema.from_dict` (and hashed under the old ones for the codec's model id)
    RENAMED_KEYS = {name: f"quantizer.{name}" for name in QUANTIZER_KEYS}
    #: keys of the other families' model section that a PQ-VAE refuses, and why
    REFUSED_KEYS = {"levels": "a PQ-VAE has one progressive code sequence, not levels, and its quantizer is the method "
                              "itself; per-level quantizer blocks are for vqvae, hvqvae and svqvae models"}

    image_size: int | list[int] = 32
    in_channels: int = 3
    channels: int = 64
    blocks: int = 2
    res_channels: int = 32
    block: str = "res"
    downsample: int = 4
    latent_channels: int = 64
    map_size: int = 8
    steps: int = 64
    codebook_size: int = 256
    spatial_dim: int = 16
    channel_dim: int = 4
    quantizer: PQQuantizerConfig = field(default_factory=PQQuantizerConfig)
    output: str = "linear"
    recon_reduction: str = "mean"

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):  # PQVAEConfig(quantizer={...})
            self.quantizer = PQQuantizerConfig(**self.quantizer)

    def validate(self) -> None:
        self.quantizer.validate()
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.recon_reduction not in RECON_REDUCTIONS:
            raise ValueError(f"recon_reduction must be one of {', '.join(RECON_REDUCTIONS)}, got {self.recon_reduction!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {self.block!r}")
        log2_factor(self.downsample)
        if min(self.in_channels, self.channels, self.latent_channels, self.map_size, self.steps) < 1 or self.blocks < 0:
            raise ValueError("in_channels, channels, latent_channels, map_size and steps must be >= 1, blocks >= 0")
        if self.res_channels < 1 or self.spatial_dim < 1 or self.channel_dim < 1:
            raise ValueError(f"res_channels, spatial_dim and channel_dim must be >= 1, got {self.res_channels}, "
                             f"{self.spatial_dim}, {self.channel_dim}")
        if self.codebook_size < 2:
            raise ValueError("codebook_size must be >= 2")
        if self.spatial_dim > self.map_size**2 or self.channel_dim > self.latent_channels:
            raise ValueError(
                f"spatial_dim ({self.spatial_dim}) must be <= map_size^2 ({self.map_size**2}) and channel_dim "
                f"({self.channel_dim}) <= latent_channels ({self.latent_channels})"
            )
        size = self.image_size
        sides = image_sides(size)
        f = self.downsample * self.map_size
        if len(sides) != 2 or any(s % f for s in sides):
            raise ValueError(f"image_size {size} must be two sides divisible by downsample * map_size = {f}")


@register("pqvae")
class PQVAE(DiscreteAutoencoder):
    """Progressive-quantization VAE. Input (B, C, H, W) in [0, 1]; codes: one (B, L) sequence, coarse to fine.

    >>> model = PQVAE(PQVAEConfig(in_channels=1, image_size=32))
    >>> model.levels[0].grid, model.budget().bits_per_image
    ((64,), 512.0)
    """

    Config = PQVAEConfig

    def __init__(self, config: PQVAEConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = Encoder(c.in_channels, c.channels, c.downsample, c.blocks, c.res_channels, c.block)
        self.pre_quant = nn.Conv2d(c.channels, c.latent_channels, 1)
        self.quantizer = ProgressiveQuantizer(
            c.latent_channels,
            map_size=c.map_size,
            steps=c.steps,
            codebook_size=c.codebook_size,
            spatial_dim=c.spatial_dim,
            channel_dim=c.channel_dim,
            **c.quantizer.options(),
        )
        self.decoder = Decoder(c.latent_channels, c.in_channels, c.channels, c.downsample, c.blocks, c.res_channels, c.block)

    # ---------------------------------------------------------------- description
    @property
    def downsampling(self) -> int:
        return self.config.downsample * self.config.map_size

    fixed_size_reason = "a PQ-VAE's code sequence has a fixed length"

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(H, W) of the quantized feature map for a ``config.image_size`` image."""
        _, h, w = self.image_shape
        return h // self.config.downsample, w // self.config.downsample

    @property
    def sequence_length(self) -> int:
        """L * G, codes per ``config.image_size`` image."""
        return self.quantizer.sequence_length(*self.feature_shape)

    @property
    def levels(self) -> list[LevelInfo]:
        """One level: the shared codebook, with grid (L,) for the sequence of L codes."""
        return [LevelInfo((self.sequence_length,), self.config.codebook_size, self.quantizer.code_dim,
                          self.config.latent_channels)]

    def budget(self) -> Budget:
        """Continuous budget H*W*C of the quantized map, discrete K*D, bits per image L*log2 K."""
        h, w = self.feature_shape
        return Budget(
            continuous=h * w * self.config.latent_channels,
            discrete=self.config.codebook_size * self.quantizer.code_dim,
            bits_per_image=code_bits(self.config.codebook_size, self.sequence_length),
        )

    def quantizers(self) -> list[ProgressiveQuantizer]:
        return [self.quantizer]

    # ---------------------------------------------------------------- computation
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_images(x)
        return self.pre_quant(self.encoder(self.to_model_range(x)))

    def _decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        y = self.decoder(latent)
        return self.from_model_range(torch.tanh(y) if self.config.output == "tanh" else y)

    def forward(self, x: torch.Tensor) -> Output:
        r = self.quantizer(self._features(x))
        recon = self._decode_latent(r.quantized)
        recon_loss = F.mse_loss(recon, x)
        if self.config.recon_reduction == "sum":  # summed over channels and pixels, averaged over the batch
            recon_term = F.mse_loss(recon, x, reduction="sum") / x.shape[0]
        else:
            recon_term = recon_loss
        losses = {"recon": recon_loss.detach(), **r.losses}
        return Output(recon=recon, loss=recon_term + r.loss, losses=losses, codes=[r.indices], stats=[r.stats])

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code sequence (B, L), coarse to fine. No gradients and no codebook update."""
        self.check_values(x)
        return self.quantizer.encode(self._features(x))

    def _as_sequence(self, codes) -> torch.Tensor:
        if isinstance(codes, (list, tuple)):
            if len(codes) != 1:
                raise ValueError(f"a pqvae has one code sequence, got {len(codes)} arrays")
            codes = codes[0]
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2:
            raise ValueError(f"expected a (B, n) code sequence, got shape {tuple(codes.shape)}")
        return codes

    def latent(self, codes, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Quantized map F_hat (B, C, H, W) from a code sequence or prefix (B, n); ``keep`` (n,) bool drops codes."""
        return self.quantizer.decode(self._as_sequence(codes), *self.feature_shape, keep=keep)

    def decode(self, codes, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) on [0, 1] from codes (B, n), n <= L: any prefix decodes (missing steps add nothing).

        ``keep`` (n,) bool removes the codes where it is False. The full sequence gives the eval forward exactly.
        """
        return self._decode_latent(self.latent(codes, keep))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized map F_hat (B, latent_channels, H/ds, W/ds) (runs the quantizer's forward)."""
        return self.quantizer(self._features(x)).quantized

    def codes_to_list(self, codes) -> list[torch.Tensor]:
        """[(B, L)]: the sequence as the single ``level0`` array of ``codes.npz``."""
        return [self._as_sequence(codes)]

    def codes_from_list(self, arrays: list[torch.Tensor]) -> torch.Tensor:
        """The (B, n) sequence from ``[level0]`` (a prefix, n <= L, is accepted)."""
        if len(arrays) != 1:
            raise ValueError(f"expected one code sequence (level0), got {len(arrays)} arrays")
        seq = self._as_sequence(arrays[0])
        if seq.shape[1] > self.sequence_length:
            raise ValueError(f"code sequence of length {seq.shape[1]} is longer than the model's {self.sequence_length}")
        return seq

    @torch.no_grad()
    def step_entropies(self, x: torch.Tensor) -> torch.Tensor:
        """H(q(z_l | x, z_<l)) per image and position (B, L) in nats: the entropy of softmax(-distance / temperature)
        at each step of the nearest-code chain (what the entropy term of the loss minimises)."""
        return self.quantizer.encode(self._features(x), with_entropy=True)[1]
