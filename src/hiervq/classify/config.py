"""The ``classify:`` section of a run config: the label-fraction experiment (``hiervq classify``).

Registered with :class:`~hiervq.train.config.RunConfig` (it imports the training layer's config module for that;
:mod:`hiervq.train` imports nothing of :mod:`hiervq.classify`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..data import DataConfig
from ..schema import from_dict, to_dict
from ..tasks import register_section
from .mlp import ClassifierConfig

MODES = ("frozen", "finetune", "scratch", "cnn")


@dataclass
class ClassifyRow:
    """One row of the table: which network the head sits on and how it is trained.

    Attributes:
        source: submodule of the pretrained model whose ``features(x)`` the head sees (``""`` = the whole model,
            ``stack1`` = the SVQVAE inside a dual-stack model).
        mode: ``frozen`` (the pretrained encoder is fixed, features computed once), ``finetune`` (the pretrained
            encoder trains end to end with the head), ``scratch`` (the same architecture freshly initialised and
            trained on the labeled subset only: it never sees the pretrained weights), ``cnn`` (a plain
            convolutional network, :class:`~hiervq.classify.mlp.ConvClassifier`, trained on the labeled pixels
            only: the supervised reference; ``source`` is ignored).
        head: overrides of ``classify.head`` for this row only (e.g. ``{epochs: 40}``); unknown keys are errors.
        fractions: the label fractions this row runs at (a subset of ``classify.fractions``; null: all of them).
            The row's per-fraction lists hold null at the others.
        seeds: repetitions at each of this row's fractions (null: ``classify.seeds`` / ``seeds_full``).
        widths: ``cnn`` rows: the channels of its 3x3 convolutions (2x2 max pooling after every second one).
    """

    source: str = ""
    mode: Literal["frozen", "finetune", "scratch", "cnn"] = "frozen"
    head: dict[str, Any] = field(default_factory=dict)
    fractions: list[float] | None = None
    seeds: int | None = None
    widths: list[int] = field(default_factory=lambda: [32, 32, 64, 64, 128, 128])

    def validate(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        if self.fractions is not None and (not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions)):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    def head_config(self, head: ClassifierConfig, where: str) -> ClassifierConfig:
        """``head`` with this row's overrides (checked like a config section, errors naming ``where``)."""
        if not self.head:
            return head
        return from_dict(ClassifierConfig, {**to_dict(head), **self.head}, where)

    def runs_at(self, fraction: float) -> bool:
        """Whether this row runs at label fraction ``fraction``."""
        return self.fractions is None or any(abs(fraction - f) < 1e-12 for f in self.fractions)


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
        seeds: repetitions at each fraction at or below ``scarce_fraction`` (one between it and 100 %):
            repetition ``r`` draws its label subset with ``subset_seed + r`` and initialises/batches with
            ``seed + r``, the same for every row; the table reports the mean and std over repetitions.
        seeds_full: repetitions with 100 % of the labels (the subset is the whole training split, so they differ
            in initialisation, batch order and augmentation only).
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
    seeds_full: int = 1
    scarce_fraction: float = 0.1
    feature_batch_size: int = 256

    def rows(self) -> dict[str, ClassifyRow]:
        """Every row as a :class:`ClassifyRow` (bare paths take ``head.finetune``'s mode)."""
        default = "finetune" if self.head.finetune else "frozen"
        return {name: row if isinstance(row, ClassifyRow) else ClassifyRow(row, default)
                for name, row in self.models.items()}

    def repetitions(self, fraction: float, row: ClassifyRow | None = None) -> int:
        """How many seeds ``row`` (default: any row without its own ``seeds``) gets at ``fraction``."""
        if row is not None and row.seeds is not None:
            return row.seeds
        if fraction >= 1.0 - 1e-12:
            return self.seeds_full
        return self.seeds if fraction <= self.scarce_fraction + 1e-12 else 1

    def validate(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        if not self.models and not self.pixels_baseline:
            raise ValueError("nothing to classify: give models or pixels_baseline: true")
        if "pixels_mlp" in self.models:
            raise ValueError("the row name pixels_mlp is reserved for the raw-pixel baseline")
        if self.feature_batch_size < 1 or self.seeds < 1 or self.seeds_full < 1:
            raise ValueError("feature_batch_size, seeds and seeds_full must be >= 1")
