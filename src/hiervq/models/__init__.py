"""The discrete autoencoder family, all behind :class:`DiscreteAutoencoder`."""

from .base import Budget, DiscreteAutoencoder, LevelInfo, Output, QuantizerConfig, budget_of
from .hierarchical import VQVAE, HierarchicalConfig, HierarchicalVQVAE, LevelConfig, VQVAEConfig

__all__ = [
    "Budget",
    "DiscreteAutoencoder",
    "HierarchicalConfig",
    "HierarchicalVQVAE",
    "LevelConfig",
    "LevelInfo",
    "Output",
    "QuantizerConfig",
    "VQVAE",
    "VQVAEConfig",
    "budget_of",
]
