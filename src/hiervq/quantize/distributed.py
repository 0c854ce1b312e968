"""Thin helpers around ``torch.distributed`` used by the codebook.

Every helper is a no-op in a single process, so the quantizer works the same with and without torchrun.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a default process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor in place over all ranks (one collective for all of them)."""
    if not is_distributed() or not tensors:
        return
    if len(tensors) == 1:
        dist.all_reduce(tensors[0])
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t).to(t.dtype))
        offset += n


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s value."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def gather_rows(x: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Rows of ``x`` (N, D) from every rank, concatenated, at most ``max_rows`` per rank.

    Ranks may hold different N; the result is identical on every rank.
    """
    x = x[:max_rows].contiguous()
    if not is_distributed():
        return x
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = x.new_zeros((longest, x.shape[1]))
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])
