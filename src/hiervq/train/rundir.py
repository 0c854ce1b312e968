"""What may be written, replaced and deleted on disk: run directories, their lock, ``--overwrite``, stale temp files.

One rule for every ``--overwrite`` (train, prior, compare, sweep, classify): hiervq deletes only a directory that is
recognisably its own output (:func:`check_replaceable`): it holds the marker file :data:`RUN_MARKER` (written when
hiervq creates an output directory) or, for runs written before the marker existed, ``config.yaml`` with
``checkpoints/`` or ``model/`` (or a ``compare.json`` / ``sweep.json`` / ``results.json``), and nothing but entries
hiervq writes (:data:`KNOWN_ENTRIES`, :data:`KNOWN_PATTERNS`). The working directory, its parents, ``/`` and the
home directory are never replaced.

A run is replaced only once the new one has started (:func:`start_run_dir`): the new run is built in a sibling
``.NAME.new-*`` directory and swapped in, and only then is the old one deleted.

Every process that writes a run directory holds :class:`RunLock` for its whole life: an exclusive
:mod:`filelock` lock on the sibling file ``.NAME.lock`` (beside the run, not inside it, so that it is the same file
before and after a swap, and exists before the run directory does). The holder's PID is written to the sidecar
``.NAME.lock.pid`` (the lock file itself may be truncated by a contender's open with older filelock versions); the
sidecar is removed on release, the empty lock file is kept (deleting a lock file others may have opened is a race).

Which file lives where in a run is :class:`hiervq.layout.RunDir` (re-exported here); the names the output folders
of compare, sweep and classify use are in :mod:`hiervq.layout` too, so :data:`KNOWN_ENTRIES` is built from them.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import HierVQError
from ..io import atomic_write_bytes, umask
from ..layout import (
    CLASSIFY_RESULT,
    COMPARE_RESULT,
    COMPARE_RUNS,
    POINT_FILE,
    PRETRAIN_DIR,
    RUNS_ROOT,
    SWEEP_POINTS,
    SWEEP_RESULT,
    SWEEP_TABLE,
    RunDir,
)

RUN_MARKER = RunDir.MARKER
#: what hiervq writes at the top of a run, prior run, compare, sweep or classify output directory
KNOWN_ENTRIES = frozenset({
    *RunDir.ENTRIES,  # runs and prior runs
    *COMPARE_RUNS, COMPARE_RESULT,  # compare
    SWEEP_POINTS, POINT_FILE, SWEEP_RESULT, SWEEP_TABLE,  # sweep
    PRETRAIN_DIR, CLASSIFY_RESULT,  # classify
})
#: names of figures, lock files, interrupted swaps and atomic-write temp files
KNOWN_PATTERNS = ("*.png", ".*.lock", ".*.lock.pid", ".*.new-*", ".*.old-*", ".*.tmp")
LEGACY_RESULT_FILES = (COMPARE_RESULT, SWEEP_RESULT, CLASSIFY_RESULT)
#: the temporary names :func:`hiervq.pretrained.atomic_write_bytes` writes through (``.NAME.<8 chars>.tmp``)
STALE_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
STALE_TMP_DIRS = RunDir.WRITTEN_DIRS


def default_run_dir(config: str | os.PathLike | None) -> Path:
    """The run directory of a config without ``--out``: ``runs/<config file name without suffix>`` (``runs/default``
    without a config file)."""
    return RunDir.default(config).path


def _is_known(name: str) -> bool:
    return name in KNOWN_ENTRIES or any(fnmatch.fnmatchcase(name, p) for p in KNOWN_PATTERNS)


def is_hiervq_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory hiervq wrote (marker, or the layout of a run from before the marker)."""
    path = Path(path)
    run = RunDir(path)
    if run.marker.is_file():
        return True
    if run.config.is_file() and ((path / RunDir.CHECKPOINTS).is_dir() or run.model.is_dir()):
        return True
    return any((path / name).is_file() for name in LEGACY_RESULT_FILES)


def _protected(path: Path) -> str | None:
    """Why ``path`` (resolved) may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if path == cwd:
        return "it is the working directory"
    if path in cwd.parents:
        return "it is a parent of the working directory"
    try:
        home = Path.home().resolve()
    except (KeyError, RuntimeError):
        home = None
    if home is not None and (path == home or path in home.parents):
        return "it is your home directory" if path == home else "it holds your home directory"
    return None


def check_replaceable(path: str | os.PathLike, what: str = "run directory") -> None:
    """Raise HierVQError unless ``--overwrite`` may delete ``path`` (see the module docstring); a missing or empty
    directory passes unless it is protected."""
    path = Path(path)
    if path.is_symlink():
        raise HierVQError(f"refusing to overwrite {path}: it is a symbolic link (remove it yourself or choose another --out)")
    if not path.exists():
        return
    if not path.is_dir():
        raise HierVQError(f"refusing to overwrite {path}: it is a file, not a {what}")
    why = _protected(path.resolve())
    if why:
        raise HierVQError(f"refusing to overwrite {path}: {why}; choose another --out")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    if not is_hiervq_output(path):
        raise HierVQError(
            f"refusing to overwrite {path}: not a hiervq {what} (no {RUN_MARKER}, nor config.yaml with checkpoints/ "
            "or model/); delete it yourself or choose another --out"
        )
    unknown = [name for name in entries if not _is_known(name)]
    if unknown:
        raise HierVQError(
            f"refusing to overwrite {path}: it holds {unknown[0]}"
            f"{f' and {len(unknown) - 1} more' if len(unknown) > 1 else ''}, which hiervq did not write; "
            "move it away or choose another --out"
        )


def check_output_path(path: str | os.PathLike, folder: bool, what: str) -> Path:
    """Before any work: raise HierVQError unless ``path`` can be written as a file (``folder=False``) or folder,
    creating missing parents: a file where a folder is expected (or the reverse), a parent that is a file, or a
    parent folder this process may not write to. ``what`` names it in the message (e.g. "-o", "--out")."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise HierVQError(f"{what} {path}: is a folder; give a file name")
    if path.exists() and not path.is_dir() and folder:
        raise HierVQError(f"{what} {path}: is a file, not a folder")
    if path.is_dir():
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HierVQError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HierVQError(f"{what} {path}: cannot write in {parent} (permission denied)")
    return path


def check_run_dir(run_dir: str | os.PathLike, overwrite: bool = False, what: str = "run directory") -> None:
    """Before anything is written: refuse a non-empty ``run_dir`` unless ``overwrite`` (and then only a replaceable
    one, :func:`check_replaceable`), and one that cannot be created (:func:`check_output_path`)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise HierVQError(f"{what} {run_dir} is a file; choose another --out")
    check_output_path(run_dir, folder=True, what=what)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise HierVQError(
                f"{what} {run_dir} already exists; pass --resume to continue it, --overwrite to replace it, "
                "or --out to choose another"
            )
        check_replaceable(run_dir, what)


def mark_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (if needed) with the marker that makes it recognisably hiervq's; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / RUN_MARKER
    if not marker.exists():
        marker.write_text("written by hiervq: `--overwrite` may replace this directory\n")
    return path


def _write_start(path: Path, files: dict[str, bytes]) -> None:
    mark_output_dir(path)
    for name, data in files.items():
        atomic_write_bytes(path / name, data)


def start_run_dir(run_dir: str | os.PathLike, files: dict[str, bytes] | None = None) -> Path:
    """Create ``run_dir`` with the marker and ``files`` (name -> bytes, e.g. the config).

    An existing non-empty ``run_dir`` (checked with :func:`check_run_dir` first) is replaced: the new run is built
    in a sibling ``.NAME.new-*`` directory, the old one renamed aside to ``.NAME.old-*``, the new one renamed in,
    and only then the old one deleted. Call this once the new run's config, data and model are validated.
    """
    run_dir = Path(run_dir)
    files = files or {}
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        _write_start(run_dir, files)
        return run_dir
    check_replaceable(run_dir)
    new = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.new-"))
    old = None
    try:
        os.chmod(new, 0o777 & ~umask())  # mkdtemp makes it 0700; the run directory should look like any other
        _write_start(new, files)
        old = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.old-"))
        os.replace(run_dir, old)  # an empty directory as the target: rename(2) replaces it
        try:
            os.rename(new, run_dir)
        except BaseException:
            os.rename(old, run_dir)
            old = None
            raise
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        if old is not None and old.is_dir() and not any(old.iterdir()):
            old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)
    return run_dir


def remove_leftovers(run_dir: str | os.PathLike) -> None:
    """Clean up after a process killed during :func:`start_run_dir`'s swap (call it holding the lock): delete
    ``.NAME.new-*``; delete ``.NAME.old-*`` when ``NAME`` exists, else rename the newest back."""
    run_dir = Path(run_dir)
    parent, name = run_dir.parent, run_dir.name
    if not parent.is_dir():
        return
    new = [p for p in parent.iterdir() if p.name.startswith(f".{name}.new-") and p.is_dir()]
    old = sorted((p for p in parent.iterdir() if p.name.startswith(f".{name}.old-") and p.is_dir()),
                 key=lambda p: p.stat().st_mtime)
    for p in new:
        shutil.rmtree(p, ignore_errors=True)
    if old and not run_dir.exists() and any(old[-1].iterdir()):
        os.rename(old.pop(), run_dir)
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


def remove_stale_tmp(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``run_dir`` (its top level,
    ``checkpoints/``, ``model/``, ``study/``; only names of the form ``.NAME.XXXXXXXX.tmp``); returns them."""
    removed = []
    for sub in STALE_TMP_DIRS:
        folder = Path(run_dir) / sub
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if STALE_TMP.match(p.name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def lock_path(run_dir: str | os.PathLike) -> Path:
    """The lock file of ``run_dir``: ``.NAME.lock`` beside it."""
    run_dir = Path(run_dir).absolute()
    if not run_dir.name or run_dir.name in (".", ".."):
        run_dir = run_dir.resolve()
    if not run_dir.name:
        raise HierVQError(f"{run_dir} cannot be a run directory")
    return run_dir.parent / f".{run_dir.name}.lock"


class RunLock:
    """An exclusive lock on a run directory for the life of the process that writes it (a context manager).

    ``acquire`` never waits: a second writer gets a HierVQError naming the holder's PID.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.pid_path = self.path.with_name(self.path.name + ".pid")
        self._lock = None

    def acquire(self) -> RunLock:
        from filelock import FileLock, Timeout

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path), timeout=0)
            lock.acquire()
        except Timeout:
            raise HierVQError(
                f"{self.run_dir} is being written by another process ({self.holder()}, lock {self.path}); "
                "wait for it to finish or stop it"
            ) from None
        except OSError as exc:
            raise HierVQError(f"cannot lock {self.run_dir}: {self.path}: {exc.strerror or exc}") from None
        self._lock = lock
        try:
            self.pid_path.write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the PID is only for the message a contender prints
        return self

    def holder(self) -> str:
        """"PID n" of the process holding the lock (as it recorded itself), or "PID unknown"."""
        try:
            return f"PID {int(self.pid_path.read_text().split()[0])}"
        except (OSError, ValueError, IndexError):
            return "PID unknown"

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self.pid_path.unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = [
    "KNOWN_ENTRIES",
    "RUNS_ROOT",
    "RUN_MARKER",
    "RunDir",
    "RunLock",
    "check_output_path",
    "check_replaceable",
    "check_run_dir",
    "default_run_dir",
    "is_hiervq_output",
    "lock_path",
    "mark_output_dir",
    "remove_leftovers",
    "remove_stale_tmp",
    "start_run_dir",
]
