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
        # the inner ReLU overwrites conv1's output (a convolution's backward needs its input, not its output)
        return x + self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True))


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


class ConvStack(nn.Module):
    """A sequence of layers (``self.net``) whose training forward can be compiled (:func:`compile_stacks`)."""

    net: nn.Sequential
    compiled = False  # set by compile_stacks: the forward runs compiled code while autograd records

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled and torch.is_grad_enabled():
            return _run_compiled(self.net, x)
        return self.net(x)


def _run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


_compiled_run = None  # torch.compile(_run), made on first use: one function for every stack (and every copy of one)


def _run_compiled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    global _compiled_run
    if _compiled_run is None:
        _compiled_run = torch.compile(_run, dynamic=False)
    return _compiled_run(net, x)


def compile_stacks(module: nn.Module) -> int:
    """``torch.compile`` the training forward of every :class:`Encoder`, :class:`Decoder` and :class:`Upsample` in
    ``module``; returns how many were switched on. Only their forwards while autograd records use the compiled
    code (static shapes: the training batches); evaluation, frozen stages and ``no_grad`` calls run eagerly, so they
    cost no extra compilations. The modules, their parameters and the state dict are unchanged (a deep copy stays
    compiled, on its own weights). The convolutions stay the same library calls; the compiler fuses the ReLUs,
    residual additions and their backward passes around them. Needs a working C++ compiler (TorchInductor on the
    CPU)."""
    count = 0
    for sub in module.modules():
        if isinstance(sub, ConvStack) and not sub.compiled:
            sub.compiled = True
            count += 1
    if count:
        # every stack goes through one compiled function, whose graphs (one per stack layout and input shape) count
        # against one per-function limit (8 by default); past it torch falls back to eager code
        # imported here: a measured start-up cost (about 2.5 s, paid only with train.compile)
        from torch._dynamo import config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    return count


class Encoder(ConvStack):
    """Downsamples by ``factor`` with stride-2 4x4 convs, then a 3x3 conv and ``blocks`` blocks.

    (B, in_channels, H, W) -> (B, channels, H / factor, W / factor). Intermediate stride-2 convs use
    ``channels // 2`` channels, as in VQ-VAE-2. ``half_first``: the first stride-2 conv outputs ``channels // 2``
    and the later ones ``channels`` (the VQ-VAE-2 reference implementation's layout); by default the last one
    outputs ``channels`` and the earlier ones ``channels // 2``. The two agree for ``factor`` 4; for ``factor`` 2
    ``half_first`` halves the width of the strided conv and of the 3x3 conv's input.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        factor: int,
        blocks: int = 2,
        res_channels: int = 32,
        block: str = "res",
        half_first: bool = False,
    ) -> None:
        super().__init__()
        steps = log2_factor(factor)
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(steps):
            full = i > 0 if half_first else i == steps - 1
            out = channels if full else max(channels // 2, 1)
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, channels, 3, padding=1))
        layers.append(make_blocks(block, channels, blocks, res_channels))
        if block == "res":
            layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)


class Decoder(ConvStack):
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


class Upsample(ConvStack):
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


class Standardize(nn.Module):
    """Per-channel standardisation with running statistics: (B, C, H, W) -> (x - mean) / std, and back.

    The statistics are the exact mean and variance (over batch and positions) of every input this module has seen
    while it was training with gradients enabled (a cumulative average, so the order of batches does not matter
    once they are all seen); in eval mode, or under ``torch.no_grad()`` (frozen stages, evaluation), they stay
    fixed. They are buffers, so they are saved and loaded with the model. Under torch.distributed the per-batch
    sums are all-reduced, so every rank holds the same statistics. Before any update the module is the identity.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(channels, dtype=torch.float64))
        self.register_buffer("var", torch.ones(channels, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold the per-channel statistics of ``x`` (B, C, H, W) into the running ones (Chan's parallel update)."""
        flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
        stats = torch.cat([torch.tensor([flat.shape[1]], dtype=torch.float64, device=x.device), flat.sum(1),
                           flat.pow(2).sum(1)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        n, total, squares = stats[0], stats[1 : 1 + x.shape[1]], stats[1 + x.shape[1] :]
        mean_b = total / n
        var_b = (squares / n - mean_b.pow(2)).clamp_min(0)
        # the first batch's statistics as they are, later ones merged; selected without asking count == 0 on
        # the host (no synchronisation with an accelerator in every training forward)
        first = self.count == 0
        m = self.count
        delta = mean_b - self.mean
        merged_var = (m * self.var + n * var_b + delta.pow(2) * m * n / (m + n)) / (m + n)
        self.mean.copy_(torch.where(first, mean_b, self.mean + delta * n / (m + n)))
        self.var.copy_(torch.where(first, var_b, merged_var))
        self.count.add_(n)

    def _scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (1, C, 1, 1) in ``x``'s dtype; 0 and 1 before any update (then the module is the identity:
        (x - 0) / 1 and y * 1 + 0 are x and y exactly), chosen on the device without a host synchronisation."""
        shape = (1, -1, 1, 1)
        seen = self.count > 0
        mean = torch.where(seen, self.mean, 0.0)
        std = torch.where(seen, (self.var + self.eps).sqrt(), 1.0)
        return mean.to(x.dtype).view(shape), std.to(x.dtype).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.update(x)
        mean, std = self._scale(x)
        return (x - mean) / std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Back to the input's scale: y * std + mean."""
        mean, std = self._scale(y)
        return y * std + mean


def conv2d_shifted(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A same-padded, stride-1 K x K convolution (K odd, zero padding, one group) of ``x`` (B, C, H, W) with
    ``weight`` (O, C, K, K): K * K matrix products with shifted views of the flattened padded input, accumulated in a
    fixed order, image by image. No im2col buffer, so on the CPU in float64 (which has no oneDNN kernel) it runs
    about 2x faster than ``F.conv2d`` (3x3, 64 channels, a 256x256 map); the result agrees with it to ~1e-13.
    Inference only (no autograd: run it under ``torch.no_grad()``). Returns (B, O, H, W)."""
    b, c, h, w = x.shape
    out_ch, k = weight.shape[0], weight.shape[-1]
    p = k // 2
    wp = w + 2 * p  # output position (i, j) sits at i * wp + j of a padded row-major map
    flat = (F.pad(x, (p, p, p, p)) if p else x).reshape(b, c, -1)
    n = (h - 1) * wp + w  # the positions up to the last valid one
    taps = weight.permute(2, 3, 0, 1)  # (K, K, O, C)
    out = x.new_empty(b, out_ch, h * wp)
    for i in range(b):
        acc = out[i, :, :n]
        if bias is not None:
            acc.copy_(bias[:, None].expand(out_ch, n))
        for dy in range(k):
            for dx in range(k):
                s = dy * wp + dx
                if bias is None and dy == 0 and dx == 0:
                    torch.mm(taps[0, 0], flat[i, :, s : s + n], out=acc)
                else:
                    acc.addmm_(taps[dy, dx], flat[i, :, s : s + n])
    return out.reshape(b, out_ch, h, wp)[..., :w]


class ShiftedConv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` whose float64 CPU forward without autograd is :func:`conv2d_shifted` (otherwise the
    usual convolution). Built by :func:`shifted_convs` for the codec's float64 priors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64 and x.device.type == "cpu" and not torch.is_grad_enabled():
            return conv2d_shifted(x, self.weight, self.bias)
        return super().forward(x)


def shifted_convs(module: nn.Module) -> nn.Module:
    """``module`` with every same-padded, stride-1 square convolution (odd K, 1x1 included, zero padding, one group,
    no dilation) replaced in place by a :class:`ShiftedConv2d` holding the same parameters (so the state dict, and
    the codec's model id, are unchanged)."""
    for name, child in list(module.named_modules()):
        if type(child) is not nn.Conv2d:
            continue
        k = child.kernel_size
        if (k[0] != k[1] or k[0] % 2 == 0 or child.stride != (1, 1) or child.dilation != (1, 1)
                or child.groups != 1 or child.padding != (k[0] // 2, k[0] // 2) or child.padding_mode != "zeros"):
            continue
        new = ShiftedConv2d(child.in_channels, child.out_channels, k, padding=child.padding, bias=child.bias is not None,
                            device="meta")
        new.weight, new.bias = child.weight, child.bias
        parent, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attr, new)
    return module
