"""The codebook: K code vectors of dimension D, how they are found, initialised, updated and re-seeded."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as qdist

INITS = ("data", "kmeans", "random")

#: Default bound on the number of distance entries (rows x codes) computed at once by ``nearest``.
#: 2**21 float32 entries = 8 MiB, small enough to stay in cache-friendly territory on a CPU.
DEFAULT_CHUNK_ELEMENTS = 1 << 21


@torch.no_grad()
def nearest_code(z: torch.Tensor, codes: torch.Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Index (N,) of the nearest row of ``codes`` (K, D) for each row of ``z`` (N, D), Euclidean.

    Computed in row chunks so that at most ``chunk_elements`` distances exist at once (never the whole
    N x K matrix for large inputs); the |z|^2 term is dropped since it does not change the argmin, and
    |c|^2 - 2 z.c is one fused ``addmm``.
    """
    if z.dtype != codes.dtype:
        z = z.to(codes.dtype)
    codes_t = codes.t()
    codes_sq = codes.pow(2).sum(1)
    n, k = z.shape[0], codes.shape[0]
    chunk = max(1, chunk_elements // k)
    if n <= chunk:
        return torch.addmm(codes_sq, z, codes_t, alpha=-2.0).argmin(1)
    out = torch.empty(n, dtype=torch.long, device=z.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[start:stop] = torch.addmm(codes_sq, z[start:stop], codes_t, alpha=-2.0).argmin(1)
    return out


class Codebook(nn.Module):
    """K code vectors of dimension D with nearest-neighbour search, EMA updates and dead-code reset.

    Args:
        num_codes: K, the number of codes.
        dim: D, the dimension of a code vector.
        ema_decay: decay of the exponential moving averages that update the codes (``None``: the codes
            are an ``nn.Parameter`` learned through the codebook loss instead).
        init: ``"data"`` (random encoder outputs of the first training batch), ``"kmeans"`` (a few
            Lloyd iterations started from those) or ``"random"`` (unit Gaussian, no data needed).
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        dead_threshold: a code whose assignments summed over the last ``dead_window`` training batches
            stay below this is re-seeded from recent encoder outputs (``0`` or ``None`` disables it).
        dead_window: the number of recent batches over which usage is summed.
        cosine: keep code vectors on the unit sphere (inputs must be l2-normalised by the caller).
        eps: Laplace smoothing of the EMA cluster sizes.
        chunk_elements: at most this many distances (rows x K) are held at once by :meth:`nearest`.

    Buffers (all in ``state_dict``, so training resumes exactly): ``weight`` (K, D) (a parameter when
    ``ema_decay is None``), ``ema_count`` (K,), ``ema_sum`` (K, D), ``initialized``, ``usage_window``
    (dead_window, K), ``age`` (K,) batches since a code was last (re)seeded, ``reset_count`` (K,).

    Under ``torch.distributed`` the statistics are summed over all ranks and every decision that needs
    randomness (data init, re-seeding) is taken on rank 0 and broadcast, so every rank holds the same codebook.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        ema_decay: float | None = 0.99,
        init: str = "data",
        kmeans_iters: int = 10,
        dead_threshold: float | None = 2.0,
        dead_window: int = 10,
        cosine: bool = False,
        eps: float = 1e-5,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"Codebook needs num_codes >= 1 and dim >= 1, got K={num_codes}, D={dim}")
        if init not in INITS:
            raise ValueError(f"unknown codebook init {init!r}; choose one of {', '.join(INITS)}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
        if dead_window < 1:
            raise ValueError(f"dead_window must be >= 1, got {dead_window}")
        self.num_codes = num_codes
        self.dim = dim
        self.ema_decay = ema_decay
        self.init = init
        self.kmeans_iters = kmeans_iters
        self.dead_threshold = float(dead_threshold or 0.0)
        self.dead_window = dead_window
        self.cosine = cosine
        self.eps = eps
        self.chunk_elements = chunk_elements

        weight = torch.randn(num_codes, dim)
        if cosine:
            weight = F.normalize(weight, dim=-1)
        if ema_decay is None:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", weight.clone())
        self.register_buffer("initialized", torch.tensor(init == "random"))
        self.register_buffer("usage_window", torch.zeros(dead_window, num_codes))
        self.register_buffer("window_pos", torch.zeros((), dtype=torch.long))
        self.register_buffer("age", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("reset_count", torch.zeros(num_codes, dtype=torch.long))

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay is not None

    def extra_repr(self) -> str:
        return (
            f"K={self.num_codes}, D={self.dim}, ema_decay={self.ema_decay}, init={self.init!r}, "
            f"dead_threshold={self.dead_threshold}, dead_window={self.dead_window}, cosine={self.cosine}"
        )

    # ------------------------------------------------------------------ search
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

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (*indices.shape, D) for integer ``indices`` of any shape."""
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"code indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_codes):
            raise IndexError(
                f"code index out of range: got values in [{int(indices.min())}, {int(indices.max())}], "
                f"codebook has {self.num_codes} codes"
            )
        return F.embedding(indices, self.weight)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def initialize(self, z: torch.Tensor) -> None:
        """Initialise the codes from encoder outputs ``z`` (N, D) (rows from all ranks are used).

        ``data``: K random rows (with replacement plus a little noise when N < K); ``kmeans``: then a few
        Lloyd iterations. Decided on rank 0 and broadcast.
        """
        if self.init == "random":
            self.initialized.fill_(True)
            return
        sample = qdist.gather_rows(z.detach().float(), max_rows=max(4 * self.num_codes, 1024))
        w = torch.empty_like(self.weight)
        counts = torch.ones(self.num_codes, device=w.device)
        if qdist.rank() == 0:
            if self.init == "kmeans" and sample.shape[0] > self.num_codes:
                w, counts = self._kmeans(sample, self._kmeans_pp(sample, self.num_codes), self.kmeans_iters)
            else:
                w.copy_(self._sample_rows(sample, self.num_codes))
        qdist.broadcast(w)
        qdist.broadcast(counts)
        self._set_codes(torch.ones(self.num_codes, dtype=torch.bool, device=w.device), w, counts)
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
        counts = torch.ones(self.num_codes, device=z.device)
        for _ in range(iters):
            if self.cosine:
                centers = F.normalize(centers, dim=-1)
            idx = nearest_code(z, centers, self.chunk_elements)
            counts = torch.bincount(idx, minlength=self.num_codes).float()
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
    def update(self, z: torch.Tensor, indices: torch.Tensor) -> int:
        """One training step of codebook maintenance; returns how many codes were re-seeded.

        ``z`` (N, D) are the (detached) encoder outputs and ``indices`` (N,) their codes. Counts and sums are
        accumulated with ``bincount``/``index_add_`` (no N x K one-hot), summed over ranks, then used for the
        EMA update (with Laplace smoothing) and the dead-code window.
        """
        z = z.detach()
        if z.dtype != self.weight.dtype:
            z = z.to(self.weight.dtype)
        counts = torch.bincount(indices, minlength=self.num_codes).to(self.weight.dtype)
        if self.uses_ema:
            sums = torch.zeros_like(self.weight).index_add_(0, indices, z)
            qdist.all_reduce_sum(counts, sums)
            self._ema_update(counts, sums)
        else:
            qdist.all_reduce_sum(counts)
        return self._track_usage(counts, z)

    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        d = self.ema_decay
        self.ema_count.mul_(d).add_(counts, alpha=1.0 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1.0 - d)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        w = self.ema_sum / smoothed[:, None]
        if self.cosine:
            w = F.normalize(w, dim=-1)
        self.weight.copy_(w)

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
        """Re-seed dead codes from rows of ``z`` (N, D) (rank 0 picks, then broadcast); returns their number."""
        dead = self.dead_codes()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        new = torch.empty(n_dead, self.dim, device=self.weight.device, dtype=self.weight.dtype)
        if qdist.rank() == 0:
            new.copy_(self._sample_rows(z, n_dead))
        qdist.broadcast(new)
        self._set_codes(dead, new, torch.ones(n_dead, device=new.device))
        self.reset_count[dead] += 1
        return n_dead

    @property
    def bits(self) -> float:
        """Bits to store one code index, log2 K."""
        return math.log2(self.num_codes)
