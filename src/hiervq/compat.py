"""vector-quantize-pytorch's constructor names and return tuples over hiervq's quantizers (a one-line switch).

>>> import torch
>>> from hiervq.compat import VectorQuantize          # was: from vector_quantize_pytorch import VectorQuantize
>>> vq = VectorQuantize(dim=64, codebook_size=512, decay=0.99, commitment_weight=0.25)
>>> quantized, indices, loss = vq(torch.randn(2, 100, 64))   # (2, 100, 64), (2, 100), scalar

Each class wraps one layer of :mod:`hiervq.quantize` (``.layer``) and follows vector-quantize-pytorch's
(version 1.34) argument names, defaults, input layouts and return tuples; the numbers differ where the layers do
(see docs/quantizers.md, "Coming from vector-quantize-pytorch"). An argument of that package that is not supported
raises ``ValueError`` naming it when given a value other than its default; a name that package does not have
raises ``TypeError``. As there, the returned losses are 0 outside training mode.

Depends on torch and :mod:`hiervq.quantize` only.
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import torch
from torch import nn

from .quantize import FSQ as _FSQ
from .quantize import LFQ as _LFQ
from .quantize import ResidualVQ as _ResidualVQ
from .quantize import VectorQuantizer

__all__ = ["FSQ", "LFQ", "ResidualVQ", "VectorQuantize"]

LFQReturn = namedtuple("LFQReturn", ["quantized", "indices", "entropy_aux_loss"])
LFQLossBreakdown = namedtuple("LFQLossBreakdown", ["per_sample_entropy", "batch_entropy", "commitment"])

#: dead-code window (batches) of the wrapped codebooks: ``threshold_ema_dead_code = t`` (a code is dead when its
#: EMA count per batch falls below t) becomes ``dead_threshold = t * DEAD_WINDOW`` assignments over the window
DEAD_WINDOW = 10

# arguments of vector-quantize-pytorch that these wrappers do not implement, with the defaults that are accepted
_VQ_UNSUPPORTED = dict(
    heads=1, separate_codebook_per_head=False, freeze_codebook=False, sync_kmeans=True,
    layernorm_after_project_in=False, dead_code_threshold_ratio=0.0, reset_cluster_size_ratio=None,
    reset_cluster_size=None, accept_3d_fmap=False, commitment_use_cross_entropy_loss=False,
    orthogonal_reg_weight=0.0, orthogonal_reg_active_codes_only=False, orthogonal_reg_max_codes=None,
    codebook_diversity_loss_weight=0.0, codebook_diversity_temperature=100.0, stochastic_sample_codes=False,
    sample_codebook_temp=1.0, straight_through=False, directional_reparam=False, directional_reparam_variance=5e-3,
    sync_codebook=None, sync_affine_param=False, vq_bridge=None, manual_ema_update=False,
    in_place_codebook_optimizer=None, manual_in_place_optimizer_update=False, affine_param=False,
    affine_param_batch_decay=0.99, affine_param_codebook_decay=0.9, sync_update_v=0.0,
    return_zeros_for_masked_padding=True, route_gradients_to_input=True,
)
_RVQ_UNSUPPORTED = dict(
    _VQ_UNSUPPORTED, diveq=False, quantize_dropout_multiple_of=1, implicit_neural_codebook=False, mlp_kwargs=None,
    beam_size=None, eval_beam_size=None, beam_score_quantizer_weights=None, quant_grad_frac=0.0, channel_last=True,
)
_FSQ_UNSUPPORTED = dict(
    num_codebooks=1, keep_num_codebooks_dim=None, scale=None, projection_has_bias=True, return_indices=True,
    force_quantization_f32=True, preserve_symmetry=False, noise_dropout=0.0, bound_hard_clamp=False,
    orthogonal_rotation=False, allowed_dtypes=None, materialize_codebook=True,
)
_LFQ_UNSUPPORTED = dict(
    num_codebooks=1, keep_num_codebooks_dim=None, codebook_scale=1.0, frac_per_sample_entropy=1.0,
    projection_has_bias=True, soft_clamp_input_value=None, cosine_sim_project_in=False,
    cosine_sim_project_in_scale=None, experimental_softplus_entropy_loss=False, entropy_loss_offset=5.0,
    spherical=False, force_quantization_f32=True, orthogonal_rotation=False, straight_through_activation=None,
)
# values accepted besides the default (they change nothing here)
_ALSO_ACCEPTED = {"keep_num_codebooks_dim": (False,), "sync_codebook": (True, False), "mlp_kwargs": ({},),
                  "allowed_dtypes": "any", "materialize_codebook": (False,), "sync_kmeans": (False,)}


def _check_unsupported(owner: str, given: dict[str, Any], table: dict[str, Any]) -> None:
    """``TypeError`` for a name vector-quantize-pytorch does not have, ``ValueError`` for a supported name given
    a value other than its default."""
    for name, value in given.items():
        if name not in table:
            raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}")
        if name == "straight_through_activation":
            if value is None or isinstance(value, nn.Identity):
                continue
        elif value == table[name] or (value is None and table[name] is None):
            continue
        elif _ALSO_ACCEPTED.get(name) == "any" or value in _ALSO_ACCEPTED.get(name, ()):
            continue
        raise ValueError(f"{owner}: {name}={value!r} is not supported by hiervq.compat (only its default "
                         f"{table[name]!r}); see docs/quantizers.md, 'Coming from vector-quantize-pytorch'")


def _forward_options(owner: str, options: dict[str, Any]) -> None:
    for name, value in options.items():
        if value is not None and value is not False:
            raise ValueError(f"{owner}.forward: {name} is not supported by hiervq.compat")


def _codebook_settings(owner: str, dim: int, decay: float, kmeans_init: bool, kmeans_iters: int,
                       threshold_ema_dead_code: float | None, commitment_weight: float, rotation_trick: bool | None,
                       learnable_codebook: bool | None, ema_update: bool | None) -> dict[str, Any]:
    """Our keyword arguments for vector-quantize-pytorch's codebook arguments."""
    if learnable_codebook and ema_update is not False:
        raise ValueError(f"{owner}: learnable_codebook=True needs ema_update=False (as in vector-quantize-pytorch)")
    if ema_update is False and not learnable_codebook:
        raise ValueError(f"{owner}: ema_update=False without learnable_codebook=True (a frozen codebook) is not "
                         "supported by hiervq.compat")
    if rotation_trick is None:
        rotation_trick = dim > 1
    dead = None
    if threshold_ema_dead_code:
        if threshold_ema_dead_code < 0:
            raise ValueError(f"{owner}: threshold_ema_dead_code must be >= 0, got {threshold_ema_dead_code}")
        dead = float(threshold_ema_dead_code) * DEAD_WINDOW
    return dict(
        ema_decay=None if learnable_codebook else decay,
        init="kmeans" if kmeans_init else "random",
        kmeans_iters=kmeans_iters,
        dead_threshold=dead,
        dead_window=DEAD_WINDOW,
        beta=commitment_weight,
        estimator="rotation" if rotation_trick else "ste",
    )


class VectorQuantize(nn.Module):
    """vector-quantize-pytorch's ``VectorQuantize`` over :class:`hiervq.quantize.VectorQuantizer` (``.layer``).

    Args (vector-quantize-pytorch's name -> ours):
        dim, codebook_size: the same.
        codebook_dim: ``code_dim`` (a learned projection dim -> codebook_dim -> dim when different).
        decay: ``ema_decay`` (default 0.8, theirs).
        eps: the codebook's Laplace smoothing (``layer.codebook.eps``).
        kmeans_init: ``init="kmeans"`` (k-means++ then ``kmeans_iters`` Lloyd iterations on the first training
            batch); False (their default): ``init="random"`` (unit Gaussian codes, not their Kaiming-uniform).
        kmeans_iters: the same.
        use_cosine_sim: ``cosine=True`` (l2-normalised features and codes).
        threshold_ema_dead_code: t > 0 re-seeds a code from the batch when it got fewer than t x 10 assignments
            over the last 10 training batches (``dead_threshold``, ``dead_window``); theirs compares an EMA of the
            per-batch count with t. None or 0 (default): no reset.
        commitment_weight: ``beta`` (default 1.0, theirs).
        rotation_trick: ``estimator="rotation"``; None (default) means True when dim > 1, as there; False:
            ``"ste"``.
        learnable_codebook=True with ema_update=False: learned codes (``ema_decay=None``, codebook loss weight 1).
        channel_last: False takes (B, D, N) sequences.
        accept_image_fmap: True takes (B, D, H, W) maps.

    Input: (B, N, D) (``channel_last``), (B, D, N) (``channel_last=False``), (B, D) (one token), or (B, D, H, W)
    (``accept_image_fmap=True``).

    Returns ``(quantized, indices, loss)``: quantized in the input's shape; indices (B, N), (B,) or (B, H, W),
    int64; loss a scalar (``commitment_weight`` x commitment, plus the codebook term for learned codes), 0
    outside training mode.
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int | None = None, decay: float = 0.8,
                 eps: float = 1e-5, kmeans_init: bool = False, kmeans_iters: int = 10, use_cosine_sim: bool = False,
                 threshold_ema_dead_code: float | None = None, channel_last: bool = True,
                 accept_image_fmap: bool = False, commitment_weight: float = 1.0, rotation_trick: bool | None = None,
                 learnable_codebook: bool | None = None, ema_update: bool | None = None, **unsupported: Any) -> None:
        super().__init__()
        _check_unsupported("VectorQuantize", unsupported, _VQ_UNSUPPORTED)
        settings = _codebook_settings("VectorQuantize", dim, decay, kmeans_init, kmeans_iters,
                                      threshold_ema_dead_code, commitment_weight, rotation_trick,
                                      learnable_codebook, ema_update)
        self.dim, self.codebook_size = dim, codebook_size
        self.channel_last, self.accept_image_fmap = channel_last, accept_image_fmap
        self.layer = VectorQuantizer(dim, codebook_size, code_dim=codebook_dim, cosine=use_cosine_sim, **settings)
        self.layer.codebook.eps = eps

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors (codebook_size, codebook_dim)."""
        return self.layer.codebook.weight

    def _check_input(self, x: torch.Tensor) -> None:
        if self.accept_image_fmap:
            if x.ndim != 4:
                raise ValueError(f"VectorQuantize(accept_image_fmap=True) takes (B, D, H, W) maps, got {tuple(x.shape)}")
        elif x.ndim not in (2, 3):
            raise ValueError(f"VectorQuantize takes (B, N, D) sequences or (B, D) tokens (accept_image_fmap=True for "
                             f"(B, D, H, W) maps), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, mask=None, lens=None, indices=None, return_loss_breakdown: bool = False):
        """``(quantized, indices, loss)`` of ``x``; see the class docstring."""
        _forward_options("VectorQuantize", dict(mask=mask, lens=lens, indices=indices,
                                                return_loss_breakdown=return_loss_breakdown))
        self._check_input(x)
        transpose = not self.channel_last and not self.accept_image_fmap and x.ndim == 3
        out = self.layer(x.transpose(1, 2) if transpose else x)
        quantized = out.quantized.transpose(1, 2) if transpose else out.quantized
        loss = out.loss if self.training else out.loss.new_zeros(())
        return quantized, out.indices, loss

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``indices``, before the output projection, in the forward's layout."""
        codes = self.layer.codebook.lookup(indices.long())
        if self.accept_image_fmap or (not self.channel_last and codes.ndim == 3):
            codes = codes.movedim(-1, 1)
        return codes

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """What the eval-mode forward returns as ``quantized`` for these ``indices`` (the codes, projected out)."""
        out = self.layer.decode(indices)
        if not self.channel_last and not self.accept_image_fmap and indices.ndim == 2:
            out = out.transpose(1, 2)
        return out


class ResidualVQ(nn.Module):
    """vector-quantize-pytorch's ``ResidualVQ`` over :class:`hiervq.quantize.ResidualVQ` (``.layer``).

    Args: ``dim``, ``num_quantizers`` (``stages``), ``codebook_size`` (one int: every stage has the same K),
    ``codebook_dim`` (``code_dim``, one projection around the chain), ``shared_codebook`` (``shared``),
    ``quantize_dropout`` (True: ``dropout=1.0``, every training forward keeps a random prefix of
    ``quantize_dropout_cutoff_index + 1`` .. ``num_quantizers`` stages, their rule; ``dropout_min`` is that
    cutoff + 1), ``accept_image_fmap``, and the codebook arguments of :class:`VectorQuantize` (``decay``, ``eps``,
    ``kmeans_init``, ``kmeans_iters``, ``threshold_ema_dead_code``, ``commitment_weight``, ``rotation_trick``,
    ``learnable_codebook``/``ema_update``), per stage. ``use_cosine_sim=True`` is refused (our residual chain has
    no cosine codes). The rotation trick (or straight-through) is applied once, from the input to the sum of the
    stages, not at every stage.

    Input: (B, N, D) sequences, or (B, D, H, W) maps with ``accept_image_fmap=True``.

    Returns ``(quantized, indices, losses)``: quantized in the input's shape; indices (B, N, Q) or (B, H, W, Q),
    int64, -1 for stages dropped this forward; losses (Q,), the loss of each stage (``commitment_weight`` x its
    commitment), 0 for dropped stages and outside training mode.
    """

    def __init__(self, *, dim: int, num_quantizers: int, codebook_size: int, codebook_dim: int | None = None,
                 shared_codebook: bool = False, quantize_dropout: bool = False, quantize_dropout_cutoff_index: int = 0,
                 accept_image_fmap: bool = False, decay: float = 0.8, eps: float = 1e-5, kmeans_init: bool = False,
                 kmeans_iters: int = 10, use_cosine_sim: bool = False, threshold_ema_dead_code: float | None = None,
                 commitment_weight: float = 1.0, rotation_trick: bool | None = None,
                 learnable_codebook: bool | None = None, ema_update: bool | None = None, **unsupported: Any) -> None:
        super().__init__()
        _check_unsupported("ResidualVQ", unsupported, _RVQ_UNSUPPORTED)
        if use_cosine_sim:
            raise ValueError("ResidualVQ: use_cosine_sim=True is not supported by hiervq.compat (hiervq's residual "
                             "chain has Euclidean codes only; VectorQuantize supports it)")
        if not isinstance(codebook_size, int):
            raise ValueError(f"ResidualVQ: codebook_size must be one int (the same K at every stage), got "
                             f"{codebook_size!r}")
        settings = _codebook_settings("ResidualVQ", codebook_dim or dim, decay, kmeans_init, kmeans_iters,
                                      threshold_ema_dead_code, commitment_weight, rotation_trick,
                                      learnable_codebook, ema_update)
        dropout = quantize_dropout and num_quantizers > 1
        if dropout and not 0 <= quantize_dropout_cutoff_index < num_quantizers:
            raise ValueError(f"ResidualVQ: quantize_dropout_cutoff_index must be in [0, {num_quantizers}), got "
                             f"{quantize_dropout_cutoff_index}")
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        self.accept_image_fmap = accept_image_fmap
        self.layer = _ResidualVQ(dim, codebook_size, num_quantizers, code_dim=codebook_dim, shared=shared_codebook,
                                 dropout=1.0 if dropout else 0.0,
                                 dropout_min=quantize_dropout_cutoff_index + 1 if dropout else 1, **settings)
        for book in self.layer.books:
            book.eps = eps

    @property
    def codebooks(self) -> torch.Tensor:
        """The code vectors of every stage (Q, codebook_size, codebook_dim)."""
        return torch.stack([self.layer.book(s).weight for s in range(self.num_quantizers)])

    def forward(self, x: torch.Tensor, mask=None, indices=None, return_all_codes: bool = False):
        """``(quantized, indices, losses)`` of ``x``; see the class docstring."""
        _forward_options("ResidualVQ", dict(mask=mask, indices=indices, return_all_codes=return_all_codes))
        want = 4 if self.accept_image_fmap else 3
        if x.ndim != want:
            raise ValueError(f"ResidualVQ takes {'(B, D, H, W) maps' if want == 4 else '(B, N, D) sequences'} "
                             f"here, got {tuple(x.shape)}")
        out = self.layer(x)
        losses = out.stage_loss if self.training else out.stage_loss.new_zeros(self.num_quantizers)
        return out.quantized, out.indices, losses

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The code vector of every stage (Q, ..., codebook_dim) for ``indices`` (..., q), before the output
        projection; -1 (a dropped stage) and stages beyond q give zeros."""
        codes = []
        for stage in range(self.num_quantizers):
            if stage >= indices.shape[-1]:
                codes.append(codes[0].new_zeros(codes[0].shape))
                continue
            idx = indices[..., stage].long()
            vec = self.layer.book(stage).lookup(idx.clamp_min(0))
            codes.append(vec * (idx >= 0).unsqueeze(-1).to(vec.dtype))
        return torch.stack(codes)

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The sum of the stages' codes, projected out, channel-last (..., D) as in vector-quantize-pytorch (also
        for (B, H, W, Q) codes of maps)."""
        return self.layer.project_out(self.get_codes_from_indices(indices).sum(0))


class FSQ(nn.Module):
    """vector-quantize-pytorch's ``FSQ`` over :class:`hiervq.quantize.FSQ` (``.layer``).

    Args: ``levels``, ``dim`` (default ``len(levels)``: no projection), ``channel_first`` (True takes (B, D, N)).
    The code grid, its index order (first channel least significant) and the bound are theirs. Levels of 2 work
    without ``preserve_symmetry`` (which is not supported).

    Input: (B, N, D), (B, D, N) with ``channel_first=True``, or (B, D, H, W) maps.

    Returns ``(quantized, indices)``: quantized in the input's shape, indices (B, N) or (B, H, W), int64 (theirs
    are int32 below 2^31 codes).
    """

    def __init__(self, levels: list[int], dim: int | None = None, channel_first: bool = False,
                 **unsupported: Any) -> None:
        super().__init__()
        _check_unsupported("FSQ", unsupported, _FSQ_UNSUPPORTED)
        levels = list(levels)
        self.dim = dim or len(levels)
        self.channel_first = channel_first
        self.layer = _FSQ(self.dim, levels)
        self.codebook_size = self.layer.codebook_size
        self.codebook_dim = len(levels)

    def _transpose(self, ndim: int) -> bool:
        return self.channel_first and ndim == 3

    def forward(self, z: torch.Tensor):
        """``(quantized, indices)`` of ``z``; see the class docstring."""
        if z.ndim not in (3, 4):
            raise ValueError(f"FSQ takes (B, N, D) sequences or (B, D, H, W) maps here, got {tuple(z.shape)}")
        t = self._transpose(z.ndim)
        out = self.layer(z.transpose(1, 2) if t else z)
        return (out.quantized.transpose(1, 2) if t else out.quantized), out.indices

    @property
    def implicit_codebook(self) -> torch.Tensor:
        """All codes (codebook_size, len(levels)), values in [-1, 1]."""
        return self.layer.implicit_codebook()

    def codes_to_indices(self, zhat: torch.Tensor) -> torch.Tensor:
        """Indices (...) of codes (..., len(levels)) on the grid."""
        return self.layer.codes_to_indices(zhat)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """What the eval-mode forward returns as ``quantized`` for ``indices`` (projected out, in its layout)."""
        out = self.layer.decode(indices)
        return out.transpose(1, 2) if self._transpose(indices.ndim + 1) else out


class LFQ(nn.Module):
    """vector-quantize-pytorch's ``LFQ`` over :class:`hiervq.quantize.LFQ` (``.layer``).

    Args (theirs -> ours): ``dim`` (default log2 codebook_size), ``codebook_size`` (a power of 2: ``bits`` = its
    log2; default 2^dim), ``entropy_loss_weight`` (``entropy_weight``, 0.1), ``commitment_loss_weight`` (``beta``,
    default 0 as there), ``diversity_gamma`` (``diversity``, 1), ``has_projections`` (must agree with
    dim != log2 codebook_size), ``channel_first`` (None: (B, D, H, W) maps are channel-first, (B, N, D) sequences
    channel-last; True also takes (B, D, N)). The inverse temperature is a forward argument, as there (default
    100: theirs, not :class:`hiervq.quantize.LFQ`'s 1; with their commitment weight 0 it does not collapse).

    Returns ``LFQReturn(quantized, indices, entropy_aux_loss)``: quantized in the input's shape, indices (B, N) or
    (B, H, W), int64, the loss (entropy_loss_weight x (per-sample entropy - diversity_gamma x batch entropy) +
    commitment_loss_weight x commitment) a scalar, 0 outside training mode. ``return_loss_breakdown=True`` adds
    ``LFQLossBreakdown(per_sample_entropy, batch_entropy, commitment)`` (detached).
    """

    def __init__(self, *, dim: int | None = None, codebook_size: int | None = None, entropy_loss_weight: float = 0.1,
                 commitment_loss_weight: float = 0.0, diversity_gamma: float = 1.0, has_projections: bool | None = None,
                 channel_first: bool | None = None, **unsupported: Any) -> None:
        super().__init__()
        _check_unsupported("LFQ", unsupported, _LFQ_UNSUPPORTED)
        if dim is None and codebook_size is None:
            raise ValueError("LFQ: give dim or codebook_size")
        if codebook_size is None:
            codebook_size = 2**dim
        bits = math.log2(codebook_size)
        if not bits.is_integer():
            raise ValueError(f"LFQ: codebook_size must be a power of 2, got {codebook_size}")
        bits = int(bits)
        dim = bits if dim is None else dim
        if has_projections is not None and has_projections != (dim != bits):
            raise ValueError(f"LFQ: has_projections={has_projections} is not supported by hiervq.compat: the input "
                             f"is projected exactly when dim ({dim}) != log2 codebook_size ({bits})")
        self.dim, self.codebook_size, self.codebook_dim = dim, codebook_size, bits
        self.channel_first = channel_first
        self.layer = _LFQ(dim, bits, beta=commitment_loss_weight, entropy_weight=entropy_loss_weight,
                          diversity=diversity_gamma)

    @property
    def codebook(self) -> torch.Tensor:
        """All codes (codebook_size, log2 codebook_size), values -1/+1."""
        return self.layer.implicit_codebook()

    def _layout(self, ndim: int) -> str:
        """'first' for channel-first inputs of ``ndim`` dims, 'last' otherwise."""
        first = ndim >= 4 if self.channel_first is None else self.channel_first
        return "first" if first else "last"

    def forward(self, x: torch.Tensor, inv_temperature: float = 100.0, return_loss_breakdown: bool = False,
                mask=None):
        """``LFQReturn(quantized, indices, entropy_aux_loss)`` of ``x``; see the class docstring."""
        _forward_options("LFQ", dict(mask=mask))
        if x.ndim not in (3, 4):
            raise ValueError(f"LFQ takes (B, N, D) sequences or (B, D, H, W) maps here, got {tuple(x.shape)}")
        layout = self._layout(x.ndim)
        # our layer: 4-d inputs are channel-first maps, 3-d ones channel-last sequences
        move = (x.ndim == 3 and layout == "first") or (x.ndim == 4 and layout == "last")
        if move:
            x = x.movedim(1, -1) if x.ndim == 3 else x.movedim(-1, 1)
        self.layer.inv_temperature = float(inv_temperature)
        out = self.layer(x)
        quantized = out.quantized
        if move:
            quantized = quantized.movedim(-1, 1) if quantized.ndim == 3 else quantized.movedim(1, -1)
        loss = out.loss if self.training else out.loss.new_zeros(())
        ret = LFQReturn(quantized, out.indices, loss)
        if not return_loss_breakdown:
            return ret
        zero = out.loss.new_zeros(())
        breakdown = LFQLossBreakdown(out.losses["sample_entropy"], out.losses["codebook_entropy"],
                                     out.losses["commitment"] if self.training else zero)
        return ret, breakdown

    def indices_to_codes(self, indices: torch.Tensor, project_out: bool = True) -> torch.Tensor:
        """Codes of ``indices``: projected out (what the eval-mode forward returns, in its layout), or the -1/+1
        bits (``project_out=False``), channel-first for (B, H, W) indices."""
        if project_out:
            out = self.layer.decode(indices)  # (B, D, H, W) for (B, H, W), else (..., D)
        else:
            out = self.layer.indices_to_codes(indices)
            if indices.ndim == 3:
                out = out.movedim(-1, 1)
        if indices.ndim == 2 and self._layout(3) == "first":
            out = out.movedim(-1, 1)
        if indices.ndim == 3 and self._layout(4) == "last":
            out = out.movedim(1, -1)
        return out
