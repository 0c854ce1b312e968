"""The codebook: K code vectors of dimension D, how they are found, initialised, updated and re-seeded."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist
from .common import check_indices, code_bits

INITS = ("data", "kmeans", "random", "uniform")
#: the inits that need no data (the codebook is ready at construction)
DATA_FREE_INITS = ("random", "uniform")
RESEEDS = ("sample", "mean")

#: m, the encoder outputs averaged into one code by ``reseed="mean"``: a random recent output and its m - 1
#: nearest neighbours among the recent outputs.
MEAN_RESEED_ROWS = 4

#: Default bound on the number of distance entries (rows x codes) computed at once by ``nearest``.
#: 2**19 float32 entries = 2 MiB: one chunk of distances stays in a core's L2 cache while it is written by the
#: GEMM and read back by the search for its minimum, which is several times faster than streaming a larger
#: block through memory (see docs/performance.md for the measurements behind this choice).
DEFAULT_CHUNK_ELEMENTS = 1 << 19


@dataclass
class CodebookConfig:
    """The settings of a :class:`Codebook` (see its docstring for each), declared once: every codebook-based
    quantizer (:class:`~hiervq.quantize.VectorQuantizer`, :class:`~hiervq.quantize.ResidualVQ`,
    :class:`~hiervq.quantize.MultiScaleVQ`, :class:`~hiervq.quantize.ProgressiveQuantizer`) takes one as
    ``codebook=`` or the same settings as keywords (:meth:`resolve`), and forwards it to its codebooks unchanged;
    the model configs' quantizer blocks inherit these fields, so their flat keys (``model.quantizer.ema_decay``)
    are these."""

    ema_decay: float | None = 0.99
    init: str = "data"
    kmeans_iters: int = 10
    dead_threshold: float | None = 2.0
    dead_window: int = 10
    reseed: str = "sample"
    init_after: int = 0
    cosine: bool = False
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that is out of range (the one place these rules are
        written: the codebook checks its settings with it, a model config its quantizer block's)."""
        if self.init not in INITS:
            raise ValueError(f"unknown codebook init {self.init!r}; choose one of {', '.join(INITS)}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None (null), got {self.ema_decay}")
        if self.dead_threshold is not None and self.dead_threshold < 0:
            raise ValueError(f"dead_threshold must be >= 0 (0 or None: no dead-code reset), got {self.dead_threshold}")
        if self.dead_window < 1:
            raise ValueError(f"dead_window must be >= 1, got {self.dead_window}")
        check_init_after(self.init, self.init_after)
        if self.reseed not in RESEEDS:
            raise ValueError(f"unknown reseed {self.reseed!r}; choose one of {', '.join(RESEEDS)}")
        if isinstance(self.chunk_elements, bool) or not isinstance(self.chunk_elements, int) or self.chunk_elements < 1:
            raise ValueError(f"chunk_elements must be an integer >= 1, got {self.chunk_elements!r}")

    def codebook_config(self) -> CodebookConfig:
        """These settings as a plain :class:`CodebookConfig` (from a subclass, e.g. a model's quantizer block)."""
        return CodebookConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CodebookConfig)})

    @classmethod
    def resolve(cls, config: CodebookConfig | None, options: dict[str, Any], owner: str,
                unsupported: tuple[str, ...] = (), base: CodebookConfig | None = None) -> CodebookConfig:
        """What a quantizer's codebooks get: ``config`` (``None``: ``base``, or the defaults) with the keyword
        ``options`` (settings of this class) replaced, validated. A keyword that is no setting is a ``TypeError``
        as for any constructor; a setting of ``unsupported`` (those the ``owner`` layer does not implement) other
        than its default a ``ValueError``."""
        unknown = sorted(set(options) - set(CODEBOOK_OPTIONS))
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        config = (base or cls()) if config is None else config.codebook_config()
        config = dataclasses.replace(config, **options)
        for name in unsupported:
            if getattr(config, name) != getattr(cls, name):
                raise ValueError(f"{owner} does not support the codebook setting {name} (got {getattr(config, name)!r})")
        config.validate()
        return config


#: the names of the :class:`CodebookConfig` settings
CODEBOOK_OPTIONS = tuple(f.name for f in dataclasses.fields(CodebookConfig))


def check_init_after(init: str, init_after: int) -> None:
    """Raise ``ValueError`` unless ``init_after`` (warm-up forwards before the codebook init) fits ``init``."""
    if isinstance(init_after, bool) or not isinstance(init_after, int) or init_after < 0:
        raise ValueError(f"init_after must be an integer >= 0, got {init_after!r}")
    if init_after and init in DATA_FREE_INITS:
        raise ValueError(f"init_after delays a data/kmeans initialisation; init {init!r} needs no data (use 0)")


@functools.lru_cache(maxsize=64)
def lane_width(codebook_size: int) -> int:
    """Codes per lane of the two-stage minimum search in :func:`nearest_code` (0: plain ``argmin``).

    A divisor B of K that is a multiple of 8 (a SIMD register of float32) and close to sqrt(2 K), with at least
    two lanes; 0 when K has no such divisor.
    """
    target = math.sqrt(2.0 * codebook_size)
    best = 0
    for b in range(8, codebook_size // 2 + 1, 8):
        if codebook_size % b == 0 and (best == 0 or abs(math.log(b / target)) < abs(math.log(best / target))):
            best = b
    return best


def _argmin_rows(d: torch.Tensor, lanes: int) -> torch.Tensor:
    """``d.argmin(1)`` for a contiguous (n, K) block, ties aside, in two cheap stages.

    ``torch.argmin`` along a row is a scalar loop, while an elementwise ``amin`` across rows is vectorised. So
    ``d`` is viewed as (n, G, B) (G groups of B = ``lanes`` codes): the minimum over the G groups of each of the B
    lanes is one vectorised pass, ``argmin`` over the B lane minima gives the winning lane j, and ``argmin`` over
    the G entries of lane j gives the group g; the code is g * B + j. Only n * (B + G) entries go through a
    scalar ``argmin`` instead of n * K. Among exactly equal distances the lowest lane wins (not always the lowest
    index).
    """
    n, k = d.shape
    if lanes <= 0 or n == 0:
        return d.argmin(1)
    groups = k // lanes
    d3 = d.view(n, groups, lanes)
    lane = d3.amin(1).argmin(1)
    column = d3.gather(2, lane.view(n, 1, 1).expand(n, groups, 1)).view(n, groups)
    return column.argmin(1).mul_(lanes).add_(lane)


@torch.no_grad()
def nearest_code(z: torch.Tensor, codes: torch.Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Index (N,) of the nearest row of ``codes`` (K, D) for each row of ``z`` (N, D), Euclidean.

    Computed in row chunks so that at most ``chunk_elements`` distances exist at once (never the whole
    N x K matrix for large inputs; one buffer is reused for every chunk). The |z|^2 term is dropped since it
    does not change the argmin, |c|^2 - 2 z.c is one ``mm`` with -2 c and one in-place add of |c|^2, and the
    minimum is found by the two-stage search of :func:`_argmin_rows`. Returns the same codes as a brute-force search, except that among codes at
    exactly the same distance another one may be chosen.
    """
    if z.dtype != codes.dtype:
        z = z.to(codes.dtype)
    # -2 c (exact: a power of two) as the GEMM's right factor, and |c|^2 added by one in-place pass over the block:
    # ``addmm(|c|^2, z, c^T, alpha=-2, out=buffer)`` would first copy the broadcast |c|^2 into the whole block and
    # then have the GEMM read it back (beta = 1), ~13 % more time per block on the CPU than ``mm`` then ``add_``
    codes_t = codes.mul(-2.0).t()
    codes_sq = codes.pow(2).sum(1)
    n, k = z.shape[0], codes.shape[0]
    lanes = lane_width(k)
    chunk = max(1, chunk_elements // k)
    if n <= chunk:
        return _argmin_rows(torch.mm(z, codes_t).add_(codes_sq), lanes)
    out = torch.empty(n, dtype=torch.long, device=z.device)
    buffer = torch.empty(chunk, k, dtype=codes.dtype, device=z.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        d = torch.mm(z[start:stop], codes_t, out=buffer[: stop - start]).add_(codes_sq)
        out[start:stop] = _argmin_rows(d, lanes)
    return out


class CodeSearch(nn.Module):
    """What every codebook of K codes of dimension D offers for search, given ``weight`` (K, D), ``dim``,
    ``codebook_size`` and ``chunk_elements``: distances, the chunked nearest-code search and lookup."""

    weight: torch.Tensor
    dim: int
    codebook_size: int
    chunk_elements: int

    def distances(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Squared Euclidean distances (N, K) from rows of ``z`` (N, D) to every code (differentiable).

        ``weight`` (K, D) replaces the codes, e.g. a copy that later in-place updates will not touch.
        """
        w = self.weight if weight is None else weight
        return (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ w.t() + w.pow(2).sum(1)).clamp_min(0.0)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index (N,) of the nearest code for each row of ``z`` (N, D); see :func:`nearest_code`."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"nearest expects (N, {self.dim}) vectors, got {tuple(z.shape)}")
        return nearest_code(z, self.weight.detach(), self.chunk_elements)

    def lookup(self, indices: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Code vectors (*indices.shape, D) for integer ``indices`` of any shape.

        ``check=False`` skips the range check (two passes over the indices and, on a GPU, a synchronisation);
        only for indices known to be valid, e.g. those returned by :meth:`nearest`.
        """
        check_indices(indices, self.codebook_size, (torch.int64, torch.int32), values=check)  # what F.embedding takes
        return F.embedding(indices, self.weight)


class Codebook(CodeSearch):
    """K code vectors of dimension D with nearest-neighbour search, EMA updates and dead-code reset.

    Args:
        codebook_size: K, the number of codes.
        dim: D, the dimension of a code vector.
        config: the settings below as a :class:`CodebookConfig` (``None``: the defaults); any of them may also be
            given as a keyword (``Codebook(8, 4, init="random")``), which replaces the config's.
        eps: Laplace smoothing of the EMA cluster sizes.

    Settings (:class:`CodebookConfig`):
        ema_decay: decay of the exponential moving averages that update the codes (``None``: the codes
            are an ``nn.Parameter`` learned through the codebook loss instead).
        init: ``"data"`` (random encoder outputs of the first training batch), ``"kmeans"`` (a few
            Lloyd iterations started from those), ``"random"`` (unit Gaussian, no data needed) or ``"uniform"``
            (uniform on [-1/K, 1/K], no data needed: the original VQ-VAE implementations' codebook, near zero, so
            that at first every code is about as near to an encoder output as its direction decides).
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        init_after: warm-up before a data/k-means initialisation: the first ``init_after`` training forwards do
            not quantize (the owning layer passes its input through, see :meth:`warming_up`) and the codebook is
            initialised from the encoder outputs of training forward ``init_after + 1`` (``0``: the first one).
        dead_threshold: a code whose assignments summed over the last ``dead_window`` training batches
            stay below this is re-seeded from recent encoder outputs (``0`` or ``None`` disables it).
        dead_window: the number of recent batches over which usage is summed.
        reseed: how a dead code is re-seeded from the encoder outputs of the current batch: ``"sample"`` (one
            random output) or ``"mean"`` (the mean of :data:`MEAN_RESEED_ROWS` outputs: a random one and its
            nearest neighbours among them, see :meth:`reset_dead`).
        cosine: keep code vectors on the unit sphere (inputs must be l2-normalised by the caller).
        chunk_elements: at most this many distances (rows x K) are held at once by :meth:`nearest`.

    Buffers (all in ``state_dict``, so training resumes exactly): ``weight`` (K, D) (a parameter when
    ``ema_decay is None``), ``ema_count`` (K,), ``ema_sum`` (K, D), ``initialized``, ``usage_window``
    (dead_window, K), ``age`` (K,) batches since a code was last (re)seeded, ``reset_count`` (K,), and with
    ``init_after > 0`` ``warmup_seen``, the warm-up forwards counted so far (absent otherwise, so checkpoints of
    models without warm-up keep their keys).

    Under ``torch.distributed`` the statistics are summed over all ranks and every decision that needs
    randomness (data init, re-seeding) is taken on rank 0 and broadcast, so every rank holds the same codebook.
    """

    def __init__(self, codebook_size: int, dim: int, config: CodebookConfig | None = None, eps: float = 1e-5,
                 **options: Any) -> None:
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"Codebook needs codebook_size >= 1 and dim >= 1, got K={codebook_size}, D={dim}")
        config = CodebookConfig.resolve(config, options, "Codebook")
        self.codebook_size = codebook_size
        self.dim = dim
        self.eps = eps
        self.ema_decay = ema_decay = config.ema_decay
        self.init = init = config.init
        self.kmeans_iters = config.kmeans_iters
        self.dead_threshold = float(config.dead_threshold or 0.0)
        self.dead_window = dead_window = config.dead_window
        self.cosine = cosine = config.cosine
        self.chunk_elements = config.chunk_elements
        self.init_after = init_after = config.init_after
        self.reseed = config.reseed

        if init == "uniform":
            weight = (torch.rand(codebook_size, dim) * 2 - 1) / codebook_size
        else:
            weight = torch.randn(codebook_size, dim)
        if cosine:
            weight = F.normalize(weight, dim=-1)
        if ema_decay is None:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", weight.clone())
        self.register_buffer("initialized", torch.tensor(init in DATA_FREE_INITS))
        self.register_buffer("usage_window", torch.zeros(dead_window, codebook_size))
        self.register_buffer("window_pos", torch.zeros((), dtype=torch.long))
        self.register_buffer("age", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("reset_count", torch.zeros(codebook_size, dtype=torch.long))
        if init_after > 0:
            self.register_buffer("warmup_seen", torch.zeros((), dtype=torch.long))
        self.last_counts: torch.Tensor | None = None  # (K,) counts of the last update, summed over ranks

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay is not None

    def extra_repr(self) -> str:
        return (
            f"K={self.codebook_size}, D={self.dim}, ema_decay={self.ema_decay}, init={self.init!r}, "
            f"dead_threshold={self.dead_threshold}, dead_window={self.dead_window}, cosine={self.cosine}"
            + (f", init_after={self.init_after}" if self.init_after else "")
            + (f", reseed={self.reseed!r}" if self.reseed != "sample" else "")
        )

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def warming_up(self) -> bool:
        """Call once per training forward while the codebook is not initialised: True if this forward is a
        warm-up step (one of the first ``init_after``; it is counted), False if it is the one that initialises.

        During warm-up the owning layer passes its input through unquantized with zero commitment/codebook loss
        and no codebook update (no EMA, no usage window). Under ``torch.distributed`` rank 0's answer is
        broadcast, so all ranks initialise in the same forward (and run its collectives together).
        """
        if self.init_after <= 0 or bool(self.initialized):
            return False
        flag = (self.warmup_seen < self.init_after).to(torch.long).reshape(1)
        qdist.broadcast(flag)
        if bool(flag):
            self.warmup_seen += 1
            return True
        return False

    @torch.no_grad()
    def initialize(self, z: torch.Tensor) -> None:
        """Initialise the codes from encoder outputs ``z`` (N, D) (rows from all ranks are used).

        ``data``: K random rows (with replacement plus a little noise when N < K); ``kmeans``: then a few
        Lloyd iterations. Under ``torch.distributed`` the first rows of every rank are gathered, every rank runs
        the same draws on them (so the ranks' random-number streams stay in step, which exact resume relies on)
        and rank 0's result is broadcast: the decision is taken once, and every rank holds it bit for bit.
        """
        if self.init in DATA_FREE_INITS:
            self.initialized.fill_(True)
            return
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        sample = qdist.gather_rows(z.detach().to(dtype), max_rows=max(4 * self.codebook_size, 1024))
        counts = torch.ones(self.codebook_size, device=self.weight.device)
        if self.init == "kmeans" and sample.shape[0] > self.codebook_size:
            w, counts = self._kmeans(sample, self._kmeans_pp(sample, self.codebook_size), self.kmeans_iters)
        else:
            w = self._sample_rows(sample, self.codebook_size)
        w = w.to(self.weight.dtype).contiguous()
        counts = counts.to(self.weight.device, torch.float32).contiguous()
        qdist.broadcast(w)
        qdist.broadcast(counts)
        self._set_codes(torch.ones(self.codebook_size, dtype=torch.bool, device=w.device), w, counts)
        self.initialized.fill_(True)

    def _sample_rows(self, z: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` rows of ``z`` drawn without replacement when possible, jittered duplicates otherwise."""
        if z.shape[0] >= n:
            idx = torch.randperm(z.shape[0])[:n].to(z.device)
            return z[idx]
        idx = torch.randint(z.shape[0], (n,)).to(z.device)
        rows = z[idx]
        noise = 0.01 * (z.std() if z.numel() > 1 else torch.tensor(1.0, device=z.device))
        rows = rows + noise * torch.randn_like(rows)
        rows[: z.shape[0]] = z  # every distinct row is kept once, exactly
        return rows

    @staticmethod
    def _kmeans_pp(z: torch.Tensor, k: int) -> torch.Tensor:
        """k-means++ seeding: each new center drawn with probability proportional to its squared distance
        to the nearest center chosen so far (O(k * N * D), no N x K matrix)."""
        n = z.shape[0]
        first = int(torch.randint(n, (1,)))
        centers = [first]
        d2 = (z - z[first]).pow(2).sum(1)
        for _ in range(1, k):
            total = d2.sum()
            if total <= 0:
                nxt = int(torch.randint(n, (1,)))
            else:
                nxt = int(torch.multinomial((d2 / total).cpu().double(), 1))
            centers.append(nxt)
            d2 = torch.minimum(d2, (z - z[nxt]).pow(2).sum(1))
        return z[torch.tensor(centers, device=z.device)].clone()

    def _kmeans(self, z: torch.Tensor, centers: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts = torch.ones(self.codebook_size, device=z.device)
        for _ in range(iters):
            if self.cosine:
                centers = F.normalize(centers, dim=-1)
            idx = nearest_code(z, centers, self.chunk_elements)
            counts = torch.bincount(idx, minlength=self.codebook_size).float()
            sums = torch.zeros_like(centers).index_add_(0, idx, z)
            filled = counts > 0
            centers = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None], centers)
        if self.cosine:
            centers = F.normalize(centers, dim=-1)
        return centers, counts.clamp_min(1.0)

    def _set_codes(self, mask: torch.Tensor, vectors: torch.Tensor, counts: torch.Tensor) -> None:
        """Overwrite the codes selected by ``mask`` (K,) with ``vectors`` (M, D) and reset their state."""
        vectors = vectors.to(self.weight.dtype)
        if self.cosine:
            vectors = F.normalize(vectors, dim=-1)
        self.weight.data[mask] = vectors
        if self.uses_ema:
            counts = counts.to(self.ema_count.dtype)
            self.ema_count[mask] = counts
            self.ema_sum[mask] = vectors * counts[:, None]
        self.usage_window[:, mask] = 0.0
        self.age[mask] = 0

    # ------------------------------------------------------------------ training-time update
    @torch.no_grad()
    def update(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor | None = None) -> int:
        """One training step of codebook maintenance; returns how many codes were re-seeded.

        ``z`` (N, D) are the (detached) encoder outputs and ``indices`` (N,) their codes; ``counts`` (K,), if
        given, is ``bincount(indices, minlength=K)`` already computed by the caller (it is not modified). Counts
        and sums are accumulated with ``bincount``/``index_add_`` (no N x K one-hot), summed over ranks in one
        collective, then used for the EMA update (with Laplace smoothing) and the dead-code window; the summed
        counts stay available as :attr:`last_counts` (K,).
        """
        z = z.detach()
        if z.dtype != self.weight.dtype:
            z = z.to(self.weight.dtype)
        if counts is None:
            counts = torch.bincount(indices, minlength=self.codebook_size)
        counts = counts.to(self.weight.dtype, copy=True)
        if self.uses_ema:
            sums = torch.zeros_like(self.weight).index_add_(0, indices, z)
            qdist.all_reduce_sum(counts, sums)
            self._ema_update(counts, sums)
        else:
            qdist.all_reduce_sum(counts)
        self.last_counts = counts
        return self._track_usage(counts, z)

    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        d = self.ema_decay
        self.ema_count.mul_(d).add_(counts, alpha=1.0 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1.0 - d)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.codebook_size * self.eps) * n
        if self.cosine:
            self.weight.copy_(F.normalize(self.ema_sum / smoothed[:, None], dim=-1))
        else:
            torch.div(self.ema_sum, smoothed[:, None], out=self.weight)

    def _track_usage(self, counts: torch.Tensor, z: torch.Tensor) -> int:
        self.usage_window[int(self.window_pos) % self.dead_window] = counts
        self.window_pos += 1
        self.age += 1
        if self.dead_threshold <= 0:
            return 0
        return self.reset_dead(z)

    @torch.no_grad()
    def dead_codes(self) -> torch.Tensor:
        """Boolean mask (K,) of codes whose usage over the last ``dead_window`` batches is below threshold.

        A code is only judged once it has been observed for a full window since its last (re)seeding.
        """
        full = self.age >= self.dead_window
        return full & (self.usage_window.sum(0) < self.dead_threshold)

    @torch.no_grad()
    def reset_dead(self, z: torch.Tensor) -> int:
        """Re-seed dead codes from rows of ``z`` (N, D) (this batch's encoder outputs); returns their number.

        ``reseed="sample"``: each dead code becomes one random row (without replacement when N allows).
        ``reseed="mean"``: each dead code becomes the mean of m = :data:`MEAN_RESEED_ROWS` rows: an anchor row
        drawn at random (without replacement when N allows) and its m - 1 nearest other rows (Euclidean) among
        the candidate rows, so the new code sits inside a dense part of the batch, not on a lone output. The
        candidate rows are up to ``m * n_dead`` random rows of ``z`` (all of them when N is smaller), so a
        neighbourhood covers a share of the batch comparable to a code's.
        Either way the code's EMA state is reset with the new vector (count 1, sum = the vector).

        Under ``torch.distributed`` the usage window is global (all-reduced counts), so every rank finds the
        same dead codes; each rank contributes its random candidate rows, every rank draws the new codes from the
        gathered rows (keeping the random-number streams in step) and rank 0's draw is broadcast, so the
        re-seeded codes are identical everywhere.
        """
        dead = self.dead_codes()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        pool = z.detach().to(self.weight.dtype)
        per_rank = n_dead * (MEAN_RESEED_ROWS if self.reseed == "mean" else 1)
        if self.reseed == "mean" or qdist.is_distributed():
            if pool.shape[0] > per_rank:
                pool = pool[torch.randperm(pool.shape[0])[:per_rank].to(pool.device)]
            pool = qdist.gather_rows(pool, max_rows=per_rank)
        if self.reseed == "mean":
            new = self._mean_rows(pool, n_dead, MEAN_RESEED_ROWS).contiguous()
        else:
            new = self._sample_rows(pool, n_dead).contiguous()
        qdist.broadcast(new)
        self._set_codes(dead, new, torch.ones(n_dead, device=new.device))
        self.reset_count[dead] += 1
        return n_dead

    def _mean_rows(self, pool: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """``n`` vectors, each the mean of an anchor row of ``pool`` (P, D) and its ``m - 1`` nearest other rows.

        Anchors are drawn without replacement when P >= n (otherwise with replacement, and the repeats get the
        small jitter of :meth:`_sample_rows`). The anchor is its own nearest row (distance 0) and is always in
        its group; with P < m every group is the whole pool.
        """
        p = pool.shape[0]
        m = min(m, p)
        if p >= n:
            anchors = torch.randperm(p)[:n].to(pool.device)
        else:
            anchors = torch.cat([torch.arange(p), torch.randint(p, (n - p,))]).to(pool.device)
        pool_sq = pool.pow(2).sum(1)
        groups = torch.empty(n, m, dtype=torch.long, device=pool.device)
        chunk = max(1, self.chunk_elements // max(p, 1))
        for start in range(0, n, chunk):
            a = pool[anchors[start : start + chunk]]
            d = torch.addmm(pool_sq, a, pool.t(), alpha=-2.0)  # |a - x|^2 - |a|^2
            d.scatter_(1, anchors[start : start + chunk, None], float("-inf"))  # the anchor itself comes first
            groups[start : start + chunk] = d.topk(m, dim=1, largest=False).indices
        rows = pool[groups].mean(1)
        if p < n:
            noise = 0.01 * (pool.std() if pool.numel() > 1 else torch.tensor(1.0, device=pool.device))
            rows[p:] += noise * torch.randn_like(rows[p:])
        return rows

    @property
    def bits(self) -> float:
        """Bits to store one code index, log2 K."""
        return code_bits(self.codebook_size)
