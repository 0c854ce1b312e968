"""The ``priors:`` section of a run config: defaults of the priors fitted to a run's codes (``hiervq prior``).

It registers the section for :class:`~hiervq.train.config.RunConfig` through :func:`hiervq.tasks.register_section`
(no import of the training layer); :mod:`hiervq.train.priors` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..tasks import TrainConfig, register_section

PRIOR_LEVEL_KEYS = ("class_conditional", "model", "train")


@register_section("priors")
@dataclass
class PriorsConfig:
    """``priors:``: defaults of the priors fitted to this run's codes (``hiervq prior RUN``, see
    :mod:`hiervq.train.priors`); a plain ``hiervq train`` ignores it.

    Attributes:
        class_conditional: condition every prior on the class label (``--class-conditional`` overrides).
        model: the prior's architecture keys (for a PixelCNN: channels, layers, kernel_size, cond_channels,
            cond_blocks, head_channels, dropout); K, the level above and the classes follow from the run.
        train: optimisation of the prior (the keys of ``train:``; phases and amp are not used).
        levels: optional per-level overrides, bottom first: mappings with any of ``class_conditional``,
            ``model``, ``train`` (merged over the keys above).
        code_batch_size: images per batch when the codes are extracted.
    """

    class_conditional: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    levels: list[dict[str, Any]] | None = None
    code_batch_size: int = 256

    def validate(self) -> None:
        for i, entry in enumerate(self.levels or []):
            if not isinstance(entry, dict):
                raise ValueError(f"levels.{i} must be a mapping with keys {', '.join(PRIOR_LEVEL_KEYS)}")
            unknown = sorted(set(entry) - set(PRIOR_LEVEL_KEYS))
            if unknown:
                raise ValueError(f"levels.{i}: unknown key(s) {', '.join(unknown)} (known: {', '.join(PRIOR_LEVEL_KEYS)})")
        if self.code_batch_size < 1:
            raise ValueError("code_batch_size must be >= 1")
