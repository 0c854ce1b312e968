"""The discrete autoencoder family, all behind :class:`DiscreteAutoencoder`."""

from .base import Budget, DiscreteAutoencoder, LevelInfo, Output, QuantizerConfig, budget_of, crop_images
from .hierarchical import VQVAE, HierarchicalConfig, HierarchicalVQVAE, LevelConfig, VQVAEConfig
from .pqvae import PQVAE, PQVAEConfig
from .stacked import DualStackConfig, DualStackVQVAE, StackedConfig, StackedVQVAE, StageConfig

__all__ = [
    "Budget",
    "DiscreteAutoencoder",
    "DualStackConfig",
    "DualStackVQVAE",
    "HierarchicalConfig",
    "HierarchicalVQVAE",
    "LevelConfig",
    "LevelInfo",
    "Output",
    "PQVAE",
    "PQVAEConfig",
    "QuantizerConfig",
    "StackedConfig",
    "StackedVQVAE",
    "StageConfig",
    "VQVAE",
    "VQVAEConfig",
    "budget_of",
    "crop_images",
]
