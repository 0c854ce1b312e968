"""The ``classify:`` section of a run config: the label-fraction experiment (``hiervq classify``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import DataConfig
from .mlp import ClassifierConfig


@dataclass
class ClassifyConfig:
    """Semi-supervised classification on a pretrained model's features with a fraction of the labels.

    Attributes:
        fractions: label fractions of the training split (stratified, at least one example per class, nested).
        models: table row name -> submodule of the pretrained model whose ``features(x)`` the classifier sees
            (``""`` = the whole model; e.g. ``stack1`` for the SVQVAE inside a dual-stack model).
        pixels_baseline: also train the same head on raw pixels (row ``pixels_mlp``).
        head: the classifier head and its optimisation.
        data: the labeled data (default: the run's ``data``; it needs a validation split, ``val_fraction``).
        subset_seed: seed of the label subsets (the same subsets for every model: paired comparisons).
        seed: seed of the heads' initialisation and batch order.
        feature_batch_size: images per batch when features are extracted.
    """

    fractions: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.1, 0.01])
    models: dict[str, str] = field(default_factory=lambda: {"model": ""})
    pixels_baseline: bool = True
    head: ClassifierConfig = field(default_factory=ClassifierConfig)
    data: DataConfig | None = None
    subset_seed: int = 0
    seed: int = 0
    feature_batch_size: int = 256

    def validate(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        if not self.models and not self.pixels_baseline:
            raise ValueError("nothing to classify: give models or pixels_baseline: true")
        if "pixels_mlp" in self.models:
            raise ValueError("the row name pixels_mlp is reserved for the raw-pixel baseline")
        if self.feature_batch_size < 1:
            raise ValueError("feature_batch_size must be >= 1")
