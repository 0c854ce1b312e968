"""Typed dataclasses from plain dicts (YAML/JSON), with errors that name the bad key and where it came from."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ``where`` names it in errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1 and dataclasses.is_dataclass(real[0]) and isinstance(value, dict):
            return _convert(value, real[0], where)  # an optional block: its own error names the bad key
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # .nan / .inf: never a meaningful setting, and NaN passes every `x <= 0` check
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`. Keys renamed
    since (``cls.RENAMED_KEYS``, old -> new; a dotted new name moves a key into a section) are read as their new
    name: the one migration of renamed keys, for configs and saved models written before the rename (the classes
    themselves take the new names only; :func:`with_old_keys` is the inverse).
    A key of ``cls.REFUSED_KEYS`` (key -> reason) is an error giving that reason.

    ``where`` prefixes every message (e.g. ``"configs/demo.yaml: model"``) so the user sees which key of which
    file is wrong; a ``where`` ending in ``":"`` (a file name) is followed by the bare key path.
    """
    data = dict(data or {})
    prefix = f"{where} " if where.endswith(":") else f"{where}."
    where = where.rstrip(":")
    moved = []
    for old, new in getattr(cls, "RENAMED_KEYS", {}).items():  # configs and saved models from before a rename
        if old in data:
            head, _, tail = new.partition(".")
            if not tail:
                if new in data:
                    raise ConfigError(f"{where}: give {new!r} only ({old!r} is its old name)")
                data[new] = data.pop(old)
                continue
            # a setting moved into a section (``estimator`` -> ``quantizer.estimator``)
            section = data.get(head)
            if section is None:
                section = {}
            if not isinstance(section, dict):
                raise ConfigError(f"{prefix}{head}: expected a mapping, got {section!r}")
            if tail in section:
                raise ConfigError(f"{where}: give {new!r} only ({old!r} is its old spelling)")
            data[head] = {**section, tail: data.pop(old)}
            moved.append((old, new))
    if moved:
        warnings.warn(f"{where}: {', '.join(repr(o) for o, _ in moved)} moved; write "
                      f"{', '.join(repr(n) for _, n in moved)} (the old spelling is deprecated)",
                      DeprecationWarning, stacklevel=2)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    refused = [k for k in getattr(cls, "REFUSED_KEYS", {}) if k in data and k not in fields]
    if refused:  # a key users bring from another family's config, with the reason it does not apply here
        raise ConfigError(f"{prefix}{refused[0]}: {cls.REFUSED_KEYS[refused[0]]}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(fields)})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{prefix}{name}")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None
    return validated(obj, where)


def validated(obj: T, where: str = "config") -> T:
    """``obj`` after its ``validate()`` (if it has one); a ``ValueError`` becomes a :class:`ConfigError` naming
    ``where``. For a dataclass built or changed in code (e.g. with :func:`dataclasses.replace`)."""
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{where.rstrip(':')}: {exc}") from None
    return obj


def with_old_keys(config: Any) -> Any:
    """:func:`to_dict` of a config dataclass as it was written before the keys changed (for ids that must not change
    with them, e.g. the codec's model id): in every dataclass of the tree, keys added since (``ID_DEFAULTS``, key ->
    default) left out at their default, keys renamed since (``RENAMED_KEYS``, old -> new) under their old names,
    settings moved into a section (``quantizer.estimator``) back at the top level, and a section they leave empty
    dropped. The inverse of what :func:`from_dict` reads; together the one place renamed keys are handled."""
    if isinstance(config, (list, tuple)):
        return [with_old_keys(v) for v in config]
    if isinstance(config, dict):
        return {k: with_old_keys(v) for k, v in config.items()}
    if not dataclasses.is_dataclass(config):
        return config
    d = {f.name: with_old_keys(getattr(config, f.name)) for f in dataclasses.fields(config)}
    for key, default in getattr(type(config), "ID_DEFAULTS", {}).items():
        if d.get(key, default) == default:
            d.pop(key, None)
    for old, new in getattr(type(config), "RENAMED_KEYS", {}).items():
        head, _, tail = new.partition(".")
        if not tail:
            if new in d:
                d[old] = d.pop(new)
        elif isinstance(d.get(head), dict) and tail in d[head]:
            d[old] = d[head].pop(tail)
            if not d[head]:
                del d[head]
    return d


def to_dict(obj: Any) -> Any:
    """Plain (JSON/YAML-ready) form of a dataclass tree; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
