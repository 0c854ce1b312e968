"""``ResidualVQ``: L nearest-code quantizers applied to successive residuals (SoundStream / EnCodec style)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist
from .codebook import Codebook, CodebookConfig
from .common import RowLayout, batch_stats, code_bits, perplexity, projections
from .estimators import rotation_trick, straight_through
from .vector import Quantized

RESIDUAL_ESTIMATORS = ("ste", "rotation")


def check_residual_options(stages: int, estimator: str = "ste", dropout: float = 0.0, dropout_min: int = 1,
                           beta: float = 0.25) -> None:
    """Raise ``ValueError`` naming the first setting of a :class:`ResidualVQ` (besides its codebooks', see
    :meth:`~hiervq.quantize.CodebookConfig.validate`) that is out of range."""
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise ValueError(f"stages must be an integer >= 1, got {stages!r}")
    if estimator not in RESIDUAL_ESTIMATORS:
        raise ValueError(f"residual estimator must be one of {', '.join(RESIDUAL_ESTIMATORS)}, got {estimator!r}")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")
    if not 1 <= dropout_min <= stages:
        raise ValueError(f"dropout_min must be in [1, stages={stages}], got {dropout_min}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")


class ResidualVQ(RowLayout):
    """Residual vector quantization of (B, C, H, W) maps or (..., C) vectors into L codes per vector.

    Args:
        dim: channels of the input (C).
        codebook_size: K, codes per stage.
        stages: L.
        code_dim: if set and different from ``dim``, features are projected to it (and back) once, around the
            whole chain (a 1x1 conv on maps).
        shared: one codebook for all stages (else one per stage).
        dropout: probability that a training forward uses only the first n stages, n drawn uniformly from
            ``dropout_min``..L (quantizer dropout, so that every prefix decodes well); 0 disables it.
        dropout_min: the fewest stages a dropout forward keeps (>= 1).
        estimator: ``"ste"`` or ``"rotation"``, applied once from the input to the sum of the stages.
        beta: as for :class:`~hiervq.quantize.VectorQuantizer`.
        codebook, ``**options``: the settings of every codebook, as for :class:`~hiervq.quantize.VectorQuantizer`
            (a :class:`~hiervq.quantize.CodebookConfig` and/or keywords); ``init_after`` and ``cosine`` are not
            supported.

    Rules:
        * chain: r_0 = e (the projected input), q_l = nearest code of r_l in stage l's codebook, r_{l+1} = r_l - q_l;
          the output is q_0 + ... + q_{n-1} (summed in that order), with the estimator's gradient from e (the
          gradient reaches the encoder once, not once per stage);
        * loss = sum over the stages run of beta * |r_l - sg(q_l)|^2 (+ |sg(r_l) - q_l|^2 for learned codes);
        * codebooks: data/k-means initialisation from the first training batch, stage by stage (stage l's book
          from r_l; a shared book from r_0); EMA, usage window and dead-code reset per codebook, from the
          residuals and codes of the stages run (a shared book gets one update with all its stages' rows);
        * quantizer dropout only shortens the chain: the first n codes are those of the full chain, the
          dropped stages' indices are -1 and their codebooks are not updated. The number of stages is drawn
          from torch's global random stream on every rank and rank 0's draw is broadcast (one collective in every
          training forward when ``dropout > 0``), so every rank runs the same stages and the same collectives;
        * ``indices``: (..., L) codes, (B, H, W, L) for maps; ``decode(codes[..., :l])`` for any l in 1..L is the
          sum of the first l stages, equal to the eval forward of an l-stage chain exactly (for l = L, to the
          eval forward itself);
        * statistics: ``perplexity``, ``used_fraction``, ``counts`` (K,) over the codes of all stages run (pooled),
          ``resets`` (all codebooks), and ``stage_perplexity`` / ``stage_used_fraction`` (L,), per stage; global
          under torch.distributed in training mode, as for VectorQuantizer.

    ``bits`` = L log2 K per input vector (the code space has K^L points).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        stages: int,
        code_dim: int | None = None,
        shared: bool = False,
        dropout: float = 0.0,
        dropout_min: int = 1,
        estimator: str = "ste",
        beta: float = 0.25,
        codebook: CodebookConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        check_residual_options(stages, estimator, dropout, dropout_min, beta)
        config = CodebookConfig.resolve(codebook, options, type(self).__name__, unsupported=("init_after", "cosine"))
        self.dim = dim
        self.code_dim = code_dim or dim
        self.codebook_size = codebook_size
        self.stages = stages
        self.shared = shared
        self.dropout = float(dropout)
        self.dropout_min = dropout_min
        self.estimator = estimator
        self.beta = beta
        self.bypass = False
        self.project_in, self.project_out = projections(dim, self.code_dim)
        self.books = nn.ModuleList(Codebook(codebook_size, self.code_dim, config)
                                   for _ in range(1 if shared else stages))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, code_dim={self.code_dim}, K={self.codebook_size}, stages={self.stages}, "
                f"shared={self.shared}, dropout={self.dropout}, estimator={self.estimator!r}, beta={self.beta}")

    @property
    def depth(self) -> int:
        """Codes per input vector (L)."""
        return self.stages

    @property
    def num_books(self) -> int:
        """Codebooks of K x code_dim: 1 when shared, L otherwise."""
        return len(self.books)

    @property
    def bits(self) -> float:
        """Bits per input vector, L log2 K."""
        return code_bits(self.codebook_size, depth=self.stages)

    def book(self, stage: int) -> Codebook:
        """The codebook of ``stage``."""
        return self.books[0 if self.shared else stage]

    # ------------------------------------------------------------------ quantizer dropout
    def stages_this_forward(self) -> int:
        """How many stages this forward runs: L, or in training with ``dropout`` a random n (see the class doc)."""
        if not self.training or self.dropout <= 0:
            return self.stages
        drop = bool(torch.rand(()) < self.dropout)
        n = int(torch.randint(self.dropout_min, self.stages + 1, ()))  # drawn either way: streams stay in step
        chosen = torch.tensor([n if drop else self.stages], dtype=torch.long)
        qdist.broadcast(chosen)
        return int(chosen)

    # ------------------------------------------------------------------ forward / encode / decode
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W) or (..., C); see the class docstring."""
        maps = z.ndim == 4
        rows, index_shape = self._to_rows(z)
        e = self.project_in(rows)
        n_run = self.stages_this_forward()
        indices = torch.full((e.shape[0], self.stages), -1, dtype=torch.long, device=e.device)
        residual = e
        qsum = None
        commitment = e.new_zeros(())
        codebook_loss = e.new_zeros(())
        learned = not self.books[0].uses_ema
        track_grad = torch.is_grad_enabled() and e.requires_grad
        shared_rows: list[torch.Tensor] = []
        stage_terms: list[torch.Tensor] = []
        resets = 0
        for stage in range(n_run):
            book = self.book(stage)
            if self.training and not bool(book.initialized):
                book.initialize(residual.detach())
            idx = book.nearest(residual.detach())
            q = book.lookup(idx, check=False)
            indices[:, stage] = idx
            stage_commitment = F.mse_loss(residual, q.detach())
            commitment = commitment + stage_commitment
            term = self.beta * stage_commitment
            if learned:
                stage_codebook = F.mse_loss(q, residual.detach())
                codebook_loss = codebook_loss + stage_codebook
                term = term + stage_codebook
            stage_terms.append(term)
            q = q.detach()
            qsum = q if qsum is None else qsum + q
            if self.training:
                if self.shared:
                    shared_rows.append(residual.detach())
                else:
                    resets += book.update(residual.detach(), idx)
            residual = residual - q  # r_{l+1} = e - sg(q_0 + ... + q_l): commitment gradients reach e
        if self.training and self.shared:
            resets += self.books[0].update(torch.cat(shared_rows), indices[:, :n_run].t().reshape(-1))
        loss = self.beta * commitment + codebook_loss
        if learned and n_run < len(self.books):  # dropped stages' codes: a zero term, so DDP sees their gradient
            loss = loss + sum((b.weight * 0.0).sum() for b in self.books[n_run:])
        if not track_grad:
            out = qsum
        elif self.estimator == "rotation":
            out = rotation_trick(e, qsum)
        else:
            out = straight_through(e, qsum)
        out = self.project_out(e if self.bypass else out)
        return Quantized(
            quantized=self._from_rows(out, index_shape, maps),
            indices=indices.view(*index_shape, self.stages),
            loss=loss,
            losses={"commitment": commitment.detach(), "codebook": codebook_loss.detach()},
            stats=self._stats(indices[:, :n_run], resets),
            stage_loss=torch.stack(stage_terms + [e.new_zeros(())] * (self.stages - n_run)),
        )

    @torch.no_grad()
    def _stats(self, indices: torch.Tensor, resets: int) -> dict[str, torch.Tensor]:
        """Pooled and per-stage usage of (N, n) codes; counts summed over ranks in training (one collective)."""
        k, n_run = self.codebook_size, indices.shape[1]
        offsets = torch.arange(n_run, device=indices.device) * k
        per_stage = torch.zeros(self.stages, k, dtype=torch.long, device=indices.device)
        per_stage[:n_run] = torch.bincount((indices + offsets).reshape(-1), minlength=n_run * k).view(n_run, k)
        if self.training:
            qdist.all_reduce_sum(per_stage)
        counts = per_stage.sum(0)
        return {
            **batch_stats(counts, resets),
            "stage_perplexity": torch.stack([perplexity(c).float() for c in per_stage]),
            "stage_used_fraction": (per_stage > 0).float().mean(1),
        }

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (..., L) of ``z`` (no gradients, no codebook update): (B, H, W, L) for maps."""
        rows, index_shape = self._to_rows(z)
        residual = self.project_in(rows)
        codes = []
        for stage in range(self.stages):
            book = self.book(stage)
            idx = book.nearest(residual)
            codes.append(idx)
            residual = residual - book.lookup(idx, check=False)
        return torch.stack(codes, -1).view(*index_shape, self.stages)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Features for codes (..., l) of the first l stages (1 <= l <= L): (B, C, H, W) for (B, H, W, l) codes.

        The sum of the first l stages' code vectors, projected out; for l = L it equals the eval-mode forward
        output (under ``no_grad``) exactly.
        """
        if codes.ndim < 1 or not 1 <= codes.shape[-1] <= self.stages:
            raise ValueError(f"residual codes must be (..., l) with 1 <= l <= {self.stages}, got {tuple(codes.shape)}")
        flat = codes.reshape(-1, codes.shape[-1])
        qsum = None
        for stage in range(flat.shape[1]):
            q = self.book(stage).lookup(flat[:, stage])
            qsum = q if qsum is None else qsum + q
        out = self.project_out(qsum)
        if codes.ndim == 4:
            return self._from_rows(out, tuple(codes.shape[:3]), maps=True)
        return out.view(*codes.shape[:-1], -1)
