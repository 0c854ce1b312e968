"""Vector quantization layers, usable on their own (they depend on torch only).

>>> import torch
>>> from hiervq.quantize import VectorQuantizer
>>> vq = VectorQuantizer(dim=64, codebook_size=512, code_dim=8, estimator="rotation")
>>> out = vq(torch.randn(2, 64, 8, 8))
>>> out.quantized.shape, out.indices.shape
(torch.Size([2, 64, 8, 8]), torch.Size([2, 8, 8]))
"""

from .codebook import Codebook, CodebookConfig, nearest_code
from .estimators import ESTIMATORS, rotation_trick, straight_through
from .fsq import FSQ
from .lfq import LFQ
from .multiscale import MultiScaleVQ
from .progressive import ProgressiveQuantizer
from .residual import ResidualVQ
from .vector import Quantized, VectorQuantizer

__all__ = [
    "ESTIMATORS",
    "Codebook",
    "CodebookConfig",
    "FSQ",
    "LFQ",
    "MultiScaleVQ",
    "ProgressiveQuantizer",
    "Quantized",
    "ResidualVQ",
    "VectorQuantizer",
    "nearest_code",
    "rotation_trick",
    "straight_through",
]
