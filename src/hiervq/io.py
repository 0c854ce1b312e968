"""Files on disk: atomic writes of bytes and strict JSON, and reading JSON and JSON-lines back.

Everything hiervq writes into a run directory goes through :func:`atomic_write_bytes` (or :func:`write_json`), so
a killed process leaves either the old file or the new one, never half of one. The layout of a run directory
(which file is where) is :class:`hiervq.layout.RunDir`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import HierVQError, WriteError


def umask() -> int:
    """The process umask, read without changing it where possible (``os.umask`` sets it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The file gets the mode ``open(path, "w")`` would give it: the replaced file's, else 0o666 less the umask
    (mkstemp alone would make it 0600). A kill before the rename leaves ``.NAME.XXXXXXXX.tmp`` beside ``path``
    (:func:`hiervq.train.rundir.remove_stale_tmp` removes those of a run when it starts again).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~umask()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with contextlib.suppress(OSError):  # e.g. a file system without modes
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):  # disk full, file too large, ...
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (no NaN/Infinity, which JSON parsers reject), indented, written atomically."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:
        raise HierVQError(f"{path}: refusing to write non-finite numbers (NaN/inf): {_nonfinite_keys(obj)}") from None
    atomic_write_bytes(path, (text + "\n").encode())


def _nonfinite_keys(obj: Any, prefix: str = "") -> str:
    if isinstance(obj, dict):
        found = [_nonfinite_keys(v, f"{prefix}{k}.") for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        found = [_nonfinite_keys(v, f"{prefix}{i}.") for i, v in enumerate(obj)]
    else:
        return prefix.rstrip(".") if isinstance(obj, float) and not math.isfinite(obj) else ""
    return ", ".join(f for f in found if f)


def read_json(path: str | os.PathLike) -> Any:
    """The parsed JSON file ``path``."""
    return json.loads(Path(path).read_text())


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append ``record`` as one line to the JSON-lines file ``path`` (not atomic: a line per call)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_jsonl(path: str | os.PathLike, records: list) -> None:
    """Replace the JSON-lines file ``path`` by ``records``, atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def read_jsonl(path: str | os.PathLike) -> list:
    """The records of the JSON-lines file ``path`` ([] when there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["append_jsonl", "atomic_write_bytes", "read_json", "read_jsonl", "umask", "write_json", "write_jsonl"]
