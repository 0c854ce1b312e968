"""Run configuration: YAML files validated into typed dataclasses, with ``--set a.b=c`` overrides."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..classify.config import ClassifyConfig
from ..data import DataConfig
from ..errors import ConfigError
from ..pretrained import REGISTRY, build
from ..schema import from_dict, to_dict
from .experiment_config import CompareConfig, StudyConfig, SweepConfig

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "exponential", "constant")


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

    def validate(self) -> None:
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
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0"),
            ("min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("decay_steps", self.decay_steps, self.decay_steps > 0, "> 0"),
            ("grad_clip", self.grad_clip, self.grad_clip is None or self.grad_clip >= 0, ">= 0 or null (0: off)"),
            ("eval_every", self.eval_every, self.eval_every >= 1, ">= 1"),
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
        if self.decay_steps <= 0 or self.warmup_steps < 0:
            raise ValueError(f"decay_steps must be > 0 and warmup_steps >= 0, got {self.decay_steps}, {self.warmup_steps}")

    def phase_list(self) -> list[PhaseConfig]:
        return list(self.phases) if self.phases else [PhaseConfig("all", self.epochs)]


PRIOR_LEVEL_KEYS = ("class_conditional", "model", "train")


@dataclass
class PriorsConfig:
    """``priors:``: defaults of the priors fitted to this run's codes (``hiervq prior RUN``, see
    :mod:`hiervq.train.prior`); a plain ``hiervq train`` ignores it.

    Attributes:
        class_conditional: condition every prior on the class label (``--class-conditional`` overrides).
        model: the prior's architecture keys (for a PixelCNN: channels, layers, kernel_size, cond_channels,
            cond_blocks, head_channels, dropout); K, the level above and the classes follow from the run.
        train: optimisation of the prior (the keys of ``train:``; phases and amp are not used).
        levels: optional per-level overrides, bottom first: mappings with any of ``class_conditional``,
            ``model``, ``train`` (merged over the keys above).
        code_batch_size: images per batch when the codes are extracted.
    """

    class_conditional: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    levels: list[dict[str, Any]] | None = None
    code_batch_size: int = 256

    def validate(self) -> None:
        for i, entry in enumerate(self.levels or []):
            if not isinstance(entry, dict):
                raise ValueError(f"levels.{i} must be a mapping with keys {', '.join(PRIOR_LEVEL_KEYS)}")
            unknown = sorted(set(entry) - set(PRIOR_LEVEL_KEYS))
            if unknown:
                raise ValueError(f"levels.{i}: unknown key(s) {', '.join(unknown)} (known: {', '.join(PRIOR_LEVEL_KEYS)})")
        if self.code_batch_size < 1:
            raise ValueError("code_batch_size must be >= 1")


@dataclass
class RunConfig:
    """A whole run: ``model`` (a ``name`` plus that model's own keys), ``data``, ``train``, ``seed``, and the
    optional experiment sections ``compare``, ``sweep``, ``study`` (see :mod:`hiervq.train.experiment_config`)."""

    model: dict[str, Any] = field(default_factory=lambda: {"name": "hvqvae"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    compare: CompareConfig | None = None  # hiervq compare / sweep: the capacity-matched single-level twin
    sweep: SweepConfig | None = None  # hiervq sweep: grid and named variants
    study: StudyConfig | None = None  # snapshots of training (reconstructions, t-SNE of code vectors)
    priors: PriorsConfig | None = None  # hiervq prior / sample: priors over this run's codes
    classify: ClassifyConfig | None = None  # hiervq classify: label-fraction classification on the features
    source: str = field(default="<defaults>", init=False, compare=False, repr=False)

    @property
    def model_name(self) -> str:
        return self.model["name"]

    def model_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    def build_model(self, in_channels: int | None = None, image_size: int | None = None):
        """The model, with ``in_channels``/``image_size`` taken from the data when the config leaves them out."""
        params = self.model_params()
        if in_channels is not None:
            params.setdefault("in_channels", in_channels)
        if image_size is not None:
            params.setdefault("image_size", image_size)
        return build(self.model_name, params, where=f"{self.source}: model")

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d.pop("source", None)
        return d


def _validate_model(model: Any, where: str) -> dict[str, Any]:
    if not isinstance(model, dict) or "name" not in model:
        raise ConfigError(f"{where}: model must be a mapping with a 'name' (known: {', '.join(sorted(REGISTRY))})")
    name = model["name"]
    if name not in REGISTRY:
        raise ConfigError(f"{where}: model.name {name!r} is not a known model (known: {', '.join(sorted(REGISTRY))})")
    params = {k: v for k, v in model.items() if k != "name"}
    from_dict(REGISTRY[name].Config, params, f"{where}: model")  # validates keys and types now
    return dict(model)


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar/list syntax (``3``, ``1e-3``, ``true``, ``null``, ``[1, 2]``, ``name``)."""
    try:
        return yaml.safe_load(text)
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
    config = from_dict(RunConfig, raw, f"{where}:")
    config.model = _validate_model(model, where)
    config.source = where
    return config


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
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {what}")
    return raw


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    raw: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        path = Path(path)
        where = str(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a config file")
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
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
