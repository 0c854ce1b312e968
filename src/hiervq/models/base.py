"""The interface every discrete autoencoder implements, so trainers, metrics and tools work with all of them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError
from ..pretrained import save_pretrained
from ..quantize import VectorQuantizer
from ..quantize.common import code_bits, deprecated_alias
from ..quantize.multiscale import scale_offsets

#: how far outside [0, 1] image values may stray (rounding in resizing) before :meth:`check_images` refuses them
IMAGE_RANGE_SLACK = 1e-3


#: the quantizer kinds a level can use (``QuantizerConfig.kind``); SimVQ is ``kind: vq`` with ``simvq: true``
QUANTIZER_KINDS = ("vq", "residual", "fsq", "lfq", "multiscale")

#: options that belong to one kind only: giving them to another kind is an error, not silently ignored
_KIND_OPTIONS = {
    "residual": ("stages", "shared", "dropout", "dropout_min"),
    "fsq": ("levels",),
    "lfq": ("bits", "entropy_weight", "diversity", "inv_temperature"),
    "multiscale": ("scales", "convs", "conv_mix"),
    "vq": ("simvq",),
}


def migrate_saved_config(params: Any) -> Any:
    """A saved model config (``config.json``'s ``config``) as this version reads it: every quantizer block (a dict
    with a ``kind``) drops the options of the other kinds, which a saved config lists at the defaults of the version
    that wrote it (a default that changed since, e.g. LFQ's ``inv_temperature``, must not make an old VQ model
    unloadable). Applied at the load boundary only (:func:`hiervq.pretrained.load`); configs a user writes are
    checked strictly."""
    if isinstance(params, list):
        return [migrate_saved_config(v) for v in params]
    if not isinstance(params, dict):
        return params
    out = {k: migrate_saved_config(v) for k, v in params.items()}
    kind = out.get("kind")
    if isinstance(kind, str) and kind in _KIND_OPTIONS:
        for other, names in _KIND_OPTIONS.items():
            if other != kind:
                for name in names:
                    out.pop(name, None)
    return out


@dataclass
class QuantizerConfig:
    """Quantizer settings: the model's ``quantizer`` block, shared by its levels, or a level's own block
    (``model.levels.N.quantizer``), which replaces the model's for that level (keys it omits take their defaults).

    ``kind`` picks the layer (see docs/quantizers.md): ``vq`` (:class:`~hiervq.quantize.VectorQuantizer`,
    ``simvq: true`` for the SimVQ codebook), ``residual`` (:class:`~hiervq.quantize.ResidualVQ`: ``stages``,
    ``shared``, ``dropout``, ``dropout_min``), ``fsq`` (:class:`~hiervq.quantize.FSQ`: ``levels``) or ``lfq``
    (:class:`~hiervq.quantize.LFQ`: ``bits``, ``entropy_weight``, ``diversity``, ``inv_temperature``; ``beta`` is
    its commitment weight) or ``multiscale`` (:class:`~hiervq.quantize.MultiScaleVQ`: ``scales``, the growing
    resolution schedule whose last scale is the level's grid, ``convs``, ``conv_mix``; one shared codebook of K =
    ``codebook_size``). The level's ``codebook_size`` is K for vq, residual (per stage) and multiscale; fsq and lfq
    define their own code space (K = prod(levels), K = 2^bits) and take no ``codebook_size`` or ``code_dim``
    other than theirs: the level's ``codebook_size`` is not used, and ``code_dim`` must be unset or equal
    ``len(levels)`` / ``bits``. Bits per image, the budget and the level description follow from the built
    quantizer's code space (see :meth:`level_info`).

    The collapse mitigations of vq/residual are switches here: ``init`` ("data"/"kmeans" vs "random"),
    ``init_after`` (vq only; warm-up: the first N training forwards pass the features through unquantized and
    the data/kmeans init uses forward N + 1; 0 = the first forward), ``dead_threshold`` (0 turns dead-code reset
    off), ``reseed`` ("sample": a dead code becomes one recent encoder output; "mean": the mean of a random recent
    output and its 3 nearest neighbours among them) and the per-level ``code_dim`` (low-dimensional codes).
    """

    kind: str = "vq"
    estimator: str = "ste"
    beta: float = 0.25
    ema_decay: float | None = 0.99
    init: str = "data"
    kmeans_iters: int = 10
    dead_threshold: float = 2.0
    dead_window: int = 10
    cosine: bool = False
    temperature: float = 1.0
    init_after: int = 0
    reseed: str = "sample"
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

    def validate(self) -> None:
        """The rules of each setting are written once, beside the layer that uses it (``check_*_options`` in
        :mod:`hiervq.quantize`); here: which options belong to which kind, and what a model level adds."""
        from ..quantize.codebook import check_codebook_options
        from ..quantize.fsq import check_levels
        from ..quantize.lfq import check_lfq_options
        from ..quantize.multiscale import check_multiscale_options
        from ..quantize.residual import check_residual_options
        from ..quantize.vector import check_vq_options

        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(QUANTIZER_KINDS)}, got {self.kind!r}")
        defaults = QuantizerConfig()
        for kind, names in _KIND_OPTIONS.items():
            for name in names:
                if kind != self.kind and getattr(self, name) != getattr(defaults, name):
                    raise ValueError(f"{name} is an option of kind {kind}, not of kind {self.kind}")
        # the codebook and vq settings are shared by the levels, so they are checked whatever this block's kind
        check_vq_options(self.estimator, self.beta, self.temperature, self.simvq, self.ema_decay)
        check_codebook_options(self.init, self.ema_decay, self.dead_threshold, self.dead_window, self.reseed,
                               self.init_after)
        if self.kind == "residual":
            if self.stages is None:
                raise ValueError("kind residual needs stages >= 1")
            check_residual_options(self.stages, self.estimator, self.dropout, self.dropout_min, self.beta)
            if self.init_after or self.cosine:
                raise ValueError("kind residual does not support init_after or cosine")
        if self.kind == "fsq":
            if self.levels is None:
                raise ValueError("kind fsq needs levels, e.g. [8, 5, 5, 5] (K = their product)")
            check_levels(self.levels)
        if self.kind == "lfq":
            if self.bits is None or not 1 <= self.bits <= 20:  # a model counts code usage in K = 2^bits bins
                raise ValueError(f"kind lfq needs bits in [1, 20] (K = 2^bits), got {self.bits}")
            check_lfq_options(self.bits, self.beta, self.entropy_weight, self.diversity, self.inv_temperature)
        if self.kind == "multiscale":
            if self.scales is None:
                raise ValueError("kind multiscale needs scales, e.g. [1, 2, 3, 4, 6, 8] for an 8x8 grid")
            check_multiscale_options(self.scales, self.convs, self.conv_mix, estimator=self.estimator, beta=self.beta)
            if self.init_after or self.cosine:
                raise ValueError("kind multiscale does not support init_after or cosine")

    def check_level(self, codebook_size: int, dim: int, code_dim: int | None) -> None:
        """:meth:`validate`, and this level's ``codebook_size``/``dim``/``code_dim`` against the kind."""
        self.validate()
        if self.kind == "fsq" and code_dim is not None and code_dim != len(self.levels):
            raise ValueError(f"kind fsq quantizes len(levels) = {len(self.levels)} channels; code_dim {code_dim} "
                             "must be unset or equal")
        if self.kind == "lfq" and code_dim is not None and code_dim != self.bits:
            raise ValueError(f"kind lfq quantizes bits = {self.bits} channels; code_dim {code_dim} must be unset or equal")

    def check_grid(self, grid: tuple[int, ...]) -> None:
        """``ValueError`` unless this kind takes a level of grid (h, w): a multi-scale level's last scale must be
        its grid (checked when the model is built, once the image size is known)."""
        if self.kind == "multiscale":
            from ..quantize.multiscale import check_scales

            last = check_scales(self.scales)[-1]
            if tuple(grid) != last:
                raise ValueError(f"kind multiscale: the last scale {list(last)} must be the level's grid "
                                 f"{list(grid)} (scales {list(self.scales)})")

    def make(self, dim: int, codebook_size: int, code_dim: int | None = None):
        """The quantizer of this kind for ``dim`` input channels (``codebook_size``: K of vq/residual)."""
        from ..quantize import FSQ, LFQ, MultiScaleVQ, ResidualVQ
        from ..quantize.codebook import SHARED_CODEBOOK_OPTIONS, codebook_options

        if self.kind == "fsq":
            return FSQ(dim, list(self.levels))
        if self.kind == "lfq":
            return LFQ(dim, self.bits, beta=self.beta, entropy_weight=self.entropy_weight, diversity=self.diversity,
                       inv_temperature=self.inv_temperature)
        common = dict(code_dim=code_dim, estimator=self.estimator, beta=self.beta,
                      **codebook_options(self, SHARED_CODEBOOK_OPTIONS))
        if self.kind == "residual":
            return ResidualVQ(dim, codebook_size, self.stages, shared=self.shared, dropout=self.dropout,
                              dropout_min=self.dropout_min, **common)
        if self.kind == "multiscale":
            return MultiScaleVQ(dim, codebook_size, list(self.scales), convs=self.convs, conv_mix=self.conv_mix,
                                **common)
        return VectorQuantizer(
            dim,
            codebook_size,
            cosine=self.cosine,
            temperature=self.temperature,
            init_after=self.init_after,
            simvq=self.simvq,
            **common,
        )


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

    num_codes = deprecated_alias("num_codes", "positions")  # its old name (it is not K: that is codebook_size)


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
