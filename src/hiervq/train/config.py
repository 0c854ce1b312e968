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
from ..recipes import resolve_config
from ..schema import from_dict, to_dict, validated
from ..tasks import (  # noqa: F401 - the training settings live below the engine (hiervq.tasks); re-exported
    KEEP,
    MAX_BATCH,
    MAX_SEED,
    OPTIMIZERS,
    SCHEDULES,
    SECTIONS,
    PhaseConfig,
    TrainConfig,
    check_device_name,
    check_seed,
    register_section,
)


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
