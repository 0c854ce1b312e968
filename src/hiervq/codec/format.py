"""The compressed file format (``.hvq``): a small versioned header, a CRC-32 and one range-coded stream.

Layout of version 3, the version written (multi-byte integers big-endian; "varint" = unsigned LEB128, 7 bits per
byte, at most 5 bytes)::

    offset  bytes  field
    0       3      magic b"HVQ"
    3       1      format version (3; versions 1 and 2 are read too, see below)
    4       4      model id: the first 4 bytes of the SHA-256 of the autoencoder's and the priors' configs and
                   weights (:func:`hiervq.codec.model_id`); decompressing with other weights is refused
    8       1      flags: bit 3 set when the stream starts with a class label, every other bit zero
    9       varint image height H, varint image width W (pixels): the original size; the codes are those of the
                   image padded to the model's stride (:meth:`~hiervq.models.DiscreteAutoencoder.pad_images`), and
                   decoding crops back to H x W
            4      CRC-32 (zlib) of every byte before it and of the payload
            ...    payload, to the end of the file: the range coder's 32-bit words, big-endian, trailing bytes
                   trimmed (the decoder pads with zero bytes)

The stream holds the class label (if any), then the rounding phases of the probability tables, one per block of
positions of each level (:mod:`hiervq.codec.tables`, uniform, 3 bits each), then the codes. The level grids follow
from the model and H x W, and the payload runs to the end of the file (a truncated file fails the CRC), so neither
is stored. For images below 128 pixels a side the header is ``9 + 2 + 4`` = **15 bytes**.

Versions 1 and 2 (read, and written by :func:`pack` only for a :class:`Header` of that version, for tests) had one
phase per image in bits 0-2 of the flags and no phases in the stream, and after W: varint number of coded levels
n, per level in coding order (top first) varint number of grid dimensions and a varint per dimension (e.g. 2, 8, 8
for an 8x8 map; 1, 64 for a sequence of 64 or a multi-scale level of 64 tokens), varint payload length in bytes,
then the CRC-32 and the payload. Version 1 stored only sizes that needed no padding. Their headers were
``9 + 2 + 1 + sum over levels (1 + grid dims) + 1 + 4`` bytes (23 for a 2-level model with 2-D grids, 26 for 3
levels, 19 for a PQ-VAE sequence, for images below 128 pixels a side and payloads below 128 bytes).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import DataError

MAGIC = b"HVQ"
VERSION = 3
#: the versions :func:`unpack` reads: 1 and 2 share a layout (1's H x W were always multiples of the stride)
READ_VERSIONS = (1, 2, 3)
SUFFIX = ".hvq"
_FIXED = struct.Struct(">3sB4sB")  # magic, version, model id, flags
MODEL_ID_BYTES = 4
PHASE_BITS = 0b0111  # versions 1 and 2: the image's rounding phase
LABEL_FLAG = 0b1000


@dataclass(frozen=True)
class Header:
    """What a compressed file says about its image and stream.

    Attributes:
        model_id: 4 bytes identifying the autoencoder and prior weights that coded it.
        image_size: (H, W) in pixels, the image's original size (coded padded to the model's stride).
        grids: versions 1 and 2: the code grid of each level in coding order (top first), e.g.
            ((2, 2), (4, 4), (8, 8)) or ((64,),); ``None`` in version 3 (they follow from the model and H x W).
        phase: versions 1 and 2: the rounding phase 0..7 of the image's probability tables; ``None`` in version 3
            (the stream holds a phase per block of positions).
        labelled: the stream starts with a class label (class-conditional priors).
        version: the format version (:data:`VERSION` is written; :func:`pack` writes 1 and 2 too, for tests).
    """

    model_id: bytes
    image_size: tuple[int, int]
    grids: tuple[tuple[int, ...], ...] | None = None
    phase: int | None = None
    labelled: bool = False
    version: int = VERSION


def _varint(value: int) -> bytes:
    if not 0 <= value < 1 << 35:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pack(header: Header, payload: bytes) -> bytes:
    """The file: header, CRC-32 and payload, in ``header.version``'s layout (3 unless a test builds an old file:
    1 and 2 need ``grids`` and ``phase``, 3 takes neither)."""
    if len(header.model_id) != MODEL_ID_BYTES:
        raise ValueError("model_id must be 4 bytes")
    if header.version not in READ_VERSIONS:
        raise ValueError(f"format version must be one of {READ_VERSIONS}, got {header.version}")
    old = header.version < 3
    if old != (header.grids is not None) or old != (header.phase is not None):
        raise ValueError("versions 1 and 2 need grids and a phase, version 3 takes neither")
    if old and not 0 <= header.phase <= PHASE_BITS:
        raise ValueError("phase must be in 0..7")
    flags = (header.phase if old else 0) | (LABEL_FLAG if header.labelled else 0)
    head = bytearray(_FIXED.pack(MAGIC, header.version, header.model_id, flags))
    fields = list(header.image_size)
    if old:
        fields.append(len(header.grids))
        for grid in header.grids:
            fields += [len(grid), *grid]
        fields.append(len(payload))
    for value in fields:
        head += _varint(value)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return bytes(head) + struct.pack(">I", crc) + payload


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name, self.pos = data, name, _FIXED.size

    def varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            if self.pos >= len(self.data):
                raise DataError(f"{self.name}: truncated ({len(self.data)} bytes end inside the header)")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise DataError(f"{self.name}: corrupt header (a size field runs over 5 bytes)")


def unpack(data: bytes, name: str = "data") -> tuple[Header, bytes]:
    """(header, payload) of a file; raise :class:`DataError` naming ``name`` unless it is a complete, intact
    file of a format version this hiervq reads (magic, version, flags, lengths and CRC-32 are checked; a version 3
    file has no payload length, so a truncated one fails the CRC)."""
    data = bytes(data)
    if not data or data[:3] != MAGIC[: len(data)]:
        raise DataError(f"{name}: not a hiervq compressed file (it does not start with {MAGIC!r})")
    if len(data) < _FIXED.size:
        raise DataError(f"{name}: truncated ({len(data)} bytes end inside the header)")
    _, version, model, flags = _FIXED.unpack_from(data)
    if version not in READ_VERSIONS:
        raise DataError(f"{name}: format version {version}; this hiervq reads versions "
                        f"{', '.join(map(str, READ_VERSIONS))}")
    old = version < 3
    if flags & ~((PHASE_BITS if old else 0) | LABEL_FLAG):
        raise DataError(f"{name}: corrupt header (unknown flags {flags:#04x})")
    r = _Reader(data, name)
    height, width = r.varint(), r.varint()
    grids = phase = None
    if old:
        levels = r.varint()
        if levels > 16:
            raise DataError(f"{name}: corrupt header ({levels} levels)")
        grids = []
        for _ in range(levels):
            ndim = r.varint()
            if not 1 <= ndim <= 4:
                raise DataError(f"{name}: corrupt header (a level grid with {ndim} dimensions)")
            grids.append(tuple(r.varint() for _ in range(ndim)))
        grids, phase = tuple(grids), flags & PHASE_BITS
        length = r.varint()
        end = r.pos + 4 + length
        if len(data) < end:
            raise DataError(f"{name}: truncated ({len(data)} bytes; the header announces {end})")
        if len(data) > end:
            raise DataError(f"{name}: corrupt ({len(data) - end} bytes after the end of the stream)")
    elif len(data) < r.pos + 4:
        raise DataError(f"{name}: truncated ({len(data)} bytes end inside the header)")
    (crc,) = struct.unpack_from(">I", data, r.pos)
    payload = data[r.pos + 4 :]
    if zlib.crc32(payload, zlib.crc32(data[: r.pos])) != crc:
        what = "the file was damaged after it was written" if old else "the file was damaged or cut short"
        raise DataError(f"{name}: corrupt (CRC-32 mismatch: {what})")
    return Header(model, (height, width), grids, phase, bool(flags & LABEL_FLAG), version), payload


def header_size(header: Header, payload_bytes: int) -> int:
    """Bytes before the payload for ``header`` and a payload of ``payload_bytes`` (which only versions 1 and 2,
    with their payload length field, depend on)."""
    return len(pack(header, bytes(payload_bytes))) - payload_bytes


def header_bytes(data: bytes) -> int:
    """Bytes before the payload in a file (checked with :func:`unpack`)."""
    return len(data) - len(unpack(data)[1])
