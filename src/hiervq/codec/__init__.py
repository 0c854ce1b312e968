"""Real compression: images -> entropy-coded files with a trained autoencoder and its priors, and back.

* :class:`Codec` (:mod:`.coder`) -- a model and its priors as a codec; :func:`compress`, :func:`decompress`;
* :mod:`.format` -- the versioned ``.hvq`` file format (header, CRC-32, payload);
* :mod:`.tables` -- the integer probability tables both sides compute alike.

Needs the ``constriction`` package (a core dependency). See docs/compression.md.
"""

from .coder import Codec, Compressed, compress, decompress, model_id
from .format import MAGIC, SUFFIX, VERSION, Header, header_bytes, header_size, pack, unpack

__all__ = [
    "MAGIC",
    "SUFFIX",
    "VERSION",
    "Codec",
    "Compressed",
    "Header",
    "compress",
    "decompress",
    "header_bytes",
    "header_size",
    "model_id",
    "pack",
    "unpack",
]
