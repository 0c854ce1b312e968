"""Files on disk: atomic writes of bytes, images and strict JSON, and reading JSON and JSON-lines back.

Everything hiervq writes (into a run directory, and the PNGs of ``decode``, ``decompress`` and ``sample``) goes
through :func:`atomic_write_bytes` (or :func:`write_json`, :func:`write_image`), so a killed process or a full disk
leaves either the old file or the new one, never half of one; a command that writes several files does it inside
:class:`NewFiles`, which removes the files and folders it created when the command fails half-way. The layout of a run directory
(which file is where) is :class:`hiervq.layout.RunDir`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

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


def image_bytes(img, path: str | os.PathLike) -> bytes:
    """The Pillow image ``img`` encoded in memory in the format of ``path``'s suffix (PNG when it has none known)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise WriteError(f"cannot write {path}: {exc}") from None
    return buffer.getvalue()


def write_image(img, path: str | os.PathLike, write=None) -> None:
    """Write the Pillow image ``img`` to ``path`` atomically (``write(path, data)``, default
    :func:`atomic_write_bytes`)."""
    (write or atomic_write_bytes)(path, image_bytes(img, path))


class NewFiles:
    """The files and folders one command creates, written through :meth:`write` and :meth:`folder`; when an error
    leaves the ``with`` block they are removed again (files it replaced stay replaced: each was written whole).

    ::

        with NewFiles() as new:
            for target, data in outputs:
                new.write(target, data)
    """

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def folder(self, path: str | os.PathLike) -> Path:
        """Create the folder ``path`` (and its parents) unless it exists; a failure is a :class:`WriteError`."""
        path = Path(path)
        missing = []
        for p in [path, *path.parents]:
            if p.exists() or p.is_symlink():
                break
            missing.append(p)
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise WriteError(f"cannot create the folder {p}: {exc.strerror or exc}") from None
            self.folders.append(p)
        return path

    def write(self, path: str | os.PathLike, data: bytes) -> None:
        """:func:`atomic_write_bytes`, remembering ``path`` when it is new."""
        path = Path(path)
        self.folder(path.parent)
        new = not (path.exists() or path.is_symlink())
        atomic_write_bytes(path, data)
        if new:
            self.files.append(path)

    def __enter__(self) -> NewFiles:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            return
        for path in reversed(self.files):
            with contextlib.suppress(OSError):
                path.unlink()
        for path in reversed(self.folders):
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty


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


__all__ = ["NewFiles", "append_jsonl", "atomic_write_bytes", "image_bytes", "read_json", "read_jsonl", "umask", "write_image", "write_json",
           "write_jsonl"]
