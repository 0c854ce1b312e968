"""The ``classify:`` section of a run config: the label-fraction experiment (``hiervq classify``).

Registered with :class:`~hiervq.train.config.RunConfig` (it imports the training layer's config module for that;
:mod:`hiervq.train` imports nothing of :mod:`hiervq.classify`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..data import DataConfig
from ..tasks import register_section
from .mlp import ClassifierConfig

MODES = ("frozen", "finetune", "scratch")


@dataclass
class ClassifyRow:
    """One row of the table: which network the head sits on and how it is trained.

    Attributes:
        source: submodule of the pretrained model whose ``features(x)`` the head sees (``""`` = the whole model,
            ``stack1`` = the SVQVAE inside a dual-stack model).
        mode: ``frozen`` (the pretrained encoder is fixed, features computed once), ``finetune`` (the pretrained
            encoder trains end to end with the head), ``scratch`` (the same architecture freshly initialised and
            trained on the labeled subset only: it never sees the pretrained weights).
    """

    source: str = ""
    mode: Literal["frozen", "finetune", "scratch"] = "frozen"


@register_section("classify")
@dataclass
class ClassifyConfig:
    """Semi-supervised classification on a pretrained model's features with a fraction of the labels.

    Attributes:
        fractions: label fractions of the training split (stratified, at least one example per class, nested).
        models: table row name -> a :class:`ClassifyRow`, or just the submodule path of the pretrained model whose
            ``features(x)`` the classifier sees (``""`` = the whole model; e.g. ``stack1`` for the SVQVAE inside a
            dual-stack model), frozen (fine-tuned with ``head.finetune``).
        pixels_baseline: also train the same head on raw pixels (row ``pixels_mlp``).
        head: the classifier head and its optimisation.
        data: the labeled data (default: the run's ``data``; it needs a validation split, ``val_fraction``).
        subset_seed: seed of the label subsets (the same subsets for every model: paired comparisons).
        seed: seed of the heads' initialisation and batch order.
        seeds: repetitions at each fraction at or below ``scarce_fraction`` (one elsewhere): repetition ``r`` draws
            its label subset with ``subset_seed + r`` and initialises/batches with ``seed + r``, the same for every
            row; the table reports the mean and std over repetitions.
        feature_batch_size: images per batch when features are extracted.
    """

    fractions: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.1, 0.01])
    models: dict[str, ClassifyRow | str] = field(default_factory=lambda: {"model": ""})
    pixels_baseline: bool = True
    head: ClassifierConfig = field(default_factory=ClassifierConfig)
    data: DataConfig | None = None
    subset_seed: int = 0
    seed: int = 0
    seeds: int = 1
    scarce_fraction: float = 0.1
    feature_batch_size: int = 256

    def rows(self) -> dict[str, ClassifyRow]:
        """Every row as a :class:`ClassifyRow` (bare paths take ``head.finetune``'s mode)."""
        default = "finetune" if self.head.finetune else "frozen"
        return {name: row if isinstance(row, ClassifyRow) else ClassifyRow(row, default)
                for name, row in self.models.items()}

    def repetitions(self, fraction: float) -> int:
        """How many seeds the rows get at ``fraction``."""
        return self.seeds if fraction <= self.scarce_fraction + 1e-12 else 1

    def validate(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        if not self.models and not self.pixels_baseline:
            raise ValueError("nothing to classify: give models or pixels_baseline: true")
        if "pixels_mlp" in self.models:
            raise ValueError("the row name pixels_mlp is reserved for the raw-pixel baseline")
        if self.feature_batch_size < 1 or self.seeds < 1:
            raise ValueError("feature_batch_size and seeds must be >= 1")
