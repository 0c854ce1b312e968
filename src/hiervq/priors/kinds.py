"""Dispatch from an autoencoder family to the way its priors are built, trained and sampled.

``hiervq prior`` and ``hiervq sample`` (and :mod:`hiervq.train.priors`, :mod:`hiervq.priors.sampling`) never name a concrete model: they look
up ``prior_kind_for(model)`` and call its methods. Each family of autoencoders registers one :class:`PriorKind`
under its registry name(s) (``@register_prior_kind("hvqvae", "vqvae")``). The lookup walks the model class's
MRO, so a subclass of a registered model uses its parent's kind unless it registers its own.

Adding a family (e.g. a transformer prior over a (B, L) code sequence from ``model.encode``):

1. write the prior as a registered ``nn.Module`` with a dataclass ``Config`` (``@register("name")`` from
   :mod:`hiervq.pretrained`), so ``hiervq.load(PRIOR_DIR)`` rebuilds it;
2. subclass :class:`PriorKind`, implement the methods below, decorate it with
   ``@register_prior_kind("<autoencoder registry name>")`` and import its module in ``hiervq/priors/__init__.py``.

Everything else -- code extraction and caching, the training loop, bits per code / per image, the prior run
directory, the sample grid and samples per second -- is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import HierVQError
from ..pretrained import save_pretrained
from ..schema import from_dict
from .embed import check_layout

PRIOR_KINDS: dict[str, PriorKind] = {}


def config_with_derived(config_cls: type, params: dict, derived: dict, where: str):
    """``config_cls`` from the user's ``params`` and the keys ``derived`` from the autoencoder and the data (K,
    the level above, the classes ...); a derived key among ``params`` (or its old name) is an error naming it."""
    old_names = {old: new for old, new in getattr(config_cls, "RENAMED_KEYS", {}).items() if new in derived}
    fixed = sorted(k for k in params if k in derived or k in old_names)
    if fixed:
        raise HierVQError(f"{where}: {', '.join(fixed)} follow from the autoencoder and data; remove them")
    return from_dict(config_cls, {**params, **derived}, where)


class PriorKind:
    """How priors are fitted and sampled for one family of autoencoders.

    A model's codes, as ``model.codes_to_list(model.encode(x))`` gives them, are a list of index tensors (one
    per level for a hierarchical model). A *level* here is an index into the priors the family needs (for a
    hierarchical VQ-VAE: its levels, 0 = bottom; for a single-sequence model: 0). Per level one prior is trained.
    """

    name = "base"
    #: whether the priors model the codes of any image size (convolutional), not only of the model's own
    any_grid = False

    def prior_levels(self, model) -> list[int]:
        """Levels that need a prior, in sampling order (the one sampled first comes first)."""
        raise NotImplementedError

    def parse_level(self, model, text: str | int | None) -> int:
        """The level a user named (``None``: the family's default). Raise :class:`HierVQError` if unknown."""
        levels = self.prior_levels(model)
        if text is None:
            if len(levels) == 1:
                return levels[0]
            raise HierVQError(f"this model has {len(levels)} levels; choose one with --level ({self.level_names(model)})")
        try:
            level = int(text)
        except (TypeError, ValueError):
            raise HierVQError(f"unknown level {text!r} (choose {self.level_names(model)})") from None
        if level not in levels:
            raise HierVQError(f"level {level} does not exist (choose {self.level_names(model)})")
        return level

    def level_names(self, model) -> str:
        return ", ".join(str(lv) for lv in sorted(self.prior_levels(model)))

    def level_info(self, model, level: int) -> dict:
        """``{"grid": [...], "codebook_size": K, "codes_per_image": n}`` of the codes this level's prior models; n
        counts every code (H * W * L for a level of L codes per position), so bits per image and the uniform
        log2(K) x n cover them all. Raise :class:`HierVQError` (one line naming the level) for a level the family's
        priors cannot model; the codec calls this for every level before it codes anything."""
        raise NotImplementedError

    def build_prior(self, model, level: int, params: dict, num_classes: int | None, where: str) -> nn.Module:
        """A fresh prior for ``level``: ``params`` are the user's architecture keys (validated here, errors
        naming ``where``); ``num_classes`` is set when the prior is class-conditional."""
        raise NotImplementedError

    def nll(self, prior: nn.Module, codes: list[torch.Tensor], labels: torch.Tensor | None, level: int) -> torch.Tensor:
        """Negative log-likelihood (B,) in nats of this level's codes per image, given the batch's codes of
        every level (``codes_to_list`` layout) and labels (``None`` unless the prior is class-conditional)."""
        raise NotImplementedError

    def logits(self, prior: nn.Module, codes: list[torch.Tensor], labels: torch.Tensor | None, level: int) -> torch.Tensor:
        """Logits (B, n, K) of each of ``level``'s n codes per image given the codes before it (and the levels
        above), in the order :meth:`walk` visits them, from one pass over the batch's codes (``codes_to_list``
        layout; teacher forcing). ``labels`` as in :meth:`nll`."""
        raise NotImplementedError

    def symbols(self, prior: nn.Module, codes: list[torch.Tensor], level: int) -> torch.Tensor:
        """``level``'s codes (B, n) in the order :meth:`logits` and :meth:`walk` give them (the order they are
        coded in); default: the codes flattened (raster order, then depth)."""
        return codes[level].reshape(codes[level].shape[0], -1)

    def walk(
        self,
        model,
        priors: dict[int, nn.Module],
        n: int,
        labels: torch.Tensor | None,
        choose: Callable[[int, torch.Tensor], torch.Tensor],
        grids: dict[int, tuple[int, ...]] | None = None,
    ) -> list[torch.Tensor]:
        """Fill ``n`` images' codes position by position, level by level in :meth:`prior_levels` order:
        ``choose(level, logits (n, K))`` -> codes (n,) picks each position's codes given everything chosen before
        (a draw when sampling, the entropy decoder when decompressing); a prior that predicts P codes at once (the
        checkerboard prior) calls ``choose(level, logits (n, P, K))`` -> codes (n, P), in :meth:`symbols` order. ``grids`` ({level: grid}) default to the
        model's own (``model.levels``). Returns the ``codes_to_list`` layout."""
        raise NotImplementedError

    def sample(
        self,
        model,
        priors: dict[int, nn.Module],
        n: int,
        labels: torch.Tensor | None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Sample ``n`` images' codes with the priors (one per level in :meth:`prior_levels`) in the
        ``codes_to_list`` layout; ``model.decode(model.codes_from_list(result))`` turns them into images.
        ``labels`` (n,) go to the class-conditional priors (see :func:`takes_labels`)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.walk(model, priors, n, labels, lambda level, logits: draw(logits, temperature, generator))


def draw(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One code per row (B,) drawn from softmax(logits (B, K) / temperature); (B, P, K) -> (B, P)."""
    probs = torch.softmax(logits.float().reshape(-1, logits.shape[-1]) / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].reshape(logits.shape[:-1])


#: the most classes a class-conditional prior takes (its embeddings have a row per class)
MAX_CLASSES = 2**16


def check_num_classes(num_classes: int | None) -> None:
    """Raise ``ValueError`` unless ``num_classes`` (of a prior's config) is null or in [1, :data:`MAX_CLASSES`]: the
    number of classes is the largest label + 1, so labels like 2**40 would ask the allocator for terabytes."""
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}] or null, got {num_classes} (a class-conditional "
                         f"prior takes class labels 0 ... {MAX_CLASSES - 1})")


def check_labels(num_classes: int | None, labels: torch.Tensor | None, batch: int) -> None:
    """Raise ``ValueError`` unless ``labels`` fit a prior with ``num_classes`` (``None``: not class-conditional, so
    no labels) for a batch of ``batch``: shape (batch,), values in [0, num_classes)."""
    if num_classes is None:
        if labels is not None:
            raise ValueError("this prior was built without num_classes; it takes no labels")
        return
    if labels is None:
        raise ValueError("this prior is class-conditional: pass labels (B,)")
    if labels.shape != (batch,) or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be ({batch},) class indices in [0, {num_classes}), got shape "
                         f"{tuple(labels.shape)}")


def takes_labels(prior: nn.Module) -> bool:
    """Whether a prior is class-conditional (its config has a ``num_classes``)."""
    return getattr(getattr(prior, "config", None), "num_classes", None) is not None


def register_prior_kind(*model_names: str) -> Callable[[type[PriorKind]], type[PriorKind]]:
    """Class decorator: use this :class:`PriorKind` for autoencoders registered under ``model_names``."""

    def wrap(cls: type[PriorKind]) -> type[PriorKind]:
        instance = cls()
        for name in model_names:
            if name in PRIOR_KINDS and type(PRIOR_KINDS[name]) is not cls:
                raise ValueError(f"a prior kind is already registered for model {name!r}")
            PRIOR_KINDS[name] = instance
        return cls

    return wrap


def prior_kind_for(model) -> PriorKind:
    """The :class:`PriorKind` of an autoencoder (by its registry name, walking its class hierarchy)."""
    for cls in type(model).__mro__:
        name = cls.__dict__.get("registry_name")
        if name and name in PRIOR_KINDS:
            return PRIOR_KINDS[name]
    name = getattr(model, "registry_name", type(model).__name__)
    raise HierVQError(
        f"no prior is defined for {name} models (priors exist for: {', '.join(sorted(PRIOR_KINDS)) or 'none'})"
    )


@dataclass
class CodeMapPriorConfig:
    """What the configurations of the priors over a 2-D code map share (:class:`~hiervq.priors.PixelCNNConfig`,
    :class:`~hiervq.priors.CheckerboardConfig` add their own trunk): the modelled level's K, the width, and the
    conditioning on the level above and on a class.

    Attributes:
        codebook_size: K, the codebook size of the modelled level (logits over K per position).
        channels: C, the width of the network.
        cond_codebook_size: codebook size of the level above (``None``: no code-map conditioning, the top level).
        cond_channels: channels of the conditioning network (default ``channels``).
        cond_blocks: residual blocks applied to the embedded code map above, at its own grid.
        num_classes: number of class labels (``None``: not class-conditional).
        head_channels: hidden channels of the output head (default ``2 * channels``).
        depth: L, codes per position of the modelled level.
        cond_depth: codes per position of the level above (its code map is (B, h, w, cond_depth) when > 1).
        cond_scales: the schedule ((h, w) per scale) of a multi-scale level above: its codes are (B, T) tokens
            (``None``: the level above is a map).
    """

    codebook_size: int = 512
    channels: int = 64
    cond_codebook_size: int | None = None
    cond_channels: int | None = None
    cond_blocks: int = 2
    num_classes: int | None = None
    head_channels: int | None = None
    depth: int = 1
    cond_depth: int = 1
    cond_scales: list[list[int]] | None = None

    def validate(self) -> None:
        if self.codebook_size < 2 or self.channels < 1:
            raise ValueError(f"codebook_size must be >= 2 and channels >= 1, got {self.codebook_size}, {self.channels}")
        if self.cond_codebook_size is not None and self.cond_codebook_size < 1:
            raise ValueError("cond_codebook_size must be >= 1 or null")
        if self.cond_blocks < 0:
            raise ValueError("cond_blocks must be >= 0")
        if self.depth < 1 or self.cond_depth < 1:
            raise ValueError("depth and cond_depth must be >= 1")
        check_num_classes(self.num_classes)
        check_layout(self.cond_depth, self.cond_scales)


class CodeMapPrior(nn.Module):
    """What the priors over a 2-D code map share (:class:`~hiervq.priors.PixelCNN`,
    :class:`~hiervq.priors.CheckerboardPrior`): sampling through the subclass's ``walk(n, size, cond, labels,
    choose)`` (its own decoding order), the parameter count and saving."""

    @torch.no_grad()
    def sample(
        self,
        n: int,
        size: tuple[int, int],
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``n`` code maps (n, H, W) in the prior's decoding order (``walk``); ``temperature`` divides the
        logits."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.walk(n, size, cond, labels, lambda logits: draw(logits, temperature, generator))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory, extra: dict | None = None):
        """Write ``config.json`` + ``model.safetensors``; ``hiervq.load(directory)`` rebuilds the prior."""
        return save_pretrained(self, directory, extra)
