"""Training batches: the one data order, seeded augmentation, and :class:`BatchSource`, what the trainer draws an
epoch's batches from, for in-memory and lazily read image sets alike.

Determinism (what exact resume rests on): the order of epoch ``e`` is ``DistributedSampler(seed, e)`` (each
process of a torchrun run takes its shard), and the augmentation of an image depends only on ``(seed, e, its
position in the training set)`` (:func:`augment_image`), never on a worker's random state or on which worker read
it. So a run resumed at epoch ``k`` sees the same pixels as one that was never stopped, with any number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import DataError


@dataclass
class AugmentConfig:
    """Random changes to each training image (evaluation images are never changed); all off by default.

    Attributes:
        flip: mirror left-right with probability 1/2.
        rotate90: rotate by 0, 90, 180 or 270 degrees (uniformly; with ``flip`` the 8 symmetries of the square).
        crop: a random crop of the image's own size from the image padded by this many pixels on every side (the
            edge pixels repeated), i.e. a shift by up to ``crop`` pixels each way; 0 = off.
        size: a random ``size`` x ``size`` crop of each training image, drawn before the changes above; 0 = off.
            Set from ``data.crop`` (:func:`hiervq.data.load_data`), which also crops the evaluation images.
    """

    flip: bool = False
    rotate90: bool = False
    crop: int = 0
    size: int = 0

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotate90 or self.crop > 0 or self.size > 0

    def validate(self) -> None:
        if self.crop < 0:
            raise ValueError(f"augment.crop must be >= 0 pixels, got {self.crop}")
        if self.size < 0:
            raise ValueError(f"augment.size must be >= 0 pixels, got {self.size}")


def image_seed(seed: int, epoch: int, i: int) -> int:
    """The seed of training image ``i``'s augmentation in ``epoch`` (independent streams per image and epoch)."""
    entropy = [seed % 2**63, epoch, i]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] % 2**63)


def augment_image(image: torch.Tensor, config: AugmentConfig, seed: int) -> torch.Tensor:
    """``image`` (C, H, W) (any dtype) flipped, rotated and shifted as ``config`` says, drawn from ``seed`` (the same
    four draws whatever is switched on, so switching one option does not change the others' draws; a random crop to
    ``config.size`` takes two more draws after those four, first of all changes)."""
    g = torch.Generator().manual_seed(seed)
    flip, turns, dy, dx = torch.randint(0, 2**30, (4,), generator=g).tolist()
    if config.size > 0:
        top, left = torch.randint(0, 2**30, (2,), generator=g).tolist()
        h, w = image.shape[-2:]
        if h < config.size or w < config.size:
            raise ValueError(f"cannot crop a {w}x{h} image to {config.size}x{config.size}")
        top, left = top % (h - config.size + 1), left % (w - config.size + 1)
        image = image[..., top : top + config.size, left : left + config.size]
    if config.crop > 0:
        c, h, w = image.shape
        span = 2 * config.crop + 1
        rows = (torch.arange(h) + dy % span - config.crop).clamp_(0, h - 1)
        cols = (torch.arange(w) + dx % span - config.crop).clamp_(0, w - 1)
        image = image[:, rows][:, :, cols]
    if config.flip and flip % 2:
        image = image.flip(-1)
    if config.rotate90 and turns % 4:
        image = torch.rot90(image, turns % 4, dims=(-2, -1))
    return image.contiguous()


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[torch.Tensor]:
    """The positions of this process's batches in ``epoch`` (full batches only): ``DistributedSampler(seed,
    epoch)``'s shuffle, sharded over ``world_size`` processes (dropping the last uneven images when > 1)."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=world_size > 1)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    full = (len(order) // batch_size) * batch_size
    if full == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(order)} training images per process")
    return list(order[:full].split(batch_size))


class WorkerDataError(DataError):
    """A :class:`DataError` raised in a ``DataLoader`` worker. torch re-raises a worker's exception in the training
    process as ``type(exc)(text)`` with the worker's whole traceback in ``text``; this class keeps only the original
    message (between markers), so the user sees one line naming the file, as without workers."""

    MARK = "\x1ehiervq\x1e"

    @classmethod
    def wrap(cls, message: str) -> WorkerDataError:
        return cls(f"{cls.MARK}{message}{cls.MARK}")

    def __init__(self, message: str = "") -> None:
        parts = message.split(self.MARK)  # in the worker: ["", message, ""]; re-raised: [torch's header, message, ...]
        super().__init__(parts[1] if len(parts) >= 3 and parts[0] else message)


class _Items(torch.utils.data.Dataset):
    """What a worker computes for one ``(position, epoch)``: the uint8 image, augmented, and its label (-1 none)."""

    def __init__(self, dataset, augment: AugmentConfig | None, seed: int) -> None:
        self.dataset, self.augment, self.seed = dataset, augment, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, epoch = item
        try:
            if self.augment is not None and self.augment.size > 0:  # random crops of the whole image
                image = self.dataset.load(i, whole=True)
            else:
                image = self.dataset.load(i)
        except DataError as exc:
            if torch.utils.data.get_worker_info() is None:
                raise
            raise WorkerDataError.wrap(str(exc)) from None
        if self.augment is not None and self.augment.enabled:
            image = augment_image(image, self.augment, image_seed(self.seed, epoch, i))
        labels = self.dataset.labels
        return image, -1 if labels is None else int(labels[i])


class _EpochSampler:
    """The batch sampler of the loader: yields the ``(position, epoch)`` lists of the epoch set last."""

    def __init__(self, source: BatchSource) -> None:
        self.source = source
        self.epoch = 0

    def __iter__(self):
        for index in self.source.order(self.epoch):
            yield [(int(i), self.epoch) for i in index]

    def __len__(self) -> int:
        return len(self.source)


class Epoch:
    """The batches of one epoch: ``len()`` without reading anything, iteration gives ``(x, y)`` (x float (B, C, H,
    W) in [0, 1], y (B,) int64 or None)."""

    def __init__(self, source: BatchSource, epoch: int) -> None:
        self.source, self.epoch = source, epoch

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        return self.source._iterate(self.epoch)


class BatchSource:
    """Where the trainer draws training batches from: one object for both kinds of image set.

    * an in-memory :class:`~hiervq.data.ImageSet` with ``workers == 0``: batches are cut from its uint8 tensor in
      this process (``dataset.batch``), as they always were;
    * otherwise (a :class:`~hiervq.data.lazy.LazyImageSet`, or ``workers > 0``): a ``DataLoader`` whose
      ``workers`` processes (0: this one; persistent across epochs) read, decode and augment the images of each
      batch, ``2 * workers`` batches ahead.

    Both give the same batches (same order, same pixels, same augmentation) for the same ``seed`` and epoch.

    Args:
        dataset: the training images (``len``, ``labels``, ``load(i)`` -> uint8 (C, H, W), ``batch(index)``).
        batch_size: images per batch and process.
        seed, rank, world_size: the data order (:func:`epoch_order`) and the augmentation seeds.
        workers: worker processes of the loader.
        augment: training augmentation (None or all off: none).
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 workers: int = 0, augment: AugmentConfig | None = None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.workers = workers
        self.augment = augment if augment is not None and augment.enabled else None
        self._loader: DataLoader | None = None
        self._sampler = _EpochSampler(self)
        self.in_process = workers == 0 and hasattr(dataset, "images")
        self._len = len(self.order(0))  # the same every epoch; epoch_order refuses a batch larger than the shard

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch)."""
        return self._len

    def order(self, epoch: int) -> list[torch.Tensor]:
        return epoch_order(len(self.dataset), self.batch_size, self.seed, epoch, self.rank, self.world_size)

    def epoch(self, epoch: int) -> Epoch:
        """The batches of ``epoch`` (0-based, over all phases)."""
        return Epoch(self, epoch)

    def _iterate(self, epoch: int):
        if self.in_process:
            items = _Items(self.dataset, self.augment, self.seed)
            for index in self.order(epoch):
                if self.augment is None:
                    yield self.dataset.batch(index)
                    continue
                x = torch.stack([items[(i, epoch)][0] for i in index.tolist()])
                labels = self.dataset.labels
                yield x.float().div_(255.0), None if labels is None else labels[index]
            return
        self._sampler.epoch = epoch  # read by the loader when its iterator starts (in this process)
        for images, labels in self.loader:
            yield images.float().div_(255.0), None if self.dataset.labels is None else labels

    @property
    def loader(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(
                _Items(self.dataset, self.augment, self.seed),
                batch_sampler=self._sampler,
                num_workers=self.workers,
                persistent_workers=self.workers > 0,
                prefetch_factor=2 if self.workers > 0 else None,
                # the loader draws its workers' base seed when an iterator starts: from its own generator, not
                # torch's global one, which the model's random draws (gumbel, re-seeding) use
                generator=torch.Generator().manual_seed(self.seed),
            )
        return self._loader

    def close(self) -> None:
        """Stop the worker processes (they also stop when the source is garbage-collected)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None) if loader is not None else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
