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


def describe_processes(info: DistInfo, batch_size: int) -> str:
    """The line a torchrun training logs once at its start: processes, backend, device and the global batch."""
    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "no process group"
    return (f"torchrun: {info.world_size} processes ({backend}, {info.device.type}); train.batch_size {batch_size} per "
            f"process, a global batch of {batch_size * info.world_size} images per step")


#: the environment variable that names the device of the commands without a config of their own (eval, code
#: extraction, sampling); ``cpu`` when unset
DEVICE_ENV = "HIERVQ_DEVICE"


def env_device() -> str:
    """The device named by ``$HIERVQ_DEVICE`` (default ``cpu``)."""
    return os.environ.get(DEVICE_ENV, "cpu")


def resolve_device(name: str, local_rank: int = 0, key: str = "train.device") -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else ``cpu``; anything else as given, when this
    machine has it (else a :class:`~hiervq.errors.ConfigError` naming the config ``key``)."""
    from ..errors import ConfigError

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}: {name!r} is not a device (auto, cpu, cuda, cuda:N, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {name!r}, but no CUDA GPU is visible here; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: {name!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{key}: {name!r}, but MPS is not available here; use auto or cpu")
    elif device.type != "cpu":  # xpu, ...: when torch has the backend and says it is available
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if not callable(available) or not available():
            raise ConfigError(f"{key}: {name!r} is not available here (auto, cpu, cuda, cuda:N or mps)")
    return device


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
