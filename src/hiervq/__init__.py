"""hiervq: hierarchical discrete representations of images with vector-quantized autoencoders."""

__version__ = "0.1.0"

from . import log  # noqa: F401 - the "hiervq" logger writes to stderr by default (hiervq.log)
from .codec import Codec, compress, decompress
from .errors import CheckpointError, ConfigError, DataError, HierVQError
from .models import VQVAE, DiscreteAutoencoder, HierarchicalVQVAE
from .pretrained import load
from .priors import PixelCNN  # registers the priors so hiervq.load reads prior directories
from .quantize import Codebook, VectorQuantizer

__all__ = [
    "CheckpointError",
    "Codebook",
    "Codec",
    "ConfigError",
    "DataError",
    "DiscreteAutoencoder",
    "HierVQError",
    "HierarchicalVQVAE",
    "PixelCNN",
    "VQVAE",
    "VectorQuantizer",
    "__version__",
    "compress",
    "decompress",
    "load",
]
