"""The interface every discrete autoencoder implements, so trainers, metrics and tools work with all of them."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError
from ..pretrained import save_pretrained
from ..quantize import FSQ, LFQ, MultiScaleVQ, ResidualVQ, VectorQuantizer
from ..quantize.codebook import DEFAULT_CHUNK_ELEMENTS, CodebookConfig
from ..quantize.common import code_bits
from ..quantize.fsq import check_levels
from ..quantize.lfq import check_lfq_options
from ..quantize.multiscale import check_multiscale_options, check_scales, scale_offsets
from ..quantize.residual import check_residual_options
from ..quantize.vector import check_vq_options

#: how far outside [0, 1] image values may stray (rounding in resizing) before :meth:`check_images` refuses them
IMAGE_RANGE_SLACK = 1e-3


@dataclass
class QuantizerConfig(CodebookConfig):
    """Quantizer settings: the model's ``quantizer`` block, shared by its levels, or a level's own block
    (``model.levels.N.quantizer``), which replaces the model's for that level (keys it omits take their defaults).

    ``kind`` picks the layer (see docs/quantizers.md and :data:`QUANTIZER_KINDS`): ``vq``
    (:class:`~hiervq.quantize.VectorQuantizer`, ``simvq: true`` for the SimVQ codebook), ``residual``
    (:class:`~hiervq.quantize.ResidualVQ`: ``stages``, ``shared``, ``dropout``, ``dropout_min``), ``fsq``
    (:class:`~hiervq.quantize.FSQ`: ``levels``) or ``lfq`` (:class:`~hiervq.quantize.LFQ`: ``bits``,
    ``entropy_weight``, ``diversity``, ``inv_temperature``; ``beta`` is its commitment weight) or ``multiscale``
    (:class:`~hiervq.quantize.MultiScaleVQ`: ``scales``, the growing resolution schedule whose last scale is the
    level's grid, ``convs``, ``conv_mix``; one shared codebook of K = ``codebook_size``). The level's
    ``codebook_size`` is K for vq, residual (per stage) and multiscale; fsq and lfq define their own code space
    (K = prod(levels), K = 2^bits) and take no ``codebook_size`` or ``code_dim`` other than theirs: the level's
    ``codebook_size`` is not used, and ``code_dim`` must be unset or equal ``len(levels)`` / ``bits``. Bits per
    image, the budget and the level description follow from the built quantizer's code space (see
    :meth:`level_info`).

    The codebook settings are the fields of :class:`~hiervq.quantize.CodebookConfig` (inherited, under the same
    flat keys), handed to the codebooks of vq, residual and multiscale unchanged. The collapse mitigations are
    switches there: ``init`` ("data"/"kmeans" vs "random"), ``init_after`` (vq only; warm-up: the first N training
    forwards pass the features through unquantized and the data/kmeans init uses forward N + 1; 0 = the first
    forward), ``dead_threshold`` (0 turns dead-code reset off), ``reseed`` ("sample": a dead code becomes one recent
    encoder output; "mean": the mean of a random recent output and its 3 nearest neighbours among them), and the
    per-level ``code_dim`` (low-dimensional codes).
    """

    #: keys added since the codec's format version 1, left out of a model's id at their default (see
    #: :func:`hiervq.schema.with_old_keys`)
    ID_DEFAULTS = {"chunk_elements": DEFAULT_CHUNK_ELEMENTS}

    kind: str = "vq"
    estimator: str = "ste"
    beta: float = 0.25
    temperature: float = 1.0
    simvq: bool = False
    stages: int | None = None
    shared: bool = False
    dropout: float = 0.0
    dropout_min: int = 1
    levels: list[int] | None = None
    bits: int | None = None
    entropy_weight: float = 0.1
    diversity: float = 1.0
    inv_temperature: float = 1.0  # LFQ's default (issue 26: 100 collapsed); beta stays the shared 0.25
    scales: list[int | list[int]] | None = None
    convs: int = 4
    conv_mix: float = 0.5

    @property
    def spec(self) -> QuantizerKind:
        """This block's kind in :data:`QUANTIZER_KINDS`."""
        return QUANTIZER_KINDS[self.kind]

    def validate(self) -> None:
        """The rules of each setting are written once, beside the layer that uses it (``check_*_options`` in
        :mod:`hiervq.quantize`, :meth:`CodebookConfig.validate`); here: which options belong to which kind, and
        what a model level adds."""
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(QUANTIZER_KINDS)}, got {self.kind!r}")
        defaults = QuantizerConfig()
        for kind, spec in QUANTIZER_KINDS.items():
            for name in spec.options:
                if kind != self.kind and getattr(self, name) != getattr(defaults, name):
                    raise ValueError(f"{name} is an option of kind {kind}, not of kind {self.kind}")
        # the codebook and vq settings are shared by the levels, so they are checked whatever this block's kind
        check_vq_options(self.estimator, self.beta, self.temperature, self.simvq, self.ema_decay)
        super().validate()
        spec = self.spec
        if any(getattr(self, name) != getattr(defaults, name) for name in spec.unsupported):
            raise ValueError(f"kind {self.kind} does not support {' or '.join(spec.unsupported)}")
        spec.check(self)

    def check_level(self, codebook_size: int, dim: int, code_dim: int | None) -> None:
        """:meth:`validate`, and this level's ``codebook_size``/``dim``/``code_dim`` against the kind."""
        self.validate()
        fixed = self.spec.code_dim
        if fixed is not None and code_dim is not None and code_dim != fixed[1](self):
            raise ValueError(f"kind {self.kind} quantizes {fixed[0]} = {fixed[1](self)} channels; code_dim {code_dim} "
                             "must be unset or equal")

    def check_grid(self, grid: tuple[int, ...]) -> None:
        """``ValueError`` unless this kind takes a level of grid (h, w) (checked when the model is built, once the
        image size is known): a multi-scale level's last scale must be its grid."""
        if self.spec.check_grid is not None:
            self.spec.check_grid(self, tuple(grid))

    def make(self, dim: int, codebook_size: int, code_dim: int | None = None) -> nn.Module:
        """The quantizer of this kind for ``dim`` input channels (``codebook_size``: K of vq/residual/multiscale)."""
        return self.spec.build(self, dim, codebook_size, code_dim)


@dataclass(frozen=True)
class QuantizerKind:
    """How a model level checks and builds one quantizer kind from a :class:`QuantizerConfig` block: an entry of
    :data:`QUANTIZER_KINDS` (adding a kind: its layer in :mod:`hiervq.quantize`, its options as fields of
    :class:`QuantizerConfig`, and one entry here).

    Attributes:
        build: ``(config, dim, codebook_size, code_dim) -> layer``.
        options: the config keys of this kind alone (giving them to another kind is an error, and a saved config
            drops them for other kinds, see :func:`migrate_saved_config`).
        check: ``ValueError`` for this kind's options (beyond the shared and codebook settings).
        unsupported: codebook settings the layer does not implement (must stay at their defaults).
        code_dim: for a kind whose code space fixes the code dimension: (its name, ``config -> code_dim``).
        check_grid: ``(config, grid)``: ``ValueError`` unless the kind takes a level of that grid.
    """

    build: Callable[[QuantizerConfig, int, int, int | None], nn.Module]
    options: tuple[str, ...] = ()
    check: Callable[[QuantizerConfig], None] = lambda config: None
    unsupported: tuple[str, ...] = ()
    code_dim: tuple[str, Callable[[QuantizerConfig], int]] | None = None
    check_grid: Callable[[QuantizerConfig, tuple[int, ...]], None] | None = None


def _check_residual(c: QuantizerConfig) -> None:
    if c.stages is None:
        raise ValueError("kind residual needs stages >= 1")
    check_residual_options(c.stages, c.estimator, c.dropout, c.dropout_min, c.beta)


def _check_fsq(c: QuantizerConfig) -> None:
    if c.levels is None:
        raise ValueError("kind fsq needs levels, e.g. [8, 5, 5, 5] (K = their product)")
    check_levels(c.levels)


def _check_lfq(c: QuantizerConfig) -> None:
    if c.bits is None or not 1 <= c.bits <= 20:  # a model counts code usage in K = 2^bits bins
        raise ValueError(f"kind lfq needs bits in [1, 20] (K = 2^bits), got {c.bits}")
    check_lfq_options(c.bits, c.beta, c.entropy_weight, c.diversity, c.inv_temperature)


def _check_multiscale(c: QuantizerConfig) -> None:
    if c.scales is None:
        raise ValueError("kind multiscale needs scales, e.g. [1, 2, 3, 4, 6, 8] for an 8x8 grid")
    check_multiscale_options(c.scales, c.convs, c.conv_mix, estimator=c.estimator, beta=c.beta)


def _multiscale_grid(c: QuantizerConfig, grid: tuple[int, ...]) -> None:
    last = check_scales(c.scales)[-1]
    if grid != last:
        raise ValueError(f"kind multiscale: the last scale {list(last)} must be the level's grid {list(grid)} "
                         f"(scales {list(c.scales)})")


#: the quantizer kinds a level can use (``QuantizerConfig.kind``); SimVQ is ``kind: vq`` with ``simvq: true``
QUANTIZER_KINDS: dict[str, QuantizerKind] = {
    "vq": QuantizerKind(
        lambda c, dim, k, code_dim: VectorQuantizer(dim, k, code_dim, c.estimator, c.beta, c.temperature, c.simvq,
                                                    codebook=c.codebook_config()),
        options=("simvq",)),
    "residual": QuantizerKind(
        lambda c, dim, k, code_dim: ResidualVQ(dim, k, c.stages, code_dim, c.shared, c.dropout, c.dropout_min,
                                               c.estimator, c.beta, codebook=c.codebook_config()),
        options=("stages", "shared", "dropout", "dropout_min"), check=_check_residual,
        unsupported=("init_after", "cosine")),
    "fsq": QuantizerKind(
        lambda c, dim, k, code_dim: FSQ(dim, list(c.levels)),
        options=("levels",), check=_check_fsq, code_dim=("len(levels)", lambda c: len(c.levels))),
    "lfq": QuantizerKind(
        lambda c, dim, k, code_dim: LFQ(dim, c.bits, beta=c.beta, entropy_weight=c.entropy_weight,
                                        diversity=c.diversity, inv_temperature=c.inv_temperature),
        options=("bits", "entropy_weight", "diversity", "inv_temperature"), check=_check_lfq,
        code_dim=("bits", lambda c: c.bits)),
    "multiscale": QuantizerKind(
        lambda c, dim, k, code_dim: MultiScaleVQ(dim, k, list(c.scales), code_dim, c.convs, c.conv_mix,
                                                 estimator=c.estimator, beta=c.beta, codebook=c.codebook_config()),
        options=("scales", "convs", "conv_mix"), check=_check_multiscale, unsupported=("init_after", "cosine"),
        check_grid=_multiscale_grid),
}


def migrate_saved_config(params: Any) -> Any:
    """A saved model config (``config.json``'s ``config``) as this version reads it: every quantizer block (a dict
    with a ``kind``) drops the options of the other kinds, which a saved config lists at the defaults of the version
    that wrote it (a default that changed since, e.g. LFQ's ``inv_temperature``, must not make an old VQ model
    unloadable). Applied at the load boundary only (:func:`hiervq.pretrained.load`); configs a user writes are
    checked strictly. (Keys renamed since are read as their new names by :func:`hiervq.schema.from_dict`.)"""
    if isinstance(params, list):
        return [migrate_saved_config(v) for v in params]
    if not isinstance(params, dict):
        return params
    out = {k: migrate_saved_config(v) for k, v in params.items()}
    kind = out.get("kind")
    if isinstance(kind, str) and kind in QUANTIZER_KINDS:
        for other, spec in QUANTIZER_KINDS.items():
            if other != kind:
                for name in spec.options:
                    out.pop(name, None)
    return out


def level_info(grid: tuple[int, ...], quantizer: nn.Module, channels: int) -> LevelInfo:
    """The :class:`LevelInfo` of a level quantized by ``quantizer`` (any kind): its code space decides K, the
    code dimension, the codes per position (``depth``: L for residual), the codebooks (``books``) and, for a
    multi-scale quantizer, its schedule (``scales``; the codes per image, ``tokens``, follow from it)."""
    scales = getattr(quantizer, "scales", None)
    return LevelInfo(
        grid,
        int(quantizer.codebook_size),
        int(quantizer.code_dim),
        channels,
        depth=int(getattr(quantizer, "depth", 1)),
        books=int(getattr(quantizer, "num_books", 1)),
        scales=None if scales is None else tuple((int(h), int(w)) for h, w in scales),
    )


@dataclass
class LevelInfo:
    """One level of codes: its grid (h, w) for a model-size image, K, the code dimension D, the channels C
    at the quantizer input (what the continuous budget counts), ``depth`` codes per grid position (each one of
    K; L for a residual quantizer, whose codes are (B, h, w, L)) and ``books`` codebooks of K x D (L for a
    residual quantizer with separate codebooks; an implicit FSQ/LFQ codebook counts as one of K x D).
    ``scales``: a multi-scale level's schedule, (h, w) per scale, coarse first (the last one is ``grid``); its
    codes per image are :attr:`tokens`; ``None`` for every other kind."""

    grid: tuple[int, ...]
    codebook_size: int
    code_dim: int
    channels: int
    depth: int = 1
    books: int = 1
    scales: tuple[tuple[int, int], ...] | None = None

    @property
    def tokens(self) -> int | None:
        """The codes of one image when they are not one per grid position (a multi-scale level: the sum over its
        scales of h * w, e.g. 130 for the scales 1, 2, 3, 4, 6, 8 of an 8 x 8 grid); ``None`` otherwise."""
        return None if self.scales is None else scale_offsets(self.scales)[-1]

    @property
    def bits_per_position(self) -> float:
        """depth x log2 K: the bits of the codes at one grid position (for ``tokens``: their bits / positions)."""
        if self.tokens is not None:
            return code_bits(self.codebook_size, self.tokens / self.positions)
        return code_bits(self.codebook_size, depth=self.depth)

    @property
    def codes_per_image(self) -> int:
        """The codes of one image: ``tokens``, or grid positions x depth."""
        return self.positions * self.depth if self.tokens is None else self.tokens

    @property
    def positions(self) -> int:
        """Grid positions per image, prod(grid) (each holds ``depth`` codes)."""
        return math.prod(self.grid)


@dataclass
class Budget:
    """Capacity of a model for one image.

    Attributes:
        continuous: sum over levels of H * W * C at the quantizer inputs.
        discrete: sum over codebooks of K * D.
        bits_per_image: sum over levels of H * W * depth * log2 K (log2 of the level's code space per position:
            K^L for a residual quantizer of L stages, prod(levels) for FSQ, 2^bits for LFQ); for a multi-scale
            level, its T = sum over scales of h * w codes times log2 K.
    """

    continuous: int
    discrete: int
    bits_per_image: float

    def __str__(self) -> str:
        return (
            f"continuous {self.continuous:,} (sum H*W*C), discrete {self.discrete:,} (sum K*D), "
            f"{self.bits_per_image:,.0f} bits/image"
        )


@dataclass
class Output:
    """What a :class:`DiscreteAutoencoder` forward returns.

    Attributes:
        recon: reconstruction (B, C, H, W) on the [0, 1] scale of the input (not clamped).
        loss: total training loss (scalar).
        losses: named terms, detached (``recon`` MSE, summed ``commitment`` and ``codebook``, ...).
        codes: code indices per level, bottom first, e.g. [(B, Hb, Wb), (B, Ht, Wt)].
        stats: per level, the quantizer's batch statistics (perplexity, used_fraction, counts, resets).
        latent: the quantized latent the decoder saw (e.g. the joint latent), when the model exposes it.
    """

    recon: torch.Tensor
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    codes: list[torch.Tensor] = field(default_factory=list)
    stats: list[dict[str, torch.Tensor]] = field(default_factory=list)
    latent: torch.Tensor | None = None


def image_sides(size: int | list[int] | tuple[int, ...]) -> list[int]:
    """A config's ``image_size`` (one side for square images, or [H, W]) as a list of sides [H, W]."""
    return [size, size] if isinstance(size, int) else list(size)


def crop_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images (B, C, H', W') cut back to their original ``size`` (H, W) at the top left: undoes
    :meth:`DiscreteAutoencoder.pad_images` on decoded images."""
    h, w = (int(s) for s in size)
    if h > x.shape[-2] or w > x.shape[-1]:
        raise DataError(f"cannot crop {x.shape[-2]}x{x.shape[-1]} images to {h}x{w}")
    return x[..., :h, :w]


def budget_of(levels: list[LevelInfo]) -> Budget:
    """The :class:`Budget` of a list of levels."""
    return Budget(
        continuous=sum(lv.positions * lv.channels for lv in levels),
        discrete=sum(lv.books * lv.codebook_size * lv.code_dim for lv in levels),
        bits_per_image=float(sum(code_bits(lv.codebook_size, lv.positions, lv.depth) if lv.tokens is None
                                 else code_bits(lv.codebook_size, lv.tokens) for lv in levels)),
    )


class DiscreteAutoencoder(nn.Module):
    """Base class of the model family: images in [0, 1] -> discrete codes -> images.

    ``migrate_config`` (:func:`migrate_saved_config`) brings a saved config to this version before it is parsed.

    Subclasses define a dataclass ``Config`` (with ``in_channels`` and ``image_size``), build themselves from it
    in ``__init__(config)``, and implement :meth:`forward`, :meth:`encode`, :meth:`decode`, :meth:`features`,
    :attr:`levels` and :meth:`quantizers`. Models map images to [-1, 1] internally; reconstructions and
    metrics are on [0, 1].

    Training phases: :meth:`phases` lists named phases (default one, ``"all"``); :meth:`set_phase` selects
    one and :meth:`trainable_modules` says which submodules it trains. The trainer freezes everything else
    (no gradients, and eval mode so frozen codebooks do not move).
    """

    migrate_config = staticmethod(migrate_saved_config)

    Config: type = object
    registry_name: str = ""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.phase = "all"

    # ---------------------------------------------------------------- interface
    def forward(self, x: torch.Tensor) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> Any:  # pragma: no cover - abstract
        """Codes of images ``x`` (B, C, H, W), floating point on [0, 1]; no gradients, no codebook update.
        Implementations start with :meth:`check_values` (uint8, NaN or 0-255 input is a :class:`DataError`)."""
        raise NotImplementedError

    def decode(self, codes: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """Images (B, C, H, W) on [0, 1] (not clamped) from codes as returned by :meth:`encode`."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Quantized latents for downstream heads (B, C', h, w)."""
        raise NotImplementedError

    @property
    def levels(self) -> list[LevelInfo]:  # pragma: no cover - abstract
        raise NotImplementedError

    def quantizers(self) -> list[VectorQuantizer]:  # pragma: no cover - abstract
        """The vector quantizers, one per level, bottom first."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared behaviour
    def budget(self) -> Budget:
        """Continuous and discrete budgets and bits per image for a ``config.image_size`` image."""
        return budget_of(self.levels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w = image_sides(self.config.image_size)
        return (self.config.in_channels, h, w)

    @property
    def downsampling(self) -> int:
        """Factor between the image and the coarsest grid; image sides must be multiples of it."""
        return 1

    def check_images(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` naming the problem if ``x`` is not a floating-point (B, C, H, W) batch this model
        accepts (no sync: cheap enough for every forward). uint8 images are refused rather than guessed at:
        convert them with ``x.float() / 255``. See also :meth:`check_values`."""
        c = self.config.in_channels
        if not isinstance(x, torch.Tensor):
            raise DataError(f"expected a tensor of images (B, {c}, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise DataError(f"images must be floating point on [0, 1], got {x.dtype}; use x.float() / 255 for 0-255 images")
        if x.ndim != 4:
            raise DataError(f"expected images of shape (B, {c}, H, W), got {tuple(x.shape)}")
        if x.shape[1] != c:
            raise DataError(f"images have {x.shape[1]} channels, the model expects {c}")
        f = self.downsampling
        if x.shape[2] % f or x.shape[3] % f:
            raise DataError(
                f"image size {x.shape[2]}x{x.shape[3]} is not a multiple of {f}, the model's total downsampling; "
                "resize or pad the images (data.image_size)"
            )

    def check_values(self, x: torch.Tensor) -> None:
        """:meth:`check_images`, and the values: finite, and on [0, 1] unless the model reads latents
        (``raw_input``). The public :meth:`encode` calls it (one reduction and one sync per call); the training
        forward does not (a non-finite batch shows as a non-finite loss, which stops training)."""
        self.check_images(x)
        if x.numel():
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN propagates
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise DataError(f"images hold non-finite values (NaN/inf) in a batch of {tuple(x.shape)}")
            if not getattr(self.config, "raw_input", False) and (lo < -IMAGE_RANGE_SLACK or hi > 1 + IMAGE_RANGE_SLACK):
                raise DataError(f"images must be on [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                                f"{'; divide 0-255 images by 255' if hi > 2 else ''}")

    # ---------------------------------------------------------------- images at their own size
    @property
    def any_size(self) -> bool:
        """Whether the model codes images of other sizes than ``config.image_size`` (fully convolutional: any
        multiple of :attr:`downsampling`, and :meth:`pad_images` pads the rest). False (the default) for a model
        whose codes are fixed by its image size, such as a PQ-VAE's sequence or a multi-scale level's schedule."""
        return False

    #: why a model that is not :attr:`any_size` codes its own image size only (for messages)
    fixed_size_reason: str = "its codes are fixed by its image size"

    def coded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an ``height`` x ``width`` image is coded at: padded up to a multiple of :attr:`downsampling`
        (:attr:`any_size`), or the model's own size, which a fixed-size model requires (:class:`DataError` naming
        both sizes otherwise)."""
        _, mh, mw = self.image_shape
        if not self.any_size:
            if (height, width) != (mh, mw):
                raise DataError(f"this model codes {mh}x{mw} images only ({self.fixed_size_reason}), not "
                                f"{height}x{width}; resize them to {mh}x{mw} (hiervq: --resize)")
            return height, width
        if height < 1 or width < 1:
            raise DataError(f"image size {height}x{width} is empty")
        f = self.downsampling
        return -(-height // f) * f, -(-width // f) * f

    def pad_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) padded at the bottom and the right, repeating their last row and column
        (``replicate``), to :meth:`coded_size`; :func:`crop_images` with the original (H, W) undoes it after
        :meth:`decode`. The one place where hiervq pads images to code them at their own size (the CLI's
        ``encode``/``compress`` and :class:`hiervq.Codec` call it)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise DataError(f"expected images (B, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
        h, w = x.shape[-2:]
        ph, pw = self.coded_size(h, w)
        if (ph, pw) == (h, w):
            return x
        return torch.nn.functional.pad(x, (0, pw - w, 0, ph - h), mode="replicate")

    def bits_of(self, codes: list[torch.Tensor]) -> float:
        """Bits per image of codes in the :meth:`codes_to_list` layout, counting their real grids: the sum over
        levels of the codes per image (grid positions x codes per position, or a sequence's length) x log2 K.
        Equal to ``budget().bits_per_image`` at the model's image size."""
        return float(sum(code_bits(lv.codebook_size, math.prod(c.shape[1:])) for lv, c in zip(self.levels, codes)))

    def codes_to_list(self, codes: Any) -> list[torch.Tensor]:
        """Codes as returned by :meth:`encode` -> a list of index tensors (what ``codes.npz`` stores)."""
        return list(codes)

    def codes_from_list(self, arrays: list[torch.Tensor]) -> Any:
        """Inverse of :meth:`codes_to_list`: what :meth:`decode` accepts."""
        if len(arrays) != len(self.levels):
            raise ValueError(f"expected codes for {len(self.levels)} levels, got {len(arrays)}")
        return list(arrays)

    def phases(self) -> list[str]:
        """Names of the training phases this model supports, in order."""
        return ["all"]

    def set_phase(self, name: str) -> None:
        """Select a training phase (see :meth:`phases`)."""
        if name not in self.phases():
            raise ValueError(f"unknown phase {name!r} for {type(self).__name__} (known: {', '.join(self.phases())})")
        self.phase = name

    def trainable_modules(self) -> list[nn.Module]:
        """Submodules trained in the current phase (default: the whole model)."""
        return [self]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory``; read back with ``hiervq.load``."""
        return save_pretrained(self, directory, extra)

    @staticmethod
    def to_model_range(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> [-1, 1]."""
        return x * 2.0 - 1.0

    @staticmethod
    def from_model_range(y: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [0, 1]."""
        return (y + 1.0) * 0.5
