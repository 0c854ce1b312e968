"""Optional run-config sections of the experiment recipes (``compare:``, ``sweep:``, ``study:``).

Owned here, next to the code that acts on them (:mod:`hiervq.experiments`), and registered with
:class:`~hiervq.train.config.RunConfig` (:func:`~hiervq.train.config.register_section`), which validates them
when a config is read. A plain ``hiervq train`` ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tasks import register_section


@register_section("compare")
@dataclass
class CompareConfig:
    """``compare:``: train a hierarchical model and its capacity-matched single-level twin identically.

    The twin keeps the bottom grid and matches the continuous budget (sum H*W*C at the quantizer inputs, which
    derives Cs) and the discrete budget (sum K*D, which derives Ks*Ds). Ds is ``single_code_dim`` if given,
    else the hierarchy's common code dimension, or Cs when the hierarchy uses no low-dimensional codes;
    ``single_codebook_size`` fixes Ks instead (then Ds = discrete budget / Ks).
    """

    single_code_dim: int | None = None
    single_codebook_size: int | None = None

    def validate(self) -> None:
        if self.single_code_dim is not None and self.single_codebook_size is not None:
            raise ValueError("give single_code_dim or single_codebook_size, not both (the other is derived)")
        for name in ("single_code_dim", "single_codebook_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@register_section("sweep")
@dataclass
class SweepConfig:
    """``sweep:``: the points ``hiervq sweep`` runs (``--grid`` on the command line adds or replaces axes).

    Attributes:
        grid: config key -> values; every combination is a point. Keys use ``--set`` syntax; ``*`` stands for
            every item of a list (``model.levels.*.codebook_size``).
        variants: ordered named override lists (``name: [key=value, ...]``), e.g. the steps of an ablation;
            every variant is combined with every grid point.
        workers: worker processes running points in parallel (1: sequential, in this process).
    """

    grid: dict[str, list] = field(default_factory=dict)
    variants: dict[str, list[str]] = field(default_factory=dict)
    workers: int = 1

    def validate(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key} has no values")
        for name, items in self.variants.items():
            bad = [s for s in items if "=" not in s]
            if bad:
                raise ValueError(f"variants.{name}: {bad[0]!r} is not key=value")


@register_section("study")
@dataclass
class StudyConfig:
    """``study:``: views of training taken during the run (written under ``RUN/study/``).

    Attributes:
        fractions: when to snapshot, as fractions of the training epochs (0 = before the first step).
        fixed_batch: test images (the first ones) reconstructed at every snapshot.
        usage_images: test images encoded at every snapshot to count code usage (the t-SNE colour).
        tsne: draw t-SNE maps of the code vectors at the snapshots (scikit-learn TSNE).
        tsne_perplexity, tsne_learning_rate, tsne_iterations: TSNE's perplexity, learning_rate, max_iter.
    """

    fractions: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    fixed_batch: int = 8
    usage_images: int = 2000
    tsne: bool = True
    tsne_perplexity: float = 30.0
    tsne_learning_rate: float = 200.0
    tsne_iterations: int = 1000

    def validate(self) -> None:
        if not self.fractions or any(not 0.0 <= f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be numbers in [0, 1], got {self.fractions}")
        if self.fixed_batch < 1 or self.usage_images < 1:
            raise ValueError("fixed_batch and usage_images must be >= 1")
        if self.tsne_perplexity <= 0 or self.tsne_learning_rate <= 0 or self.tsne_iterations < 250:
            raise ValueError("tsne_perplexity and tsne_learning_rate must be > 0, tsne_iterations >= 250")
