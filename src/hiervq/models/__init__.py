"""The discrete autoencoder family, all behind :class:`DiscreteAutoencoder`."""

from .base import Budget, DiscreteAutoencoder, LevelInfo, Output, QuantizerConfig, budget_of
from .hierarchical import VQVAE, HierarchicalConfig, HierarchicalVQVAE, LevelConfig, VQVAEConfig
from .pqvae import PQVAE, PQVAEConfig

__all__ = [
    "Budget",
    "DiscreteAutoencoder",
    "HierarchicalConfig",
    "HierarchicalVQVAE",
    "LevelConfig",
    "LevelInfo",
    "Output",
    "PQVAE",
    "PQVAEConfig",
    "QuantizerConfig",
    "VQVAE",
    "VQVAEConfig",
    "budget_of",
]
