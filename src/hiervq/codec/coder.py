"""A trained autoencoder and its priors as an image codec: images -> entropy-coded files -> images.

The codes ``model.encode(x)`` gives are range coded (``constriction``) level by level, top first, each position
with its prior's probabilities given the codes before it and the level above, in the order sampling walks them
(:meth:`hiervq.priors.PriorKind.walk`). The encoder takes all those probabilities from one pass of the priors
(:meth:`~hiervq.priors.PriorKind.logits`); the decoder walks the positions one by one (a PixelCNN) or half a
level at a time (a checkerboard prior: 2 network passes per level), so both sides round the priors' float64 logits
to integer tables that are certain to agree (:mod:`hiervq.codec.tables`), with a rounding phase per block of
positions that the stream carries before the codes (format version 3). A file's length bounds the codes its
image size implies (:func:`max_codes`), checked before anything is decoded. A class-conditional prior needs a
label: the encoder picks the class under which the codes cost the fewest bits and codes it first, uniformly
(log2(classes) bits). The file format is :mod:`hiervq.codec.format`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, HierVQError
from ..layout import RunDir
from ..models.base import crop_images
from ..nn import shifted_convs
from ..pretrained import load
from ..priors import prior_kind_for, takes_labels
from ..priors.checkerboard import PASSES, CheckerboardPrior
from ..priors.sampling import load_priors
from ..schema import with_old_keys
from ..tasks import env_device
from ..zoo import list_tokenizers, resolve, where_user_models
from ..zoo import names as tokenizer_names
from . import tables
from .format import Header, pack, unpack

MAX_PIXELS = 1 << 26  # larger images in a header are refused (a damaged or hostile file)
#: the work a file may ask for is bounded by its length: a file holds at most FREE_CODES + CODES_PER_BYTE x (payload
#: bytes) codes (1/64 bit per code beyond the first FREE_CODES); the encoder pads a shorter payload with zero
#: bytes (which the decoder reads as it reads the end of a stream, so the codes do not change), and the decoder
#: refuses a header that declares more before it decodes anything (docs/compression.md, "Bounded work")
CODES_PER_BYTE = 512
FREE_CODES = 1024


def min_payload(codes: int) -> int:
    """The fewest payload bytes a file of ``codes`` coded codes holds (the encoder pads up to it)."""
    return max(0, -(-(codes - FREE_CODES) // CODES_PER_BYTE))


def max_codes(payload_bytes: int) -> int:
    """The most codes a file with a payload of ``payload_bytes`` may declare."""
    return FREE_CODES + CODES_PER_BYTE * payload_bytes


def _constriction():
    try:
        import constriction  # a dependency of every install; a broken environment gets a one-line error
    except ImportError:
        raise HierVQError("compression needs the constriction package (a dependency of hiervq): pip install constriction") from None
    return constriction


def model_id(model: nn.Module, priors: list[nn.Module]) -> bytes:
    """4 bytes naming an autoencoder and its priors (in coding order): SHA-256 of their registry names, configs
    (keys as named in format version 1, :func:`hiervq.schema.with_old_keys`: keys renamed since under their old
    names, keys added since left out at their default, so that files compressed before still decompress) and
    weights."""
    h = hashlib.sha256(b"hiervq-codec")
    for module in [model, *priors]:
        meta = {"model": getattr(module, "registry_name", type(module).__name__), "config": with_old_keys(module.config)}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for key, value in module.state_dict().items():
            t = value.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()[:4]


@dataclass
class Compressed:
    """A batch's files and what went into them.

    Attributes:
        files: one compressed file (bytes) per image.
        codes: the codes in the ``codes_to_list`` layout, as ``model.encode`` gave them.
        labels: (B,) the class each image was coded under, or ``None`` (unconditional priors).
        bits: (B,) float64: the priors' estimate of the stream, in bits: -log2 p(codes | label), + log2(classes)
            for the label, + 3 per rounding phase (one per block of positions of each level).
    """

    files: list[bytes]
    codes: list[torch.Tensor]
    labels: torch.Tensor | None
    bits: torch.Tensor


def _words(payload: bytes) -> np.ndarray:
    """The range coder's 32-bit words from a payload, padded with zero bytes."""
    padded = payload + bytes(-len(payload) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


class Codec:
    """Compress images with ``model`` and its ``priors`` ({level: prior}, one per level the model's prior kind
    needs) and decompress them again. Build it from a run with :meth:`from_run`.

    >>> codec = Codec.from_run("runs/cifar")                    # doctest: +SKIP
    >>> files = codec.compress(images)   # (B, C, H, W) on [0, 1] -> B files (bytes)   # doctest: +SKIP
    >>> codec.decompress(files).shape    # (B, C, H, W) on [0, 1]                      # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, priors: dict[int, nn.Module], device: str | torch.device | None = None,
                 run: str | os.PathLike = "RUN") -> None:
        self.family = _constriction().stream.model.Categorical(perfect=False)
        self.kind = prior_kind_for(model)
        self.levels = self.kind.prior_levels(model)  # coding order: top first
        for lv in self.levels:
            self.kind.level_info(model, lv)  # a family may refuse a level whose codes its priors cannot model
        missing = [lv for lv in self.levels if lv not in priors]
        if missing:
            raise HierVQError(f"{run}: no prior for level(s) {', '.join(map(str, missing))}; run `hiervq prior {run} "
                              "--level all` first")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.id = model_id(model, [priors[lv] for lv in self.levels])
        self.run = os.fspath(run)  # how the user named the model (messages and hints)
        self.model = model.to(self.device).eval()
        # float64 logits (the tables' rounding needs them); their square convolutions as shifted matrix products,
        # ~2x faster than torch's float64 convolution on the CPU (hiervq.nn.conv2d_shifted)
        self.priors = {lv: shifted_convs(copy.deepcopy(priors[lv]).double().to(self.device).eval())
                       for lv in self.levels}
        classes = {self.priors[lv].config.num_classes for lv in self.levels if takes_labels(self.priors[lv])}
        if len(classes) > 1:
            raise HierVQError(f"the priors are conditioned on different numbers of classes ({sorted(classes)})")
        self.num_classes: int | None = classes.pop() if classes else None
        self._grids: dict[tuple[int, int], list[tuple[int, ...]]] = {}
        #: per level, the codebook size K that the tables see (the priors' logits are (..., K)) and the positions
        #: per rounding-phase block (format version 3), which the decoder needs before it runs any prior
        self.codebook = {lv: self.kind.level_info(model, lv)["codebook_size"] for lv in self.levels}
        self.block = {lv: tables.block_size(k) for lv, k in self.codebook.items()}

    @classmethod
    def from_run(cls, run: str | os.PathLike, prior_dirs: list | None = None,
                 device: str | torch.device | None = None) -> Codec:
        """The codec of an autoencoder run and its priors (``prior_dirs``, default every prior under
        ``RUN/priors/``); ``device`` defaults to ``$HIERVQ_DEVICE`` (cpu)."""
        folder = resolve(run)  # a run directory, a saved model folder or a tokenizer name: its priors are inside
        model = load(folder)
        dirs = list(prior_dirs or [prior.path for prior in RunDir(folder).find_priors()])
        if not dirs:
            where = f"{Path(os.fspath(run)).name}-priors"  # never the model's own folder (hiervq.train.priors)
            parent = folder.parent if folder.name == RunDir.MODEL and RunDir(folder.parent).config.is_file() else None
            how = (f"run `hiervq prior {run} --level all` first" if RunDir(folder).config.is_file() else
                   f"run `hiervq prior {parent} --level all` first and pass `--priors {parent}/priors/level*`"
                   if parent is not None else
                   f"train them with `hiervq prior {run} --level all --out {where}` (--data to point at the "
                   f"images) and pass `--priors {where}/level*`")
            raise HierVQError(f"{run}: no trained priors under {RunDir(folder).priors}; {how}")
        priors, _ = load_priors(run, dirs, model)
        return cls(model, priors, device or env_device(), run)

    @classmethod
    def for_model_id(cls, model_id: bytes, name: str, hint: str, device: str | torch.device | None = None) -> Codec:
        """The codec of the named tokenizer (shipped, then ``$HIERVQ_MODELS``: :func:`hiervq.zoo.list_tokenizers`)
        whose autoencoder and priors are ``model_id`` (the 4 bytes of a file's header); tokenizers without priors, or
        whose priors do not load, are skipped. None of them: a one-line :class:`HierVQError` naming ``name`` (the
        file), the tokenizers looked at and ``hint`` (what to do instead)."""
        for tokenizer in list_tokenizers():
            if not RunDir(tokenizer.path).find_priors():  # (before loading any weights)
                continue
            try:
                codec = cls.from_run(tokenizer.path, device=device)
            except HierVQError:
                continue
            if codec.id == model_id:
                codec.run = tokenizer.name
                return codec
        raise HierVQError(f"{name}: compressed with model {model_id.hex()}, which is none of the tokenizers here "
                          f"({', '.join(tokenizer_names()) or 'none'}; {where_user_models()}); {hint}")

    # ------------------------------------------------------------------ shapes
    def _shape(self, level: int) -> tuple[int, ...]:
        """The shape of one image's codes of ``level`` at the model's image size: its grid (the prior kind's
        :meth:`~hiervq.priors.PriorKind.level_info`: (h, w), (L,) for a sequence, (T,) for a multi-scale level's
        tokens), and L for a level of L > 1 codes per position (a residual quantizer's (h, w, L)); what the header
        records per level."""
        info = self.kind.level_info(self.model, level)
        return tuple(info["grid"]) + ((info["depth"],) if info.get("depth", 1) > 1 else ())

    def grids(self, height: int, width: int) -> list[tuple[int, ...]]:
        """The code grid of each coded level (coding order) for an H x W image, coded padded to the model's stride
        (:meth:`~hiervq.models.DiscreteAutoencoder.coded_size`); (h, w, L) for a level of L > 1 codes per position,
        (T,) for a multi-scale level. A model or priors that take their own size only refuse others, naming both."""
        if (height, width) == tuple(self.model.image_shape[1:]):
            return [self._shape(lv) for lv in self.levels]
        if (height, width) not in self._grids:
            c, h, w = self.model.image_shape
            ph, pw = self.model.coded_size(height, width)  # DataError naming both sizes for a fixed-size model
            try:
                codes = self.model.codes_to_list(self.model.encode(torch.zeros(1, c, ph, pw, device=self.device)))
            except (DataError, ValueError, RuntimeError) as exc:
                raise DataError(f"this model cannot code {height}x{width} images ({str(exc).splitlines()[0]})") from None
            grids = [tuple(codes[lv].shape[1:]) for lv in self.levels]
            if not self.kind.any_grid and grids != [self._shape(lv) for lv in self.levels]:
                raise DataError(f"the priors model the codes of {h}x{w} images only, not of {height}x{width}; "
                                f"resize them to {h}x{w} (hiervq: --resize)")
            self._grids[height, width] = grids
        return self._grids[height, width]

    def network_passes(self, height: int, width: int) -> int:
        """Prior network passes to decode one H x W image: 2 per level for a checkerboard prior, one per scale for a
        next-scale prior, one per code for an autoregressive prior (a PixelCNN or a transformer over a sequence)."""
        total = 0
        for level, grid in zip(self.levels, self.grids(height, width)):
            prior = self.priors[level]
            scales = getattr(prior.config, "scales", None)
            total += (PASSES if isinstance(prior, CheckerboardPrior) else len(scales) if scales
                      else math.prod(grid))
        return total

    def _codes_for(self, height: int, width: int) -> int:
        """A lower bound of the codes per image the model gives for an H x W image, without running it: the
        codes at its own size, scaled by the pixels of the padded size (exact for a convolutional model); 0 for
        a size it cannot code (refused later)."""
        _, mh, mw = self.model.image_shape
        own = sum(math.prod(self._shape(lv)) for lv in self.levels)
        try:
            ph, pw = self.model.coded_size(height, width)
        except DataError:
            return 0
        return own * ph * pw // (mh * mw)

    # ------------------------------------------------------------------ compression
    @torch.no_grad()
    def _logits(self, codes: list[torch.Tensor], labels: torch.Tensor | None) -> list[torch.Tensor]:
        return [self.kind.logits(self.priors[lv], codes, labels, lv).double() for lv in self.levels]

    @torch.no_grad()
    def _best_labels(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """(B,) the class under which each image's codes cost the fewest bits."""
        b = codes[0].shape[0]
        nll = torch.stack([
            sum(self.kind.nll(self.priors[lv], codes, torch.full((b,), c, device=self.device), lv) for lv in self.levels)
            for c in range(self.num_classes)
        ])
        return nll.argmin(0)

    def _blocks(self, grids: list[tuple[int, ...]]) -> list[int]:
        """Rounding-phase blocks per image of each coded level (coding order) for these level grids."""
        return [-(-math.prod(g) // self.block[lv]) for lv, g in zip(self.levels, grids)]

    @staticmethod
    def _block_phases(logits: torch.Tensor, size: int) -> torch.Tensor:
        """(B, blocks) the first rounding phase whose tables are robust at every position of each block of
        ``size`` consecutive positions of one level's ``logits`` (B, n, K) (-1: none is); a few blocks are checked
        at a time (~4M logits), and later phases only where earlier ones failed."""
        b, n, k = logits.shape
        out = torch.full((b, -(-n // size)), -1, dtype=torch.long, device=logits.device)
        step = max(1, (1 << 22) // max(1, b * size * k)) * size  # positions per chunk, whole blocks
        for start in range(0, n, step):
            part = logits[:, start : start + step]
            m = part.shape[1]
            phase = out[:, start // size : -(-(start + m) // size)]  # a view: written in place
            for p in range(tables.PHASES):
                ok = tables.robust(part, p)  # (B, m)
                ok = torch.cat([ok, ok.new_ones(b, phase.shape[1] * size - m)], 1).view(b, -1, size).all(-1)
                phase[(phase < 0) & ok] = p
                if bool((phase >= 0).all()):
                    break
        return out

    def _decodes(self, payload: bytes, symbols: list[np.ndarray], weights: list[np.ndarray]) -> bool:
        decoder = _constriction().stream.queue.RangeDecoder(_words(payload))
        try:
            return all(np.array_equal(decoder.decode(self.family, w), s) for s, w in zip(symbols, weights))
        except Exception:  # noqa: BLE001 - a stream that does not decode is simply not short enough
            return False

    def _encode_stream(self, symbols: list[np.ndarray], weights: list[np.ndarray]) -> bytes:
        """The range-coded stream, trimmed to the fewest bytes that still decode (zero padding): of all n-byte
        strings only the two nearest the coder's final point can decode, so try those for n = len-1, len-2, ..."""
        encoder = _constriction().stream.queue.RangeEncoder()
        for s, w in zip(symbols, weights):
            encoder.encode(s, self.family, w)
        full = encoder.get_compressed().astype(">u4").tobytes()
        best = full
        for n in range(len(full) - 1, -1, -1):
            up = int.from_bytes(full[:n], "big") + 1
            candidates = [full[:n]] + ([up.to_bytes(n, "big")] if n and up < 1 << (8 * n) else [])
            found = next((c for c in candidates if self._decodes(c, symbols, weights)), None)
            if found is None:
                break
            best = found
        return best

    @torch.no_grad()
    def compress_codes(self, codes: list[torch.Tensor], image_size: tuple[int, int]) -> Compressed:
        """Compress codes (the ``codes_to_list`` layout of a batch of ``image_size`` (H, W) images, coded padded to
        the model's stride as :meth:`compress_batch` does); the header records ``image_size``."""
        codes = [c.to(self.device, torch.long) for c in codes]
        b = codes[0].shape[0]
        grids = self.grids(*image_size)
        got = [tuple(codes[lv].shape[1:]) for lv in self.levels]
        if got != grids:
            raise DataError(f"codes of grids {got} do not belong to {image_size[0]}x{image_size[1]} images ({grids})")
        labels = self._best_labels(codes) if self.num_classes else None
        logits = self._logits(codes, labels)  # per level (B, n, K), in coding order
        symbols = [self.kind.symbols(self.priors[lv], codes, lv) for lv in self.levels]
        floor = min_payload(sum(s.shape[1] for s in symbols))
        # -log p(code) per position, on the (B * n, K) rows as they lie in memory (a transposed (B, K, n) view sent
        # cross_entropy down a strided path 3x slower for a 256x256 map of K = 1024)
        nats = sum(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), s.reshape(-1), reduction="none").view(s.shape).sum(1)
                   for lg, s in zip(logits, symbols))
        phases = []  # per level (B, blocks): the rounding phase of each block of positions, in coding order
        for lv, lg in zip(self.levels, logits):
            if lg.shape[-1] != self.codebook[lv]:  # the decoder sizes the blocks by the codebook
                raise HierVQError(f"level {lv}: the prior gives {lg.shape[-1]} logits per position for a codebook of "
                                  f"{self.codebook[lv]}")
            phases.append(self._block_phases(lg, self.block[lv]))
        failed = torch.stack([(p < 0).any(1) for p in phases]).any(0)
        if bool(failed.any()):
            bad = int(failed.nonzero()[0])
            raise HierVQError(f"image {bad}: the priors' probabilities cannot be rounded robustly (non-finite logits?)")
        blocks = sum(p.shape[1] for p in phases)
        bits = (nats.cpu() / math.log(2) + (math.log2(self.num_classes) if self.num_classes else 0.0)
                + math.log2(tables.PHASES) * blocks)
        files = []
        for i in range(b):
            # the stream: [label], every level's block phases (uniform), then the codes level by level
            syms = [torch.cat([p[i] for p in phases]).cpu().numpy().astype(np.int32)]
            weights = [np.ones((blocks, tables.PHASES))]
            for lv, lg, s, p in zip(self.levels, logits, symbols, phases):
                syms.append(s[i].cpu().numpy().astype(np.int32))
                per_position = p[i].repeat_interleave(self.block[lv])[: lg.shape[1]]
                weights.append(tables.weights(lg[i], per_position).cpu().numpy())
            if labels is not None:
                syms.insert(0, labels[i : i + 1].cpu().numpy().astype(np.int32))
                weights.insert(0, np.ones((1, self.num_classes)))
            header = Header(self.id, tuple(image_size), labelled=labels is not None)
            payload = self._encode_stream(syms, weights)
            files.append(pack(header, payload + bytes(max(0, floor - len(payload)))))  # zeros: read as the end
        return Compressed(files, [c.cpu() for c in codes], None if labels is None else labels.cpu(), bits)

    @torch.no_grad()
    def compress_batch(self, images: torch.Tensor) -> Compressed:
        """Compress images (B, C, H, W), floating point on [0, 1], at their own size: padded to the model's stride
        (:meth:`~hiervq.models.DiscreteAutoencoder.pad_images`), the header recording (H, W) to crop back to;
        one file per image, and what went into them."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise DataError(f"expected images (B, C, H, W), got {getattr(images, 'shape', type(images).__name__)}")
        self.grids(*images.shape[-2:])  # a size the model or its priors cannot code is refused, naming both sizes
        codes = self.model.codes_to_list(self.model.encode(self.model.pad_images(images.to(self.device))))
        return self.compress_codes(codes, tuple(images.shape[-2:]))

    def compress(self, images: torch.Tensor, batch_size: int = 64) -> list[bytes]:
        """One file (bytes) per image of ``images`` (B, C, H, W) on [0, 1], in batches of ``batch_size``."""
        return [f for s in range(0, len(images), batch_size) for f in self.compress_batch(images[s : s + batch_size]).files]

    # ------------------------------------------------------------------ decompression
    def read(self, data: bytes, name: str = "data") -> tuple[Header, bytes]:
        """(header, payload) of a file this codec can decompress; a one-line :class:`HierVQError` naming ``name``
        for anything else (another model, a damaged or truncated file)."""
        header, payload = unpack(data, name)
        if header.model_id != self.id:
            raise HierVQError(f"{name}: compressed with model {header.model_id.hex()}, but this autoencoder and its "
                              f"priors are {self.id.hex()}; decompress it with the run that compressed it")
        if header.labelled != (self.num_classes is not None):
            raise DataError(f"{name}: corrupt header (class label flag)")
        height, width = header.image_size
        if height * width > MAX_PIXELS:
            raise DataError(f"{name}: an image of {height}x{width} pixels is larger than hiervq decodes")
        # bounded work: the codes the model gives for the image size (computed without running the model), and
        # those the header declares (versions 1 and 2), must fit the payload's length before anything is encoded
        # or decoded
        declared = sum(math.prod(g) for g in header.grids) if header.grids is not None else 0
        coded = max(declared, self._codes_for(height, width))
        if coded > max_codes(len(payload)):
            raise DataError(f"{name}: corrupt header ({height}x{width} pixels, {coded} codes, in a payload of "
                            f"{len(payload)} bytes; hiervq files hold at most {FREE_CODES} + {CODES_PER_BYTE} per "
                            "byte)")
        try:
            grids = self.grids(*header.image_size)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None
        if header.grids is not None and list(header.grids) != grids:
            raise DataError(f"{name}: corrupt header (level grids {list(header.grids)}, the model gives {grids})")
        return header, payload

    @torch.no_grad()
    def decompress_codes(self, files: list[bytes], names: list[str] | None = None) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """The codes (``codes_to_list`` layout) of files that hold images of one size, and that size (H, W)."""
        names = names or [f"file {i}" for i in range(len(files))]
        parsed = [self.read(f, n) for f, n in zip(files, names)]
        sizes = {h.image_size for h, _ in parsed}
        if len(sizes) != 1:
            raise DataError(f"the files hold images of {len(sizes)} sizes; decompress each size separately")
        (size,) = sizes
        coder = _constriction().stream.queue
        decoders = [coder.RangeDecoder(_words(p)) for _, p in parsed]
        grids = self.grids(*size)
        blocks = self._blocks(grids)

        def decode_run(b: int, weights: np.ndarray) -> np.ndarray:
            try:
                return decoders[b].decode(self.family, weights).astype(np.int64)
            except Exception as exc:  # noqa: BLE001 - constriction's errors on a damaged stream
                raise DataError(f"{names[b]}: corrupt stream ({exc})") from None

        def decode(b: int, weights: np.ndarray) -> int:
            return int(decode_run(b, weights)[0])

        labels = None
        if self.num_classes:
            uniform = np.ones((1, self.num_classes))
            labels = torch.tensor([decode(b, uniform) for b in range(len(files))], device=self.device)

        # the rounding phase of each block of positions, per level (files, blocks): version 3 codes them after the
        # label, every level's in coding order; versions 1 and 2 have one per file, in the header
        phases = torch.zeros(len(files), sum(blocks), dtype=torch.long)
        for b, (header, _) in enumerate(parsed):
            if header.phase is None:
                phases[b] = torch.from_numpy(decode_run(b, np.ones((sum(blocks), tables.PHASES))))
            else:
                phases[b] = header.phase
        phases = dict(zip(self.levels, phases.to(self.device).split(blocks, 1)))
        done = dict.fromkeys(self.levels, 0)  # positions of each level decoded so far (coding order)

        def choose(level: int, logits: torch.Tensor) -> torch.Tensor:
            """(n, K) -> one code per file; (n, P, K) -> P codes per file, decoded in one call per file; each
            position with the phase of its block."""
            p = 1 if logits.ndim == 2 else logits.shape[1]
            block = torch.arange(done[level], done[level] + p, device=self.device) // self.block[level]
            done[level] += p
            if logits.ndim == 2:
                w = tables.weights(logits.double(), phases[level][:, block[0]]).cpu().numpy()
                return torch.tensor([decode(b, w[b : b + 1]) for b in range(len(files))], device=self.device)
            w = tables.weights(logits.double(), phases[level][:, block]).cpu().numpy()
            return torch.tensor(np.stack([decode_run(b, w[b]) for b in range(len(files))]), device=self.device)

        codes = self.kind.walk(self.model, self.priors, len(files), labels, choose, dict(zip(self.levels, grids)))
        return [c.cpu() for c in codes], size

    @torch.no_grad()
    def decompress(self, files: list[bytes], names: list[str] | None = None, batch_size: int = 64) -> torch.Tensor:
        """Images (B, C, H, W) on [0, 1] (``model.decode`` clamped, cropped to the size the files record) from files
        that hold images of one size;
        ``names`` (for messages) default to "file i"; decoded in batches of ``batch_size`` files."""
        names = names or [f"file {i}" for i in range(len(files))]
        if not files:
            return torch.zeros(0, *self.model.image_shape)
        if len({unpack(f, n)[0].image_size for f, n in zip(files, names)}) > 1:
            raise DataError("the files hold images of different sizes; decompress each size separately")
        out = []
        for s in range(0, len(files), batch_size):
            codes, size = self.decompress_codes(files[s : s + batch_size], names[s : s + batch_size])
            images = self.model.decode(self.model.codes_from_list([c.to(self.device) for c in codes]))
            out.append(crop_images(images, size).clamp(0, 1).cpu())
        return torch.cat(out)


def _codec(run, priors, device) -> Codec:
    return run if isinstance(run, Codec) else Codec.from_run(run, priors, device)


def compress(run, images: torch.Tensor, priors: list | None = None, device=None) -> bytes | list[bytes]:
    """Compress ``images`` with a run's autoencoder and priors (or a :class:`Codec`): (B, C, H, W) on [0, 1] ->
    one file (bytes) per image; a single image (C, H, W) -> its bytes."""
    codec = _codec(run, priors, device)
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        return codec.compress(images[None])[0]
    return codec.compress(images)


def decompress(data: bytes | list[bytes], run=None, priors: list | None = None, device=None) -> torch.Tensor:
    """Decompress files written by :func:`compress` with the same run (or :class:`Codec`): a list of files ->
    images (B, C, H, W) on [0, 1]; one file (bytes) -> (C, H, W). ``run=None``: the named tokenizer (shipped or in
    ``$HIERVQ_MODELS``) whose model id the first file's header records (:meth:`Codec.for_model_id`)."""
    if run is None:
        if priors:
            raise HierVQError("priors given without the run they belong to")
        first = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else bytes(data[0])
        run = Codec.for_model_id(unpack(first, "data")[0].model_id, "data", "pass the run that compressed it", device)
    codec = _codec(run, priors, device)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return codec.decompress([bytes(data)])[0]
    return codec.decompress([bytes(d) for d in data])
