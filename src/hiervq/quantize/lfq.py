"""``LFQ``: lookup-free quantization (MAGVIT-2, Yu et al., 2023) -- binary codes, an implicit codebook of 2^bits.

Each of the ``bits`` channels is quantized to its sign; the code is the bit pattern. Training adds MAGVIT-2's
entropy penalty: the mean per-sample entropy (confident assignments) minus ``diversity`` times the entropy of the
batch-averaged assignment distribution (a uniformly used codebook).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import distributed as qdist
from .codebook import DEFAULT_CHUNK_ELEMENTS
from .common import RowLayout, check_indices, projections, usage_stats
from .estimators import straight_through
from .fsq import linear_in
from .vector import Quantized


def binary_entropy_with_logits(x: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(x)), elementwise, stable for large |x|."""
    p = torch.sigmoid(x)
    return p * F.softplus(-x) + (1 - p) * F.softplus(x)


class _CodebookEntropy(torch.autograd.Function):
    """H(mean_n softmax(scale * e_n . C)) over the K codes C (K, d), computed in row chunks (never N x K at once).

    Under ``torch.distributed`` (``sync``) the mean runs over the rows of all ranks (one all-reduce in every call,
    which every rank makes), and the gradient is multiplied by the world size, so that DDP's averaging of the
    ranks' gradients gives the gradient of this global-batch entropy.
    """

    @staticmethod
    def forward(ctx, e: torch.Tensor, signs: torch.Tensor, scale: float, chunk: int, sync: bool) -> torch.Tensor:
        total = e.new_zeros(signs.shape[0])
        for start in range(0, e.shape[0], chunk):
            total += torch.softmax(scale * (e[start : start + chunk] @ signs.t()), -1).sum(0)
        count = torch.full((1,), float(e.shape[0]), dtype=e.dtype, device=e.device)
        world = 1
        if sync and qdist.is_distributed():
            qdist.all_reduce_sum(total, count)
            world = dist.get_world_size()
        avg = total / count.clamp_min(1.0)
        log_avg = avg.clamp_min(1e-30).log()
        ctx.save_for_backward(e, signs, log_avg, count)
        ctx.scale, ctx.chunk, ctx.world = scale, chunk, world
        return -(avg * log_avg).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        e, signs, log_avg, count = ctx.saved_tensors
        v = (-(log_avg + 1.0)) * (grad * ctx.world / count.clamp_min(1.0))  # dH/d(sum_n p_n), (K,)
        de = torch.empty_like(e)
        for start in range(0, e.shape[0], ctx.chunk):
            p = torch.softmax(ctx.scale * (e[start : start + ctx.chunk] @ signs.t()), -1)
            dl = p * (v - (p * v).sum(-1, keepdim=True))
            de[start : start + ctx.chunk] = (dl @ signs) * ctx.scale
        return de, None, None, None, None


def check_lfq_options(bits: int, beta: float = 0.025, entropy_weight: float = 0.1, diversity: float = 1.0,
                      inv_temperature: float = 1.0) -> None:
    """Raise ``ValueError`` naming the first setting of an :class:`LFQ` that is out of range."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 62:
        raise ValueError(f"LFQ bits must be an integer in [1, 62], got {bits!r}")
    if beta < 0 or entropy_weight < 0 or diversity < 0 or inv_temperature <= 0:
        raise ValueError("beta, entropy_weight and diversity must be >= 0, inv_temperature > 0")
    if entropy_weight > 0 and bits > 20:
        raise ValueError(f"the exact codebook entropy needs 2^bits softmax entries per row: bits {bits} > 20 "
                         "(set entropy_weight 0)")


class LFQ(RowLayout):
    """Lookup-free (binary) quantization of (B, C, H, W) maps or (..., C) vectors into 2^bits codes.

    Args:
        dim: channels of the input (C); projected to ``bits`` channels (and back) by learned linear maps when
            different.
        bits: code channels; K = 2^bits.
        beta: weight of the commitment term |e - sg(q)|^2 (default 0.025; see "Defaults" below).
        entropy_weight: weight of the entropy penalty (0 turns it off: no N x K work at all).
        diversity: gamma, weight of the codebook entropy inside the penalty.
        inv_temperature: the assignment distribution is softmax(-inv_temperature * |e - c|^2) over the codes c,
            i.e. softmax(2 inv_temperature e.c) (vector-quantize-pytorch's convention; its default is 100, ours 1).
        chunk_elements: rows x K entries of the codebook-entropy softmax held at once.

    Rules:
        * code: q_i = +1 if e_i > 0 else -1 (0 counts as negative); index = sum_i [e_i > 0] 2^(bits - 1 - i) (the
          first channel is the most significant bit); straight-through gradient;
        * per-sample entropy: the softmax over the 2^bits codes factorises into independent bits with
          P(q_i = +1) = sigmoid(4 inv_temperature e_i), so it is computed exactly as a sum of binary entropies,
          O(N bits); averaged over the rows;
        * codebook entropy: H of the assignment distribution averaged over the batch (all ranks under
          torch.distributed), computed exactly over the 2^bits codes in row chunks with a hand-written backward
          that recomputes each chunk (memory O(chunk x K), not N x K);
        * loss = beta * commitment + entropy_weight * (per-sample entropy - diversity * codebook entropy);
          the entropy terms are computed in training mode only. ``losses``: ``commitment``, ``codebook`` (0),
          ``entropy`` (the penalty), ``sample_entropy``, ``codebook_entropy`` (nats, detached);
        * statistics: those of :class:`~hiervq.quantize.VectorQuantizer` over the implicit codebook of 2^bits codes.

    Defaults: beta 0.025, entropy_weight 0.1, diversity 1, inv_temperature 1. Until issue 26 they were beta 0.25 and
    inv_temperature 100, which collapse: a commitment of 0.25 pins the projected features at +-1, where
    sigmoid(400 e_i) is saturated and the entropy terms have no gradient left to revive a constant bit. In the
    150-step loop of ``benchmarks/lfq_defaults.py`` (10 bits) the old defaults used 32 of 1,024 codes, these use
    1,024 (``benchmarks/results/lfq_defaults.json``). The right beta and entropy weight still scale with the
    reconstruction loss a model trains on (docs/quantizers.md, "Why LFQ collapsed").

    Precision: like :class:`~hiervq.quantize.FSQ`, everything (projection, signs, entropies) is computed in float32
    with autocast disabled: with bf16 the projection rounds features near 0 to the other sign, so codes differ
    from float32, and the softmax over thousands of codes at inverse temperature 100 overflows/underflows bf16's
    8-bit significand. The output is float32.

    ``decode(indices)`` equals the eval-mode forward output (under ``no_grad``) exactly.
    """

    def __init__(
        self,
        dim: int,
        bits: int,
        beta: float = 0.025,
        entropy_weight: float = 0.1,
        diversity: float = 1.0,
        inv_temperature: float = 1.0,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        check_lfq_options(bits, beta, entropy_weight, diversity, inv_temperature)
        self.dim = dim
        self.bits_per_code = bits
        self.code_dim = bits
        self.codebook_size = 2**bits
        self.beta = beta
        self.entropy_weight = entropy_weight
        self.diversity = diversity
        self.inv_temperature = inv_temperature
        self.chunk_elements = chunk_elements
        self.bypass = False
        self.project_in, self.project_out = projections(dim, bits)
        self.register_buffer("_mask", 2 ** torch.arange(bits - 1, -1, -1, dtype=torch.long), persistent=False)
        self.register_buffer("_one", torch.ones((), dtype=torch.float32), persistent=False)  # follows .double()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bits={self.bits_per_code}, beta={self.beta}, entropy_weight={self.entropy_weight}"

    @property
    def bits(self) -> float:
        """Bits per code index, log2 K."""
        return float(self.bits_per_code)

    depth = 1  # codes per input vector
    num_books = 1  # codebooks (the implicit one of K x bits)

    def _dtype(self, x: torch.Tensor | None = None) -> torch.dtype:
        dt = torch.promote_types(self._one.dtype, torch.float32)
        return dt if x is None else torch.promote_types(dt, x.dtype)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Code vectors (..., bits) in {-1, +1} of integer ``indices`` (...)."""
        positive = (indices.long()[..., None] & self._mask) != 0
        dt = dtype or self._dtype()
        return torch.where(positive, 1.0, -1.0).to(dt)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer indices (...) of code vectors (..., bits) (their signs)."""
        return ((codes > 0).long() * self._mask).sum(-1)

    def implicit_codebook(self) -> torch.Tensor:
        """All K code vectors (K, bits), row k being the code of index k."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self._mask.device))

    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize ``z`` (B, C, H, W) or (..., C); see the class docstring."""
        maps = z.ndim == 4
        rows, index_shape = self._to_rows(z)
        with torch.autocast(device_type=rows.device.type, enabled=False):
            e = linear_in(self.project_in, rows.to(self._dtype(rows)))
            positive = e.detach() > 0
            codes = torch.where(positive, 1.0, -1.0).to(e.dtype)
            indices = (positive.long() * self._mask).sum(-1)
            track_grad = torch.is_grad_enabled() and e.requires_grad
            q = straight_through(e, codes) if track_grad else codes
            commitment = F.mse_loss(e, codes)
            loss = self.beta * commitment
            zero = e.new_zeros(())
            sample_h = codebook_h = entropy = zero
            if self.training and self.entropy_weight > 0:
                scale = 2.0 * self.inv_temperature
                sample_h = binary_entropy_with_logits(2.0 * scale * e).sum(-1).mean()
                signs = self.implicit_codebook().to(e.dtype)
                chunk = max(1, self.chunk_elements // self.codebook_size)
                codebook_h = _CodebookEntropy.apply(e, signs, scale, chunk, True)
                entropy = sample_h - self.diversity * codebook_h
                loss = loss + self.entropy_weight * entropy
            out = linear_in(self.project_out, e if self.bypass else q)
        return Quantized(
            quantized=self._from_rows(out, index_shape, maps),
            indices=indices.view(index_shape),
            loss=loss,
            losses={
                "commitment": commitment.detach(),
                "codebook": zero.detach(),
                "entropy": entropy.detach(),
                "sample_entropy": sample_h.detach(),
                "codebook_entropy": codebook_h.detach(),
            },
            stats=usage_stats(indices, self.codebook_size, self.training),
        )

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes of ``z`` (no gradients): (B, H, W) for maps, (...) for vectors."""
        rows, index_shape = self._to_rows(z)
        with torch.autocast(device_type=rows.device.type, enabled=False):
            e = linear_in(self.project_in, rows.to(self._dtype(rows)))
            return ((e > 0).long() * self._mask).sum(-1).view(index_shape)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized features for ``indices``: (B, C, H, W) for (B, H, W) codes, (..., C) otherwise.

        Equals the eval-mode forward output (under ``no_grad``) for the same codes, exactly.
        """
        check_indices(indices, self.codebook_size)
        with torch.autocast(device_type=indices.device.type, enabled=False):
            out = linear_in(self.project_out, self.indices_to_codes(indices.reshape(-1)))
        if indices.ndim == 3:
            return self._from_rows(out, tuple(indices.shape), maps=True)
        return out.view(*indices.shape, -1)
