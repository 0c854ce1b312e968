"""Process-group set-up for torchrun / DistributedDataParallel (PyTorch's own engine, nothing home-made).

``torchrun --nproc-per-node N -m hiervq train CONFIG`` sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT;
:func:`setup` reads them, starts the process group (NCCL on GPUs, gloo on CPUs) and picks the device.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


#: the environment variable that names the device of the commands without a config of their own (eval, code
#: extraction, sampling); ``cpu`` when unset
DEVICE_ENV = "HIERVQ_DEVICE"


def env_device() -> str:
    """The device named by ``$HIERVQ_DEVICE`` (default ``cpu``)."""
    return os.environ.get(DEVICE_ENV, "cpu")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


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
