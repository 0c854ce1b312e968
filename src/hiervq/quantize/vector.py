"""``VectorQuantizer``: a drop-in layer that maps features to their nearest code vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import distributed as qdist
from .codebook import Codebook, CodebookConfig
from .common import RowLayout, batch_stats, code_bits, is_channels_last, projections
from .estimators import ESTIMATORS, rotation_trick, straight_through
from .simvq import SimCodebook


@dataclass
class Quantized:
    """What :class:`VectorQuantizer` returns.

    Attributes:
        quantized: the quantized features, same shape as the input.
        indices: the codes, shape of the input without its channel axis: (B, H, W) for (B, C, H, W) maps,
            (N,) for (N, D) vectors, (B, T) for (B, T, D) sequences.
        loss: codebook term + beta * commitment term (scalar, differentiable).
        losses: the unweighted terms, detached: ``commitment`` and ``codebook`` (0 with EMA codes).
        stats: batch codebook statistics, detached: ``perplexity``, ``used_fraction``, ``counts`` (K,) and
            ``resets`` (codes re-seeded this step). In training mode under ``torch.distributed`` they describe
            the batches of all ranks together (the counts are the all-reduced ones the codebook update uses).
        stage_loss: :class:`~hiervq.quantize.ResidualVQ` only (else ``None``): the loss per stage (L,),
            differentiable, 0 for stages dropped this forward; it sums to ``loss``.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    stage_loss: torch.Tensor | None = None


def check_vq_options(estimator: str = "ste", beta: float = 0.25, temperature: float = 1.0, simvq: bool = False,
                     ema_decay: float | None = 0.99) -> None:
    """Raise ``ValueError`` naming the first setting of a :class:`VectorQuantizer` (besides its codebook's, see
    :meth:`~hiervq.quantize.CodebookConfig.validate`) that is out of range."""
    if simvq and ema_decay is not None:
        raise ValueError("simvq learns its codes through a linear map and the codebook loss: set ema_decay null (None)")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


class VectorQuantizer(RowLayout):
    """Nearest-neighbour vector quantization with a choice of codebook update and gradient estimator.

    Args:
        dim: channels of the input features (C).
        codebook_size: K.
        code_dim: dimension of the code vectors; if set and different from ``dim``, features are projected
            to it by a learned linear map (a 1x1 conv on maps) and back after lookup (low-dimensional codes).
        estimator: ``"ste"`` (straight-through), ``"rotation"`` (rotation trick) or ``"gumbel"``
            (hard Gumbel-softmax over negative squared distances / ``temperature``).
        beta: weight of the commitment term |e - sg(q)|^2.
        temperature: Gumbel-softmax temperature.
        simvq: SimVQ codebook (:class:`~hiervq.quantize.simvq.SimCodebook`): the codes are a frozen random basis
            times one learned linear map, trained by the codebook term; needs ``ema_decay=None``, and ``init``,
            ``init_after``, ``dead_threshold`` and ``reseed`` do not apply (no data init, no reset).
        codebook: the codebook's settings, a :class:`~hiervq.quantize.CodebookConfig` (``ema_decay``: EMA decay
            of the codes, ``None`` learns them with the codebook term |sg(e) - q|^2; ``init``, ``kmeans_iters``
            (``kmeans`` seeds with k-means++), ``dead_threshold``, ``dead_window``, ``init_after``, ``reseed``;
            ``cosine``: l2-normalise features and codes; ``chunk_elements``: memory bound of the nearest-code
            search); ``**options``: any of them as keywords (``init="random"``), replacing the config's.

    Input: (B, C, H, W) maps (channel axis 1) or channel-last (N, C) / (B, T, C) tensors. Codebook
    initialisation, EMA updates and dead-code resets happen in training mode only.

    Warm-up (``init_after`` = N > 0): the first N training forwards return the continuous features (projected in
    and out, so the encoder and projections train as a plain autoencoder), with zero commitment and codebook
    loss and no codebook update; their ``indices``/``stats`` are the nearest codes of the un-initialised book,
    for shape only. Training forward N + 1 initialises the codebook from its features and quantizes. Eval-mode
    forwards before that quantize against the un-initialised book, as they do before the first training step. Gradients cross the
    quantizer whenever autograd is recording; otherwise (e.g. eval under ``no_grad``) the output is exactly the
    code vectors, so ``decode(indices)`` reproduces the eval forward bit for bit.

    Precision: under autocast (e.g. bf16, ``train.amp``) the layer still computes in float32 (its input is cast up,
    autocast is off inside): the nearest-code search, the EMA update and the losses; the output is float32.

    ``bypass`` (an attribute, off by default, not saved): the forward returns the continuous features instead of
    the code vectors (codes, losses and statistics are still computed); used to fine-tune a pretrained encoder on
    its continuous latents.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        code_dim: int | None = None,
        estimator: str = "ste",
        beta: float = 0.25,
        temperature: float = 1.0,
        simvq: bool = False,
        codebook: CodebookConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        config = CodebookConfig.resolve(codebook, options, type(self).__name__)
        check_vq_options(estimator, beta, temperature, simvq, config.ema_decay)
        self.dim = dim
        self.code_dim = code_dim or dim
        self.codebook_size = codebook_size
        self.estimator = estimator
        self.bypass = False  # see the class docstring
        self.beta = beta
        self.cosine = config.cosine
        self.temperature = temperature
        self.project_in, self.project_out = projections(dim, self.code_dim)
        self.simvq = simvq
        if simvq:
            self.codebook = SimCodebook(codebook_size, self.code_dim, cosine=config.cosine,
                                        chunk_elements=config.chunk_elements)
        else:
            self.codebook = Codebook(codebook_size, self.code_dim, config)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, code_dim={self.code_dim}, estimator={self.estimator!r}, beta={self.beta}"

    depth = 1  # codes per input vector
    num_books = 1  # codebooks of K x code_dim

    @property
    def bits(self) -> float:
        """Bits per code index, log2 K."""
        return code_bits(self.codebook_size)

    # ------------------------------------------------------------------ forward / decode
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W) or (..., C); see the class docstring."""
        if torch.is_autocast_enabled(z.device.type):
            # under autocast (e.g. bf16) the search, the EMA and the losses still run in float32: a bf16 distance
            # has ~3 significant digits, too few to tell neighbouring codes apart
            with torch.autocast(z.device.type, enabled=False):
                return self.forward(z.float() if z.dtype in (torch.bfloat16, torch.float16) else z)
        maps = z.ndim == 4
        rows, index_shape = self._to_rows(z)
        e = self.project_in(rows)
        if self.cosine:
            e = F.normalize(e, dim=-1)
        book = self.codebook
        if self.training and not bool(book.initialized):
            if book.warming_up():
                return self._warmup_forward(e, index_shape, maps, is_channels_last(z))
            book.initialize(e.detach())
        track_grad = torch.is_grad_enabled() and e.requires_grad

        if self.estimator == "gumbel" and track_grad:
            # EMA codes are updated in place below: work on a copy so autograd's saved tensors stay valid
            weight = book.weight if not book.uses_ema else book.weight.clone()
            logits = -book.distances(e, weight)
            if self.training:
                soft = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
                indices = soft.argmax(-1)
            else:
                indices = logits.argmax(-1)
                soft = F.one_hot(indices, book.codebook_size).to(logits.dtype)
                probs = (logits / self.temperature).softmax(-1)
                soft = soft + probs - probs.detach()
            q = soft @ weight
            q_fixed = F.embedding(indices, weight)
            out = q + (q_fixed - q).detach()
        else:
            indices = book.nearest(e.detach())
            q_fixed = book.lookup(indices, check=False)  # indices of nearest codes are valid by construction
            if not track_grad:
                out = q_fixed
            elif self.estimator == "rotation":
                out = rotation_trick(e, q_fixed)
            else:
                out = straight_through(e, q_fixed)

        commitment = F.mse_loss(e, q_fixed.detach())
        loss = self.beta * commitment
        if book.uses_ema:
            codebook_loss = torch.zeros((), device=e.device)
        else:
            codebook_loss = F.mse_loss(q_fixed, e.detach())
            loss = loss + codebook_loss

        with torch.no_grad():
            flat = indices.reshape(-1)
            counts = torch.bincount(flat, minlength=book.codebook_size)
            resets = 0
            if self.training:
                # one bincount serves the statistics and the EMA; under torch.distributed the update sums the
                # counts over all ranks, so the training statistics below describe the global batch
                resets = book.update(e.detach(), flat, counts=counts)
                counts = book.last_counts.long()
            stats = batch_stats(counts, resets)

        out = self.project_out(e if self.bypass else out)
        return Quantized(
            quantized=self._from_rows(out, index_shape, maps, is_channels_last(z)),
            indices=indices.view(index_shape),
            loss=loss,
            losses={"commitment": commitment.detach(), "codebook": codebook_loss.detach()},
            stats=stats,
        )

    def _warmup_forward(self, e: torch.Tensor, index_shape: tuple[int, ...], maps: bool,
                        channels_last: bool = False) -> Quantized:
        """A warm-up training forward (see the class docstring): ``e`` (N, code_dim) passes through unquantized."""
        book = self.codebook
        indices = book.nearest(e.detach())
        zero = e.new_zeros(())
        # learned codes: a zero-valued term that touches them, so that DDP sees a (zero) gradient for every parameter
        loss = zero if book.uses_ema else (book.weight * 0.0).sum()
        with torch.no_grad():
            counts = torch.bincount(indices, minlength=book.codebook_size)
            qdist.all_reduce_sum(counts)
            stats = batch_stats(counts)
        return Quantized(
            quantized=self._from_rows(self.project_out(e), index_shape, maps, channels_last),
            indices=indices.view(index_shape),
            loss=loss,
            losses={"commitment": zero, "codebook": zero},
            stats=stats,
        )

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes of ``z`` (no gradients, no codebook update): (B, H, W) for maps, (...) for vectors."""
        if torch.is_autocast_enabled(z.device.type):  # the search in float32, as in forward
            with torch.autocast(z.device.type, enabled=False):
                return self.encode(z.float() if z.dtype in (torch.bfloat16, torch.float16) else z)
        rows, index_shape = self._to_rows(z)
        with torch.no_grad():
            e = self.project_in(rows)
            if self.cosine:
                e = F.normalize(e, dim=-1)
            return self.codebook.nearest(e).view(index_shape)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized features for ``indices``: (B, C, H, W) for (B, H, W) codes, (..., C) otherwise.

        Equals the eval-mode forward output (under ``no_grad``) for the same codes, exactly.
        """
        out = self.project_out(self.codebook.lookup(indices.reshape(-1)))
        if indices.ndim == 3:
            return self._from_rows(out, tuple(indices.shape), maps=True)
        return out.view(*indices.shape, -1)
