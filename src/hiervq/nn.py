"""Convolutional building blocks: residual and ConvNeXt blocks, down/up-sampling encoder and decoder stacks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = ("res", "convnext")


class ResBlock(nn.Module):
    """VQ-VAE residual block: x + conv1x1(relu(conv3x3(relu(x)))), with a ``hidden``-channel bottleneck.

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt inverted bottleneck: depthwise 7x7, LayerNorm over channels, pointwise x4 expand, GELU,
    pointwise back, learnable per-channel layer scale, residual. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, expansion: int = 4, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, expansion * channels)
        self.pw2 = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


def make_blocks(kind: str, channels: int, count: int, res_channels: int) -> nn.Sequential:
    """``count`` blocks of ``kind`` (``"res"`` or ``"convnext"``) at ``channels`` channels."""
    if kind == "res":
        return nn.Sequential(*[ResBlock(channels, res_channels) for _ in range(count)])
    if kind == "convnext":
        return nn.Sequential(*[ConvNeXtBlock(channels) for _ in range(count)])
    raise ValueError(f"unknown block {kind!r}; choose one of {', '.join(BLOCKS)}")


def log2_factor(factor: int) -> int:
    """log2 of a down/up-sampling factor, which must be a power of two (1 allowed)."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"sampling factors must be powers of two, got {factor}")
    return int(math.log2(factor))


class Encoder(nn.Module):
    """Downsamples by ``factor`` with stride-2 4x4 convs, then a 3x3 conv and ``blocks`` blocks.

    (B, in_channels, H, W) -> (B, channels, H / factor, W / factor). Intermediate stride-2 convs use
    ``channels // 2`` channels, as in VQ-VAE-2.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        factor: int,
        blocks: int = 2,
        res_channels: int = 32,
        block: str = "res",
    ) -> None:
        super().__init__()
        steps = log2_factor(factor)
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(steps):
            out = channels if i == steps - 1 else max(channels // 2, 1)
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, channels, 3, padding=1))
        layers.append(make_blocks(block, channels, blocks, res_channels))
        if block == "res":
            layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """A 3x3 conv to ``channels``, ``blocks`` blocks, then upsampling by ``factor`` with transposed 4x4 convs.

    (B, in_channels, h, w) -> (B, out_channels, h * factor, w * factor). ``up_blocks`` > 0 adds that many blocks
    after every intermediate upsampling step (at ``channels // 2`` channels): capacity at the higher resolutions,
    where the VQ-VAE-2 decoder has only one transposed conv per step.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        factor: int,
        blocks: int = 2,
        res_channels: int = 32,
        block: str = "res",
        up_blocks: int = 0,
    ) -> None:
        super().__init__()
        steps = log2_factor(factor)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        layers.append(make_blocks(block, channels, blocks, res_channels))
        if block == "res":
            layers.append(nn.ReLU(inplace=True))
        c = channels
        for i in range(steps):
            last = i == steps - 1
            out = out_channels if last else max(channels // 2, 1)
            layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU(inplace=True))
                if up_blocks:
                    layers.append(make_blocks(block, out, up_blocks, res_channels))
                    if block == "res":
                        layers.append(nn.ReLU(inplace=True))
            c = out
        if steps == 0:
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Upsample(nn.Module):
    """Learned upsampling of a feature map by ``factor`` keeping its channels: transposed 4x4 stride-2 convs.

    (B, C, h, w) -> (B, C, h * factor, w * factor); the identity when ``factor == 1``.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        steps = log2_factor(factor)
        layers: list[nn.Module] = []
        for i in range(steps):
            layers.append(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1))
            if i < steps - 1:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
