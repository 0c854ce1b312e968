"""Probability tables that the encoder and the decoder compute bit for bit alike.

The encoder gets every position's logits from one pass of a prior over the whole code map; the decoder has to run
the prior position by position (it does not know the later codes), on other batch sizes, thread counts or
machines. Their float64 logits then agree only to ~1e-13, not bit for bit. The tables are therefore integers
derived from the logits by a rounding step that both sides are certain to take alike:

1. ``y = logits * 64 + phase / 8`` (float64; the logits rounded on a grid of 1/64 nat, shifted by one of 8
   *phases*) and ``q = floor(y)``;
2. ``d = max(q) - q`` (an exact integer) and the weight of a code is ``WEIGHTS[min(d, D)]``, an integer table of
   ``2**32 * exp(-d / 64)`` computed in integer arithmetic from one hard-coded constant (``WEIGHTS[D] = 0``);
3. the weights go to ``constriction``'s categorical model, which normalises and quantises them to its 24-bit
   fixed point deterministically (every code keeps a nonzero probability).

Only step 1 sees the floating-point noise. The encoder checks that every logit that can matter (``d <= D + 2``)
is more than :data:`MARGIN` (~1e-9 nat, about 10,000 times the float64 disagreement) away from a rounding
boundary, and otherwise tries the next phase. A value that far from a boundary rounds the same way on both sides,
so the decoder's tables equal the encoder's exactly. Rounding the logits to 1/64 nat costs about 1e-5 bits per
code.

A logit lands within the margin of a boundary with probability ~2**-23, so one phase for a whole image fails
somewhere once an image has millions of logits (all 8 phases fail for ~67M). Format version 3 therefore chooses
the phase per *block* of :func:`block_size` consecutive positions of a level (in coding order), at most
:data:`BLOCK_LOGITS` logits each (all 8 phases fail in one block with probability ~4e-8), and codes the phases in
the stream; versions 1 and 2 stored one phase per image in the header.
"""

from __future__ import annotations

import torch

GRID = 64  # logits are rounded to multiples of 1 / GRID nat
PHASES = 8  # rounding phases the encoder may choose from (3 bits each)
MARGIN = 2.0**-24  # in grid units (~9e-10 nat): the least distance of a logit from a rounding boundary
BLOCK_LOGITS = 1 << 20  # format version 3: a rounding phase per block of at most this many logits (or 1 position)
_R = 18160753814917686420  # round(exp(-1 / 64) * 2**64)


def _weights() -> list[int]:
    table, t = [], 1 << 64
    while True:
        table.append((t + (1 << 31)) >> 32)
        if table[-1] == 0:
            return table
        t = (t * _R + (1 << 63)) >> 64


WEIGHTS = _weights()  # WEIGHTS[d] = round(2**32 * exp(-d / 64)) for d < D, WEIGHTS[D] = 0
D = len(WEIGHTS) - 1
_TABLE = torch.tensor(WEIGHTS, dtype=torch.float64)  # integers < 2**33: exact in float64


def _rounded(logits: torch.Tensor, phase: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dtype != torch.float64:
        raise TypeError(f"probability tables need float64 logits, got {logits.dtype}")
    phase = torch.as_tensor(phase, dtype=torch.float64, device=logits.device)
    y = logits * GRID + (phase / PHASES)[..., None]
    return y, torch.floor(y)


def weights(logits: torch.Tensor, phase: torch.Tensor | int, chunk: int = 1 << 20) -> torch.Tensor:
    """Integer code weights (..., K) as float64 for logits (..., K) float64 and a phase 0..7 (a tensor broadcast
    over the leading dimensions, e.g. one per image or per position). Computed in place, ``chunk`` logits at a
    time (a 65,536 x 1,024 table in 0.5 s instead of 1.2-2.9 s on 2 cores); C-contiguous: the tables go to
    constriction as numpy arrays, which it reads as C-ordered (a strided view would hand positions each other's
    weights)."""
    if logits.dtype != torch.float64:
        raise TypeError(f"probability tables need float64 logits, got {logits.dtype}")
    k = logits.shape[-1]
    rows = logits.reshape(-1, k)
    shift = torch.as_tensor(phase, dtype=torch.float64, device=logits.device) / PHASES
    shift = shift.expand(logits.shape[:-1]).reshape(-1, 1)
    out = torch.empty(rows.shape, dtype=torch.float64, device=logits.device)
    table = _TABLE.to(logits.device)
    step = max(1, chunk // max(1, k))
    for s in range(0, rows.shape[0], step):
        y = rows[s : s + step] * GRID  # a fresh chunk: the steps below work in place
        y += shift[s : s + step]
        y.floor_()
        torch.sub(y.amax(-1, keepdim=True), y, out=y)  # d = max(q) - q, an exact integer
        y.clamp_(max=D)
        torch.index_select(table, 0, y.long().reshape(-1), out=out[s : s + step].view(-1))
    return out.view(logits.shape)


def robust(logits: torch.Tensor, phase: int) -> torch.Tensor:
    """Whether the tables of ``logits`` (..., K) at ``phase`` are safe from floating-point noise: (...) bool,
    True where every logit that can change a weight is more than :data:`MARGIN` from a rounding boundary."""
    y, q = _rounded(logits, phase)
    frac = y - q
    near = torch.minimum(frac, 1 - frac) <= MARGIN
    relevant = q.amax(-1, keepdim=True) - q <= D + 2
    return ~(near & relevant).any(-1) & torch.isfinite(logits).all(-1)


def block_size(k: int) -> int:
    """Positions per rounding-phase block of a level whose tables have ``k`` codes (format version 3)."""
    return max(1, BLOCK_LOGITS // k)
