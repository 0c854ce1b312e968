"""Stacked VQ-VAEs (SVQVAE) and the dual-stack hierarchical SVQVAE.

A *stack* is a chain of *stages*; every stage is a :class:`~hiervq.models.HierarchicalVQVAE` (VQ-VAE-2 block,
2 levels by default) whose *joint latent* concat(q_bottom, up(q_top)) -- (B, sum of level dims, h_0, w_0), e.g.
2k channels at the bottom grid -- is the next stage's input "image". Stage 1 reads images in [0, 1]; the later
stages read latents as they are (``raw_input``) and are trained to reconstruct them (MSE). Stages are trained one
after another with the earlier ones frozen: these are the model's training phases ``stage1``, ``stage2``, ...
(the Trainer freezes everything else and keeps frozen codebooks still).

The dual-stack model (:class:`DualStackVQVAE`) trains a second stack after the first: its input is
concat(stage 1's joint latent, bilinear-up(stack 1's final latent)) at stage 1's grid, and it compresses that to
the same final grid. Downstream heads see concat(stack 1's final latent, stack 2's final latent).

Shapes for the published set-up (512x512x3, stages with levels at 1/4 and 1/8 of their input, k = 2):
512x512x3 -> 2k x 128 x 128 -> 2k x 32 x 32 -> 2k x 8 x 8; the dual model's features are 4k x 8 x 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..pretrained import register
from ..quantize.common import batch_stats
from .base import DiscreteAutoencoder, LevelInfo, Output, QuantizerConfig, image_sides
from .hierarchical import HierarchicalConfig, HierarchicalVQVAE, LevelConfig


def _default_stage_levels() -> list[LevelConfig]:
    return [LevelConfig(downsample=4, codebook_size=512, dim=2), LevelConfig(downsample=2, codebook_size=512, dim=2)]


@dataclass
class StageConfig:
    """One stage of a stack: a :class:`HierarchicalVQVAE` without its input shape (which the stack sets).

    The defaults are the published stage: bottom level at 1/4 of the stage input, top at 1/8, EMA codebooks of
    K = 512 codes of dimension k = 2 (``dim``), 128 hidden channels, residual blocks; its joint latent has 2k
    channels at 1/4 of the input resolution. ``input_norm``: stages that read a latent standardise it per channel
    (running statistics of the training inputs, stored with the model) and reconstruct the standardised latent, so
    the small-scale channels (e.g. the upsampled top level) are not dropped by an unweighted MSE.
    """

    channels: int = 128
    blocks: int = 2
    res_channels: int = 32
    block: str = "res"
    mode: str = "conditioned"
    levels: list[LevelConfig] = field(default_factory=_default_stage_levels)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    input_norm: bool = False

    def hierarchical(self, image_size: list[int], in_channels: int, raw_input: bool) -> HierarchicalConfig:
        """The :class:`HierarchicalConfig` of this stage for an input of ``in_channels`` x ``image_size`` (the
        published stage's widths, ``hiervq``; the stack sets the memory layout of all its stages at once)."""
        return HierarchicalConfig(
            image_size=list(image_size), in_channels=in_channels, raw_input=raw_input, channels=self.channels,
            blocks=self.blocks, res_channels=self.res_channels, block=self.block, mode=self.mode,
            levels=[LevelConfig(**vars(lv)) for lv in self.levels], quantizer=QuantizerConfig(**vars(self.quantizer)),
            input_norm=self.input_norm and raw_input, widths="hiervq", channels_last=False,
        )

    def validate(self) -> None:
        if not self.levels:
            raise ValueError("a stage needs at least one level")
        for lv in self.levels:
            lv.validate()
        self.quantizer.validate()
        total = math.prod(lv.downsample for lv in self.levels)
        self.hierarchical([total, total], 1, False).validate()

    @property
    def out_channels(self) -> int:
        """Channels of the stage's joint latent (the sum of the level dims, 2k by default)."""
        return sum(lv.dim for lv in self.levels)


def stage_inputs(image_size: int | list[int], in_channels: int, stage: StageConfig, count: int) -> list[tuple[list[int], int]]:
    """(input sides, input channels) of each of ``count`` stages; raises ValueError naming a stage that does not fit."""
    if count < 1:
        raise ValueError(f"a stack needs at least one stage, got {count}")
    if not stage.levels:
        raise ValueError("a stage needs at least one level")
    sides, channels = image_sides(image_size), in_channels
    if len(sides) != 2:
        raise ValueError(f"image_size must be one side or two sides, got {image_size}")
    total = math.prod(lv.downsample for lv in stage.levels)
    out = []
    for i in range(count):
        if any(s % total or s < total for s in sides):
            raise ValueError(
                f"stage {i + 1} gets a {sides[0]}x{sides[1]} input, not a multiple of its downsampling {total}; "
                f"use fewer stages, smaller downsampling or a larger image_size"
            )
        out.append((list(sides), channels))
        sides = [s // stage.levels[0].downsample for s in sides]
        channels = stage.out_channels
    return out


@dataclass
class StackedConfig:
    """Configuration of :class:`StackedVQVAE`: ``stages`` stages built from the ``stage`` template.

    ``raw_input``: the stack's input is a latent (e.g. stack 2 of the dual model), not images in [0, 1].
    ``channels_last``: keep weights and activations in the channels-last memory layout (same results, up to
    float rounding; 2-3x faster convolutions on CPUs).
    """

    image_size: int | list[int] = 64
    in_channels: int = 3
    raw_input: bool = False
    stages: int = 3
    stage: StageConfig = field(default_factory=StageConfig)
    channels_last: bool = True

    def validate(self) -> None:
        self.stage.validate()
        stage_inputs(self.image_size, self.in_channels, self.stage, self.stages)


def _stats_of(codes: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Batch statistics of a frozen level's codes (what a quantizer's forward reports, without resets)."""
    return batch_stats(torch.bincount(codes.reshape(-1), minlength=codebook_size))


@register("svqvae")
class StackedVQVAE(DiscreteAutoencoder):
    """Stacked VQ-VAE: ``stages`` :class:`HierarchicalVQVAE` stages, each compressing the previous one's joint latent.

    * ``forward(x)``: runs the stages up to the deepest one the current phase trains; earlier stages are frozen
      (codes looked up, no codebook update, no gradients). Loss = the trained stages' own losses (each stage
      reconstructs its own input). ``recon`` is the image rebuilt from the deepest stage run, through the decoders
      of the stages below it. ``codes``/``stats`` cover the levels of the stages run (a prefix of :attr:`levels`).
    * ``encode(x)``: codes of every level of every stage, stage by stage, bottom first within a stage.
    * ``decode(codes)``: the image from the last stage's codes (the others are not needed).
    * ``features(x)``: the last stage's joint latent (B, sum of level dims, h, w), e.g. 2k x 8 x 8.
    * phases: ``stage1``, ``stage2``, ... (one stage each, the earlier ones frozen) and ``all`` (every stage at once,
      each on its own loss).

    >>> m = StackedVQVAE(StackedConfig(image_size=64, stage=StageConfig(channels=8, levels=[
    ...     LevelConfig(2, 16, 2), LevelConfig(2, 16, 2)])))
    >>> [lv.grid for lv in m.levels], tuple(m.features(torch.rand(1, 3, 64, 64)).shape)
    ([(32, 32), (16, 16), (16, 16), (8, 8), (8, 8), (4, 4)], (1, 4, 8, 8))
    """

    Config = StackedConfig

    def __init__(self, config: StackedConfig) -> None:
        super().__init__(config)
        config.validate()
        self.stages = nn.ModuleList()
        for i, (sides, channels) in enumerate(stage_inputs(config.image_size, config.in_channels, config.stage, config.stages)):
            raw = config.raw_input or i > 0
            stage = config.stage.hierarchical(sides, channels, raw)
            stage.channels_last = config.channels_last
            self.stages.append(HierarchicalVQVAE(stage))
        if config.channels_last:
            self.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    # ---------------------------------------------------------------- description
    @property
    def levels(self) -> list[LevelInfo]:
        return [lv for stage in self.stages for lv in stage.levels]

    def quantizers(self) -> list:
        return [vq for stage in self.stages for vq in stage.quantizers()]

    @property
    def any_size(self) -> bool:
        return all(stage.any_size for stage in self.stages)

    @property
    def downsampling(self) -> int:
        need, factor = 1, 1
        for stage in self.stages:
            need = max(need, factor * stage.downsampling)
            factor *= stage.config.levels[0].downsample
        return need

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of :meth:`features` for a ``config.image_size`` input."""
        last = self.stages[-1]
        return (sum(lv.dim for lv in last.config.levels), *last.levels[0].grid)

    def phases(self) -> list[str]:
        return [f"stage{i + 1}" for i in range(len(self.stages))] + ["all"]

    def active_stages(self) -> list[int]:
        """Indices of the stages the current phase trains."""
        if self.phase == "all":
            return list(range(len(self.stages)))
        return [int(self.phase[len("stage"):]) - 1]

    def trainable_modules(self) -> list[nn.Module]:
        return [self.stages[i] for i in self.active_stages()]

    # ---------------------------------------------------------------- computation
    @staticmethod
    def _frozen(stage: HierarchicalVQVAE, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Codes and joint latent of a frozen stage: no gradients, no codebook update, whatever the mode."""
        with torch.no_grad():
            codes = stage.codes_of(h)
            latent = stage.joint_latent([vq.decode(c) for vq, c in zip(stage.vq, codes)])
        return codes, latent

    def encode_latents(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Codes of every level (stage by stage) and each stage's joint latent; no gradients, no codebook update."""
        self.check_images(x)
        codes, latents, h = [], [], self._layout(x)
        for stage in self.stages:
            c, h = self._frozen(stage, h)
            codes += c
            latents.append(h)
        return codes, latents

    def decode_from(self, index: int, recon: torch.Tensor) -> torch.Tensor:
        """Carry ``recon``, a reconstruction of stage ``index``'s input, down through the decoders of the stages
        below to the stack's input scale (images on [0, 1] for an image stack)."""
        for stage in reversed(self.stages[:index]):
            recon = stage.decode_latent(recon)
        return recon

    def forward(self, x: torch.Tensor) -> Output:
        self.check_images(x)
        active = self.active_stages()
        last = max(active)
        h = x = self._layout(x)
        codes, stats, outs = [], [], []
        for i, stage in enumerate(self.stages[: last + 1]):
            if i in active:
                out = stage(h.detach() if i > 0 else h)
                outs.append(out)
                codes += out.codes
                stats += out.stats
                h = out.latent
            else:
                c, h = self._frozen(stage, h)
                codes += c
                stats += [_stats_of(ci, lv.codebook_size) for ci, lv in zip(c, stage.levels)]
        recon = outs[-1].recon
        if last > 0:
            with torch.no_grad():
                recon = self.decode_from(last, recon)
        losses = {k: sum(o.losses[k] for o in outs) for k in outs[-1].losses}
        return Output(recon=recon, loss=sum(o.loss for o in outs), losses=losses, codes=codes, stats=stats, latent=h)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Codes per level of every stage: [stage 1 bottom, stage 1 top, stage 2 bottom, ...]."""
        self.check_values(x)
        return self.encode_latents(x)[0]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The input (images on [0, 1]) rebuilt from the last stage's codes (the last ``len(levels)`` of ``codes``)."""
        if len(codes) != len(self.levels):
            raise ValueError(f"expected codes for {len(self.levels)} levels, got {len(codes)}")
        last = self.stages[-1]
        own = codes[len(codes) - len(last.vq):]
        latent = last.joint_latent([vq.decode(c) for vq, c in zip(last.vq, own)])
        return self.decode_from(len(self.stages) - 1, last.decode_latent(latent))

    def latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's joint latent, first to last, through the quantizers' forward (straight-through
        gradients; in training mode the codebooks update, so freeze with ``eval()``)."""
        self.check_images(x)
        out, h = [], self._layout(x)
        for stage in self.stages:
            h = stage.features(h)
            out.append(h)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's joint latent (B, sum of level dims, h, w): what a classifier sees."""
        return self.latents(x)[-1]


@dataclass
class DualStackConfig:
    """Configuration of :class:`DualStackVQVAE`: ``stack1`` and ``stack2`` stages built from the ``stage`` template.

    Stack 2 starts at stage 1's grid and must end on the same grid as stack 1 (e.g. 3 + 2 stages of /4).
    ``channels_last``: see :class:`StackedConfig`.
    """

    image_size: int | list[int] = 64
    in_channels: int = 3
    stack1: int = 3
    stack2: int = 2
    stage: StageConfig = field(default_factory=StageConfig)
    channels_last: bool = True

    def first(self) -> StackedConfig:
        return StackedConfig(self.image_size, self.in_channels, False, self.stack1, self.stage, self.channels_last)

    def second(self) -> StackedConfig:
        sides = [s // self.stage.levels[0].downsample for s in image_sides(self.image_size)]
        return StackedConfig(sides, 2 * self.stage.out_channels, True, self.stack2, self.stage, self.channels_last)

    def validate(self) -> None:
        self.first().validate()
        self.second().validate()
        f = self.stage.levels[0].downsample
        end1 = [s // f**self.stack1 for s in image_sides(self.image_size)]
        end2 = [s // f ** (self.stack2 + 1) for s in image_sides(self.image_size)]
        if end1 != end2:
            raise ValueError(
                f"stack 1 ends on a {end1[0]}x{end1[1]} grid but stack 2 on {end2[0]}x{end2[1]}; "
                "stack2 must be stack1 - 1 stages so both end on the same grid"
            )


@register("svqvae-dual")
class DualStackVQVAE(DiscreteAutoencoder):
    """Dual-stack hierarchical SVQVAE: stack 1 (an :class:`StackedVQVAE` on images) and stack 2 (on
    concat(stage 1's joint latent, bilinear-up(stack 1's final latent))).

    * phases: ``stack1.stage1`` .. ``stack1.stageN``, ``stack2.stage1`` .. (one stage each, everything else
      frozen), ``stack1`` / ``stack2`` (a whole stack at once) and ``all``.
    * ``features(x)``: concat(stack 1's final latent, stack 2's final latent), (B, 4k, h, w).
    * ``encode``: stack 1's codes then stack 2's; ``decode``: the image from stack 2's last stage (through stack 2's
      decoders and stage 1's decoder); ``recon`` of the forward is from the deepest stage the phase trains.
    """

    Config = DualStackConfig

    def __init__(self, config: DualStackConfig) -> None:
        super().__init__(config)
        config.validate()
        self.stack1 = StackedVQVAE(config.first())
        # stack 2 draws its initial weights from a fork of the RNG: building the dual model leaves the global RNG
        # where building stack 1 alone leaves it, so stack 1 trains exactly like an SVQVAE alone with that seed
        with torch.random.fork_rng(devices=[]):
            self.stack2 = StackedVQVAE(config.second())

    # ---------------------------------------------------------------- description
    @property
    def levels(self) -> list[LevelInfo]:
        return self.stack1.levels + self.stack2.levels

    def quantizers(self) -> list:
        return self.stack1.quantizers() + self.stack2.quantizers()

    @property
    def downsampling(self) -> int:
        return max(self.stack1.downsampling, self.config.stage.levels[0].downsample * self.stack2.downsampling)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c, h, w = self.stack1.latent_shape
        return (c + self.stack2.latent_shape[0], h, w)

    def phases(self) -> list[str]:
        per_stage = [f"{name}.{p}" for name, stack in (("stack1", self.stack1), ("stack2", self.stack2))
                     for p in stack.phases() if p != "all"]
        return per_stage + ["stack1", "stack2", "all"]

    def set_phase(self, name: str) -> None:
        super().set_phase(name)
        stack, _, sub = name.partition(".")
        self.stack1.set_phase(sub if stack == "stack1" and sub else "all")
        self.stack2.set_phase(sub if stack == "stack2" and sub else "all")

    def _trains(self) -> tuple[bool, bool]:
        """Whether the current phase trains stack 1 and stack 2."""
        return self.phase == "all" or self.phase.startswith("stack1"), self.phase == "all" or self.phase.startswith("stack2")

    def trainable_modules(self) -> list[nn.Module]:
        one, two = self._trains()
        return (self.stack1.trainable_modules() if one else []) + (self.stack2.trainable_modules() if two else [])

    # ---------------------------------------------------------------- computation
    @staticmethod
    def second_input(first: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
        """Stack 2's input: concat(stage 1's joint latent, bilinear-up(stack 1's final latent)) at stage 1's grid."""
        up = F.interpolate(final, size=first.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([first, up], 1)

    def _image_from_second(self, recon: torch.Tensor) -> torch.Tensor:
        """Image from a reconstruction of stack 2's input: its stage-1-latent half through stage 1's decoder."""
        c1 = self.config.stage.out_channels
        return self.stack1.stages[0].decode_latent(recon[:, :c1])

    def forward(self, x: torch.Tensor) -> Output:
        one, two = self._trains()
        if not two:
            return self.stack1(x)
        if one:
            out1 = self.stack1(x)
            with torch.no_grad():  # stack 2 reads stack 1's latents as fixed inputs (codes of the eval forward)
                latents = self.stack1.encode_latents(x)[1]
            codes1, stats1 = out1.codes, out1.stats
        else:
            out1 = None
            codes1, latents = self.stack1.encode_latents(x)
            stats1 = [_stats_of(c, lv.codebook_size) for c, lv in zip(codes1, self.stack1.levels)]
        out2 = self.stack2(self.second_input(latents[0], latents[-1]))
        with torch.no_grad():
            recon = self._image_from_second(out2.recon)
        outs = [o for o in (out1, out2) if o is not None]
        losses = {k: sum(o.losses[k] for o in outs) for k in out2.losses}
        return Output(
            recon=recon, loss=sum(o.loss for o in outs), losses=losses, codes=codes1 + out2.codes,
            stats=stats1 + out2.stats, latent=out2.latent,
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Codes of stack 1's levels then stack 2's (stage by stage, bottom first)."""
        self.stack1.check_values(x)
        codes1, latents = self.stack1.encode_latents(x)
        return codes1 + self.stack2.encode(self.second_input(latents[0], latents[-1]))

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Images on [0, 1] from stack 2's last-stage codes (the last levels of ``codes``)."""
        if len(codes) != len(self.levels):
            raise ValueError(f"expected codes for {len(self.levels)} levels, got {len(codes)}")
        n1 = len(self.stack1.levels)
        return self._image_from_second(self.stack2.decode(codes[n1:]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """concat(stack 1's final latent, stack 2's final latent): (B, 4k, h, w) with the default stages."""
        latents = self.stack1.latents(x)
        second = self.stack2.features(self.second_input(latents[0], latents[-1]))
        return torch.cat([latents[-1], second], 1)
