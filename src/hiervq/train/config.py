"""Run configuration: YAML files validated into typed dataclasses, with ``--set a.b=c`` overrides."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DataConfig
from ..errors import ConfigError
from ..pretrained import REGISTRY, build, parse_config
from ..schema import from_dict, to_dict, validated

OPTIMIZERS = ("adam", "adamw")
#: the largest batch size accepted (train.batch_size, train.eval_batch_size): larger ones only fail in the allocator
MAX_BATCH = 2**20
#: seeds are in [0, MAX_SEED) (torch and numpy take 64-bit seeds)
MAX_SEED = 2**63
SCHEDULES = ("cosine", "exponential", "constant")
KEEP = ("best", "last")


@dataclass
class PhaseConfig:
    """One training phase: a phase name the model knows (see ``DiscreteAutoencoder.phases``), its epochs,
    and optionally its own learning rate and schedule."""

    name: str = "all"
    epochs: int = 1
    lr: float | None = None
    schedule: str | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    ``epochs`` is used when ``phases`` is not given (one phase, ``all``). Schedules: ``cosine`` (from ``lr``
    to ``lr * min_lr_ratio`` over the phase, after ``warmup_steps`` of linear warm-up), ``exponential``
    (``lr * exp(-step / decay_steps)``, decayed every optimiser step of the phase: PQ-VAE's exp(-step / 25000) is
    ``schedule: exponential`` with ``decay_steps: 25000``) or ``constant``.
    ``tensorboard``: also log the scalars of ``metrics.jsonl`` and the test reconstruction grid to
    ``RUN/tensorboard/`` (autoencoder runs; needs the ``tensorboard`` extra; :mod:`hiervq.train.tensorboard`),
    and the training loss of every ``log_every``-th optimiser step (``train_step/loss``, ...).

    ``keep``: which weights the run's final model holds when the data has a validation split: ``best`` (the
    epoch with the lowest val MSE; the default) or ``last``. Per-epoch numbers are on val; the test split is evaluated
    once, at the end (``summary.json``: ``"val"``, ``"test"``, ``"selected_on"``).

    ``amp``: bf16 autocast (CPU or GPU); the vector, FSQ and LFQ quantizers compute in float32 inside it (see
    docs/performance.md for what it costs in precision and gains in speed). ``compile``: ``torch.compile`` the model's convolution stacks for the training
    forward (:func:`hiervq.nn.compile_stacks`; a few minutes of compilation at the start of every process, then
    faster steps; same results up to float rounding).
    """

    epochs: int = 10
    phases: list[PhaseConfig] | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_steps: float = 25000.0
    grad_clip: float | None = 1.0
    eval_every: int = 1
    eval_limit: int | None = None
    amp: bool = False
    compile: bool = False
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = False
    log_every: int = 50
    keep: str = "best"

    def validate(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        schedules = [self.schedule] + [p.schedule for p in self.phases or [] if p.schedule]
        for s in schedules:
            if s not in SCHEDULES:
                raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {s!r}")
        checks = [
            ("epochs", self.epochs, self.epochs >= 0, ">= 0"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1, ">= 1"),
            ("batch_size", self.batch_size, self.batch_size <= MAX_BATCH, f"<= {MAX_BATCH}"),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size <= MAX_BATCH, f"<= {MAX_BATCH}"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0"),
            ("min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("decay_steps", self.decay_steps, self.decay_steps > 0, "> 0"),
            ("grad_clip", self.grad_clip, self.grad_clip is None or self.grad_clip >= 0, ">= 0 or null (0: off)"),
            ("eval_every", self.eval_every, self.eval_every >= 1, ">= 1"),
            ("log_every", self.log_every, self.log_every >= 1, ">= 1"),
            ("eval_limit", self.eval_limit, self.eval_limit is None or self.eval_limit >= 1, ">= 1 or null"),
        ]
        for i, p in enumerate(self.phases or []):
            checks.append((f"phases.{i}.epochs", p.epochs, p.epochs >= 0, ">= 0"))
            checks.append((f"phases.{i}.lr", p.lr, p.lr is None or p.lr > 0, "> 0 or null"))
        for key, value, ok, rule in checks:
            if not ok:
                raise ValueError(f"{key} must be {rule}, got {value}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if not all(0.0 <= b < 1.0 for b in self.betas):  # NaN fails too
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        check_device_name(self.device)
        if self.decay_steps <= 0 or self.warmup_steps < 0:
            raise ValueError(f"decay_steps must be > 0 and warmup_steps >= 0, got {self.decay_steps}, {self.warmup_steps}")

    def phase_list(self) -> list[PhaseConfig]:
        return list(self.phases) if self.phases else [PhaseConfig("all", self.epochs)]


def check_device_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is ``auto`` or a device torch knows (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``, ...); whether it is present is checked when the run starts
    (:func:`hiervq.train.distributed.resolve_device`)."""
    if name == "auto":
        return
    import torch

    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or another torch device, got {name!r}") from None


def check_seed(key: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` (the config key ``key``) is a seed torch and numpy take: [0, 2**63)."""
    if not 0 <= value < MAX_SEED:
        raise ValueError(f"{key} must be in [0, 2**63), got {value}")


SECTIONS: dict[str, type] = {}  # optional run-config section name -> its dataclass, registered by its consumer


def register_section(name: str):
    """Class decorator: the dataclass of an optional run-config section ``name:`` (``compare``, ``priors``, ...).

    The recipe that reads the section owns its dataclass and registers it here (``hiervq.experiments.config``,
    ``hiervq.priors.config``, ``hiervq.classify.config``; ``import hiervq`` imports them), so the train layer
    knows the names but none of the types. :func:`config_from_dict` validates a registered section with
    :func:`hiervq.schema.from_dict` (an unknown key names the key and the file); an unregistered top-level key is
    an error like any unknown key."""
    if name in {f.name for f in dataclasses.fields(RunConfig)}:
        raise ValueError(f"{name!r} is a RunConfig field, not an optional section")

    def deco(cls: type) -> type:
        SECTIONS[name] = cls
        return cls

    return deco


@dataclass
class RunConfig:
    """A whole run: ``model`` (a ``name`` plus that model's own keys), ``data``, ``train``, ``seed``, and the
    optional sections registered with :func:`register_section` by the recipes that read them (``compare``,
    ``sweep``, ``study``: :mod:`hiervq.experiments.config`; ``priors``: :mod:`hiervq.priors.config`;
    ``classify``: :mod:`hiervq.classify.config`). A plain ``hiervq train`` ignores those.

    ``model`` is the section as written (what ``config.yaml`` keeps, and what capacity matching and sweeps
    rewrite); :attr:`model_config` is the same section as its model's typed ``Config``, parsed once.
    A section is read as an attribute (``config.priors``: its dataclass, or None when the config has none),
    set as one (``config.priors = PriorsConfig()``), and kept in :attr:`sections`;
    :meth:`with_sections` is :func:`dataclasses.replace` for them.
    """

    model: dict[str, Any] = field(default_factory=lambda: {"name": "hvqvae"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    sections: dict[str, Any] = field(default_factory=dict, repr=False)  # the optional sections given, parsed
    source: str = field(default="<defaults>", init=False, compare=False, repr=False)

    def validate(self) -> None:
        check_seed("seed", self.seed)

    def __getattr__(self, name: str) -> Any:  # only called for names that are not attributes
        if name in SECTIONS:
            return self.__dict__.get("sections", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SECTIONS:
            if value is not None and not isinstance(value, SECTIONS[name]):
                raise TypeError(f"{name} must be a {SECTIONS[name].__name__} or None, got {type(value).__name__}")
            sections = dict(self.sections)
            sections[name] = value
            object.__setattr__(self, "sections", {k: v for k, v in sections.items() if v is not None})
        else:
            object.__setattr__(self, name, value)

    def with_sections(self, **sections: Any) -> RunConfig:
        """A copy with the optional sections given replaced (None removes one), e.g. ``with_sections(classify=None)``."""
        out = dataclasses.replace(self, sections=dict(self.sections))
        out.source = self.source
        for name, value in sections.items():
            if name not in SECTIONS:
                raise TypeError(f"{name!r} is not a registered run-config section (known: {', '.join(SECTIONS)})")
            setattr(out, name, value)
        return out

    @property
    def model_name(self) -> str:
        return self.model["name"]

    def model_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    @property
    def model_config(self) -> Any:
        """The model section as the registered model's dataclass ``Config`` (e.g. ``HierarchicalConfig``), parsed
        and validated once, when the config is read (again only if :attr:`model` is changed afterwards). Keys the
        section leaves out keep their defaults; :meth:`build_model` fills ``in_channels``/``image_size`` from the
        data."""
        cached = self.__dict__.get("_model_config")
        if cached is None or cached[0] != self.model:
            cached = (copy.deepcopy(self.model), _parse_model(self.model, self.source))
            self.__dict__["_model_config"] = cached
        return cached[1]

    def build_model(self, in_channels: int | None = None, image_size: int | None = None):
        """The model, with ``in_channels``/``image_size`` taken from the data when the config leaves them out."""
        config = copy.deepcopy(self.model_config)  # the model may keep (and change) parts of its config
        fill = {k: v for k, v in (("in_channels", in_channels), ("image_size", image_size))
                if v is not None and k not in self.model}
        if fill:
            config = validated(dataclasses.replace(config, **fill), f"{self.source}: model")
        return build(self.model_name, config)

    def to_dict(self) -> dict[str, Any]:
        """Plain form (what ``config.yaml`` holds): model, data, train, seed, then every registered section
        (null when the config has none)."""
        d = {name: to_dict(getattr(self, name)) for name in ("model", "data", "train", "seed")}
        for name in SECTIONS:
            d[name] = to_dict(self.sections.get(name))
        return d


def _parse_model(model: Any, where: str) -> Any:
    """The typed config of a run config's model section (``where``: the file, for the messages)."""
    if not isinstance(model, dict) or "name" not in model:
        raise ConfigError(f"{where}: model must be a mapping with a 'name' (known: {', '.join(sorted(REGISTRY))})")
    name = model["name"]
    if name not in REGISTRY:
        raise ConfigError(f"{where}: model.name {name!r} is not a known model (known: {', '.join(sorted(REGISTRY))})")
    return parse_config(name, {k: v for k, v in model.items() if k != "name"}, f"{where}: model")


class AliasError(yaml.YAMLError):
    """A YAML alias (``*name``) in a config: refused, since a few hundred bytes of nested aliases expand to
    billions of values (the "billion laughs")."""


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (anchors alone are harmless). Configs are short and written by
    hand; repeat a value instead of aliasing it."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasError(f"YAML aliases (*{event.anchor}) are not allowed in configs, at line "
                             f"{event.start_mark.line + 1}; write the value out instead")
        return super().compose_node(parent, index)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` without aliases (:class:`NoAliasLoader`)."""
    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar/list syntax (``3``, ``1e-3``, ``true``, ``null``, ``[1, 2]``, ``name``)."""
    try:
        return safe_load(text)
    except AliasError as exc:
        raise ConfigError(f"--set value {text[:60]!r}: {exc}") from None
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested dict (list items by index: ``model.levels.0.dim=32``)."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=5")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key component")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {where} is not an index of a list of {len(node)}")
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
                if node is None:
                    node = {}
            else:
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: {last} is not an index of a list of {len(node)}")
            node[int(last)] = parse_value(text)
        elif isinstance(node, dict):
            node[last] = parse_value(text)
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")
    return raw


def config_from_dict(raw: dict[str, Any] | None, where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`; errors name the key and ``where``."""
    raw = dict(raw or {})
    model = raw.pop("model", {"name": "hvqvae"})
    if "sections" in raw:
        raise ConfigError(f"{where}: unknown key 'sections' (known: {', '.join(_known_keys())})")
    given = {name: raw.pop(name) for name in list(raw) if name in SECTIONS}
    unknown = sorted(set(raw) - set(_known_keys()))
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(_known_keys())})")
    config = from_dict(RunConfig, raw, f"{where}:")
    for name, value in given.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: {name}: expected a mapping, got {value!r}")
    config.sections = {name: from_dict(SECTIONS[name], value, f"{where}: {name}")
                       for name, value in given.items() if value is not None}
    config.model = dict(model) if isinstance(model, dict) else model
    config.source = where
    _ = config.model_config  # parsed (and validated) now: a bad key fails here, naming the file
    return config


def _known_keys() -> list[str]:
    return ["model", "data", "train", "seed", *SECTIONS]


def read_yaml_mapping(path: Path, what: str = "a config must be a mapping of sections (model, data, train, seed)") -> dict:
    """The mapping in the YAML file ``path`` (which must exist); invalid YAML or another kind of document is a
    :class:`ConfigError` naming the file (``what`` says what the mapping should be)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = safe_load(text) or {}
    except AliasError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {what}")
    return raw


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults when ``path`` is None) and apply ``--set`` overrides. ``path`` is a
    file or the name of a shipped recipe (:func:`hiervq.recipes.resolve_config`)."""
    from ..recipes import resolve_config

    raw: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        path = resolve_config(path)
        where = str(path)
        raw = read_yaml_mapping(path)
    return with_overrides(raw, overrides, where)


def with_overrides(raw: dict[str, Any], overrides: list[str] | None, where: str) -> RunConfig:
    """The config ``raw`` (read from ``where``) with ``--set`` overrides applied, validated. An error the file
    already has names the file; one that only the overrides bring in names the overrides."""
    config = config_from_dict(raw, where)
    if not overrides:
        return config
    return config_from_dict(apply_overrides(raw, overrides), f"--set {' '.join(overrides)} (over {where})")


def dump_config(config: RunConfig) -> str:
    """YAML text of a resolved config (what a run directory keeps as ``config.yaml``)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
