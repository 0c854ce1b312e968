"""Process-group set-up for torchrun / DistributedDataParallel (PyTorch's own engine, nothing home-made).

``torchrun --nproc-per-node N -m hiervq train CONFIG`` sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT;
:func:`setup` reads them, starts the process group (NCCL on GPUs, gloo on CPUs) and picks the device.
"""

from __future__ import annotations

import inspect
import os

import torch
import torch.distributed as dist
from torch import nn

from ..tasks import DEVICE_ENV, DistInfo, env_device, resolve_device  # noqa: F401 - re-exported


def describe_processes(info: DistInfo, batch_size: int) -> str:
    """The line a torchrun training logs once at its start: processes, backend, device and the global batch."""
    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "no process group"
    return (f"torchrun: {info.world_size} processes ({backend}, {info.device.type}); train.batch_size {batch_size} per "
            f"process, a global batch of {batch_size * info.world_size} images per step")


def setup(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    started = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        started = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, started)


def cleanup(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when several processes train (``model`` itself otherwise).

    Buffers are not re-broadcast from rank 0 before every forward: codebooks keep themselves identical on every
    rank (all-reduced statistics, decisions taken once and broadcast), and broadcasting them would only cost time.
    """
    if not info.enabled:
        return model
    kwargs: dict = {"device_ids": [info.device.index] if info.device.type == "cuda" else None}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters:
        kwargs["forward_sync_buffers"] = False  # newer torch: buffers are still synced once, at wrap time
    else:
        kwargs["broadcast_buffers"] = False
    return nn.parallel.DistributedDataParallel(model, **kwargs)
