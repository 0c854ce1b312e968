"""Classification from codes with no extra training: Bayes rule on code counts collected on a training set.

For a code sequence z_1..z_L (a PQ-VAE sequence, or any model's codes flattened in raster order):

* ``independent``: P(c | z) ∝ P(c) prod_l P(z_l | c)
* ``conditional`` (1-step): P(c | z) ∝ P(c) P(z_1 | c) prod_{l>1} P(z_l | z_{l-1}, c)

with P(z_l = k | c) = (n_{c,l,k} + alpha) / (n_{c,l} + alpha K) and
P(z_l = k | z_{l-1} = j, c) = (n_{c,l,j,k} + alpha) / (n_{c,l,j} + alpha K) (Laplace smoothing); the position l is
part of every count. Pair counts are kept sparse (sorted keys), so K^2 tables are never allocated.
Prediction with the first n codes only uses the first n factors, giving accuracy as a function of n in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METHODS = ("independent", "conditional")


def as_sequence(codes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """(N, L) int64 codes from a (N, L) tensor or a list of per-level arrays (N, ...) (flattened, concatenated)."""
    if isinstance(codes, torch.Tensor):
        codes = [codes]
    return torch.cat([c.reshape(c.shape[0], -1).long() for c in codes], 1)


@dataclass
class CodeCountBayes:
    """Code-count Bayes classifier (see the module docstring).

    Args:
        codebook_size: K, codes take values 0..K-1.
        num_classes: C.
        alpha: Laplace smoothing added to every count.
    """

    codebook_size: int
    num_classes: int
    alpha: float = 1.0

    def fit(self, codes: torch.Tensor | list[torch.Tensor], labels: torch.Tensor) -> CodeCountBayes:
        """Count codes (N, L) per class, position and (for ``conditional``) previous code; returns self."""
        z = as_sequence(codes)
        y = torch.as_tensor(labels).long()
        n, length = z.shape
        k, c = self.codebook_size, self.num_classes
        if y.shape != (n,):
            raise ValueError(f"expected {n} labels, got shape {tuple(y.shape)}")
        if n == 0:
            raise ValueError("no training codes")
        if int(z.min()) < 0 or int(z.max()) >= k:
            raise ValueError(f"codes must lie in [0, {k}), got [{int(z.min())}, {int(z.max())}]")
        if int(y.min()) < 0 or int(y.max()) >= c:
            raise ValueError(f"labels must lie in [0, {c}), got [{int(y.min())}, {int(y.max())}]")
        self.length = length
        self.class_counts = torch.bincount(y, minlength=c).double()  # (C,)
        pos = torch.arange(length)
        # unigram counts n[c, l, k]
        key = (y[:, None] * length + pos) * k + z
        self.unigram = torch.bincount(key.reshape(-1), minlength=c * length * k).double().view(c, length, k)
        # pair counts n[c, l, j, k] for l >= 1 (j = z_{l-1}), sparse: sorted unique keys and their counts
        if length > 1:
            pair = (((y[:, None] * length + pos[1:]) * k + z[:, :-1]) * k + z[:, 1:]).reshape(-1)
            self.pair_keys, counts = torch.unique(pair, return_counts=True)
            self.pair_counts = counts.double()
        else:
            self.pair_keys = torch.zeros(0, dtype=torch.long)
            self.pair_counts = torch.zeros(0, dtype=torch.float64)
        return self

    # ------------------------------------------------------------------ probabilities
    def log_prior(self) -> torch.Tensor:
        """log P(c) (C,), smoothed."""
        counts = self.class_counts + self.alpha
        return (counts / counts.sum()).log()

    def _pair_count(self, keys: torch.Tensor) -> torch.Tensor:
        if self.pair_keys.numel() == 0:
            return torch.zeros(keys.shape, dtype=torch.float64)
        pos = torch.searchsorted(self.pair_keys, keys).clamp_max(self.pair_keys.numel() - 1)
        return torch.where(self.pair_keys[pos] == keys, self.pair_counts[pos], torch.zeros((), dtype=torch.float64))

    def log_likelihood_terms(self, codes: torch.Tensor | list[torch.Tensor], method: str) -> torch.Tensor:
        """log of the factor each position contributes, per class: (M, L, C) for codes (M, L)."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        z = as_sequence(codes)
        m, length = z.shape
        if length > self.length:
            raise ValueError(f"codes have {length} positions, the classifier was fitted on {self.length}")
        k, c, a = self.codebook_size, self.num_classes, self.alpha
        z = z.clamp(0, k - 1)
        uni = self.unigram[:, :length]  # (C, L, K)
        denom = uni.sum(-1) + a * k  # (C, L) = n_{c,l} + alpha K
        pos = torch.arange(length)
        # independent: log (n[c, l, z_l] + a) / (n_{c,l} + a K)
        ind = uni[:, pos[None, :], z]  # (C, M, L)
        terms = ((ind + a) / denom[:, None, :]).log().permute(1, 2, 0).contiguous()  # (M, L, C)
        if method == "conditional" and length > 1:
            cls = torch.arange(c).view(c, 1, 1)
            keys = (((cls * self.length + pos[1:]) * k + z[None, :, :-1]) * k + z[None, :, 1:])  # (C, M, L-1)
            num = self._pair_count(keys) + a
            prev = uni[:, pos[:-1][None, :], z[:, :-1]]  # n[c, l-1, z_{l-1}]: how often j was followed by anything
            den = prev + a * k
            terms[:, 1:] = (num / den).log().permute(1, 2, 0)
        return terms

    def log_posterior(self, codes: torch.Tensor | list[torch.Tensor], method: str) -> torch.Tensor:
        """Unnormalised log P(c, z_1..z_n) for every prefix length n = 1..L: (M, L, C)."""
        return self.log_likelihood_terms(codes, method).cumsum(1) + self.log_prior()

    def predict(self, codes: torch.Tensor | list[torch.Tensor], method: str = "conditional",
                length: int | None = None) -> torch.Tensor:
        """Most probable class (M,) using the first ``length`` codes (all by default)."""
        post = self.log_posterior(codes, method)
        n = post.shape[1] if length is None else length
        if not 1 <= n <= post.shape[1]:
            raise ValueError(f"length must be in [1, {post.shape[1]}], got {n}")
        return post[:, n - 1].argmax(-1)

    def accuracy_by_prefix(self, codes: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
                           method: str) -> torch.Tensor:
        """Accuracy (L,) of predictions from the first n codes, for n = 1..L."""
        y = torch.as_tensor(labels).long()
        pred = self.log_posterior(codes, method).argmax(-1)  # (M, L)
        return (pred == y[:, None]).double().mean(0)
