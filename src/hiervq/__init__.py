"""hiervq: hierarchical discrete representations of images with vector-quantized autoencoders."""

from . import log  # noqa: F401 - the "hiervq" logger writes to stderr by default (hiervq.log)
from ._version import __version__
from .codec import Codec, compress, decompress
from .errors import CheckpointError, ConfigError, DataError, HierVQError
from .models import VQVAE, DiscreteAutoencoder, HierarchicalVQVAE
from .pretrained import load
from .priors import PixelCNN  # registers the priors so hiervq.load reads prior directories
from .quantize import Codebook, VectorQuantizer

# The optional run-config sections (train.RunConfig.sections), registered by the recipes that own them; the order
# of registration is the order config.yaml lists them in: compare, sweep, study, priors, classify.
# isort: off
from .experiments import config as _experiment_sections  # noqa: F401
from .priors import config as _prior_sections  # noqa: F401
from .classify import config as _classify_sections  # noqa: F401
# isort: on

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
