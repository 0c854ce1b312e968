"""What may be written, replaced and deleted on disk: run directories, their lock, ``--overwrite``, stale temp files.

One rule for every ``--overwrite`` (train, prior, compare, sweep, classify): hiervq deletes only a directory that is
its own output (:func:`check_replaceable`): it holds the marker file :data:`RUN_MARKER`, and every file under it,
at any depth, is listed in the marker's manifest (its relative path and size; nested outputs such as
``priors/level0/`` have their own). A file hiervq did not write (or one changed since) makes ``--overwrite`` refuse
with a list; common file names mean nothing. The manifest is brought up to date by the process that writes the
directory (:func:`record_written`: every file it created or changed since it started; the entries of the others
stay as they were): when :class:`RunLock` is released, after every checkpoint, and at the end of compare, sweep
and classify. The working directory, its parents, ``/`` and the home directory are never replaced.

A run is replaced only once the new one has started (:func:`start_run_dir`): the new run is built in a sibling
``.NAME.new-*`` directory and swapped in; the old one waits aside as ``.NAME.old-*`` until the new run holds its
first checkpoint (:func:`commit_swap`), and comes back if the new run fails before that (:func:`undo_swap`), or,
after a kill, when the next process takes the lock (:func:`remove_leftovers`).

Every process that writes a run directory holds :class:`RunLock` for its whole life: an exclusive
:mod:`filelock` lock on the sibling file ``.NAME.lock`` (beside the run, not inside it, so that it is the same file
before and after a swap, and exists before the run directory does). The holder's PID is written to the sidecar
``.NAME.lock.pid`` (the lock file itself may be truncated by a contender's open with older filelock versions); the
sidecar is removed on release, the empty lock file is kept (deleting a lock file others may have opened is a race).

Which file lives where in a run is :class:`hiervq.layout.RunDir` (re-exported here); what may be deleted is
decided by the manifests alone, never by file names.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import HierVQError
from ..io import atomic_write_bytes, umask
from ..layout import (
    RUNS_ROOT,
    RunDir,
)

logger = logging.getLogger(__name__)

RUN_MARKER = RunDir.MARKER
#: transient names, never part of a manifest: lock files, interrupted swaps and atomic-write temp files
TRANSIENT_PATTERNS = (".*.lock", ".*.lock.pid", ".*.new-*", ".*.old-*", ".*.tmp")
#: the temporary names :func:`hiervq.pretrained.atomic_write_bytes` writes through (``.NAME.<8 chars>.tmp``)
STALE_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
STALE_TMP_DIRS = RunDir.WRITTEN_DIRS
#: files a process created or changed up to this long before it started writing still count as its own (file
#: systems stamp times with the kernel's coarse clock, a few milliseconds behind time.time_ns())
CLOCK_SLACK_NS = 20_000_000


def _transient(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in TRANSIENT_PATTERNS)


def is_hiervq_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory hiervq wrote: it holds the marker :data:`RUN_MARKER`."""
    return (Path(path) / RUN_MARKER).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, int] | None:
    """The files (relative POSIX path -> size in bytes) the marker of ``path`` lists, or None (no marker, or one
    written before manifests: such a directory is never replaced)."""
    try:
        data = json.loads((Path(path) / RUN_MARKER).read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return None
    return {str(k): v for k, v in files.items() if isinstance(v, int)}


def _write_marker(path: Path, files: dict[str, int]) -> None:
    text = json.dumps({"written_by": "hiervq", "note": "--overwrite may replace this directory while it holds only "
                       "the files listed here", "files": dict(sorted(files.items()))}, indent=1)
    atomic_write_bytes(path / RUN_MARKER, (text + "\n").encode())


def _entries(root: Path) -> Iterator[tuple[str, Path]]:
    """``("file", path)`` for every file (or link, or special file) under ``root`` and ``("nested", path)`` for every
    nested hiervq output (its own marker, not descended into); transient names are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for name in dirnames:
            p = here / name
            if _transient(name):
                continue
            if p.is_symlink():
                yield "file", p
            elif (p / RUN_MARKER).is_file():
                yield "nested", p
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            if not _transient(name) and not (here == root and name == RUN_MARKER):
                yield "file", here / name


def record_written(path: str | os.PathLike, since_ns: int, claimed: tuple | list | set = ()) -> None:
    """Bring the manifest of the hiervq output ``path`` up to date: list every file under it (not in nested
    outputs) that was created or changed at or after ``since_ns`` (:func:`time.time_ns`, when the calling process
    started writing ``path``) with its size, keep the entries of the other files as they were (a file changed by
    someone else keeps its old size, so it stays foreign) and drop those of files that are gone. ``claimed`` are
    files the caller put there whatever their time stamp (a hard link to an older file). Nothing happens without a
    marker, and the marker is left as it is when nothing changed."""
    path = Path(path)
    if not is_hiervq_output(path):
        return
    old = read_manifest(path) or {}
    claimed = {Path(c).absolute() for c in claimed}
    files = {}
    for kind, p in _entries(path):
        if kind != "file":
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        rel = p.relative_to(path).as_posix()
        if st.st_mtime_ns >= since_ns - CLOCK_SLACK_NS or p.absolute() in claimed:
            files[rel] = st.st_size
        elif rel in old:
            files[rel] = old[rel]
    if files != read_manifest(path):  # a command that wrote nothing leaves the marker as it was
        _write_marker(path, files)


def foreign_files(path: str | os.PathLike) -> list[str]:
    """The files under the hiervq output ``path`` that its manifest (or a nested output's) does not list with
    their current size: what hiervq did not write, or what changed since. Every file, without a manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    found = []
    for kind, p in _entries(path):
        rel = p.relative_to(path).as_posix()
        if kind == "nested":
            found += [f"{rel}/{f}" for f in foreign_files(p)]
            continue
        try:
            size = p.lstat().st_size
        except OSError:
            continue
        if manifest is None or manifest.get(rel) != size or p.is_symlink():
            found.append(rel)
    return found


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
    if not any(path.iterdir()):
        return
    if not is_hiervq_output(path):
        raise HierVQError(
            f"refusing to overwrite {path}: not a hiervq {what} (no {RUN_MARKER}); delete it yourself or choose "
            "another --out"
        )
    if read_manifest(path) is None:
        raise HierVQError(
            f"refusing to overwrite {path}: written by an older hiervq, without a list of its files; delete it "
            "yourself or choose another --out"
        )
    foreign = foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise HierVQError(
            f"refusing to overwrite {path}: it holds {shown}, which hiervq did not write (or which changed since); "
            "move them away or choose another --out"
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


def owning_output(path: str | os.PathLike) -> Path | None:
    """The hiervq output directory (run, prior run, compare/sweep/classify folder) that ``path`` lies inside, or
    None."""
    for parent in Path(path).absolute().parents:
        if is_hiervq_output(parent):
            return parent
    return None


def check_output_file(path: str | os.PathLike, overwrite: bool = False, inputs: list | tuple = (),
                      what: str = "-o") -> Path:
    """Before any work: raise HierVQError unless the file ``path`` may be written. An existing file is replaced only
    with ``overwrite``, and never when it is one of the command's ``inputs`` (the same file under any name) or a file
    of a hiervq output directory (its config, model, summary, ...); see also :func:`check_output_path`."""
    path = check_output_path(path, folder=False, what=what)
    if not (path.exists() or path.is_symlink()):
        return path
    for item in inputs:
        try:
            same = os.path.samefile(path, item)
        except OSError:
            same = False
        if same:
            raise HierVQError(f"{path} is the input {item}; choose another output file")
    owner = owning_output(path)
    if owner is not None:
        raise HierVQError(f"{path} is a file of the hiervq output {owner}; choose a path outside it")
    if not overwrite:
        raise HierVQError(f"{path} already exists; pass --overwrite to replace it, or choose another file")
    if path.is_dir():
        raise HierVQError(f"{what} {path}: is a folder; give a file name")
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
    """Create ``path`` (if needed) with the marker that makes it recognisably hiervq's (an empty manifest, unless
    it has one); returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if read_manifest(path) is None:
        _write_marker(path, {})
    return path


def _write_start(path: Path, files: dict[str, bytes]) -> None:
    since = time.time_ns()
    mark_output_dir(path)
    for name, data in files.items():
        atomic_write_bytes(path / name, data)
    record_written(path, since)


def start_run_dir(run_dir: str | os.PathLike, files: dict[str, bytes] | None = None) -> Path | None:
    """Create ``run_dir`` with the marker and ``files`` (name -> bytes, e.g. the config). Returns the old run's
    folder set aside (``.NAME.old-*``), or None when there was none.

    An existing non-empty ``run_dir`` (checked with :func:`check_run_dir` first) is replaced: the new run is built
    in a sibling ``.NAME.new-*`` directory, the old one renamed aside to ``.NAME.old-*`` and the new one renamed in.
    The old one stays aside until :func:`commit_swap` (call it once the new run holds its first checkpoint) or comes
    back with :func:`undo_swap` (the new run failed before that). Call this once the new run's config, data and
    model are validated, holding the run's :class:`RunLock`.
    """
    run_dir = Path(run_dir)
    files = files or {}
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        _write_start(run_dir, files)
        return None
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
    return old


def commit_swap(old: Path | None) -> None:
    """The new run stands (it holds a checkpoint): delete the old run :func:`start_run_dir` set aside."""
    if old is not None and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)


def undo_swap(run_dir: str | os.PathLike, old: Path | None) -> None:
    """The new run failed before its first checkpoint: delete it and put the old run back in its place."""
    if old is None or not old.is_dir():
        return
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not run_dir.is_symlink():
        shutil.rmtree(run_dir, ignore_errors=True)
    if not run_dir.exists():
        os.rename(old, run_dir)


class Swap:
    """The replacement of a run by a new one as a context manager: :meth:`start` is :func:`start_run_dir`; leaving
    the block normally (or :meth:`commit`) deletes the old run, leaving it on an error puts the old run back."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.old: Path | None = None

    def start(self, files: dict[str, bytes] | None = None) -> None:
        self.old = start_run_dir(self.run_dir, files)

    def commit(self) -> None:
        commit_swap(self.old)
        self.old = None

    def __enter__(self) -> Swap:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.commit()
        elif self.old is not None:
            undo_swap(self.run_dir, self.old)
            self.old = None


def check_resumable(run_dir: str | os.PathLike) -> None:
    """Raise HierVQError unless ``run_dir`` can be resumed: it has a checkpoint, or it is a run hiervq started
    (marker and config.yaml) that stopped before its first checkpoint, which ``--resume`` starts from scratch."""
    run = RunDir(run_dir)
    if run.has_checkpoint():
        return
    if not (run.marker.is_file() and run.config.is_file()):
        raise HierVQError(f"{run}: nothing to resume (no {RunDir.CHECKPOINTS}/{RunDir.LAST}, and not a run hiervq "
                          "started)")


class RunSession:
    """The one lifecycle of a run directory (an autoencoder run, a prior run) written by one process.

    ::

        session = RunSession(run_dir, resume=False, overwrite=True)
        session.check()                  # before the data is read: refuse early (nothing is written)
        with session:                    # the lock (and ``also_lock``'s), then the checks again under it
            session.start({"config.yaml": ...})   # a new run: the old one waits aside (or session.resume())
            ...                          # train; after every checkpoint: session.checkpointed()
        # leaving on an error before the first checkpoint brings the old run back; the manifest lists what was
        # written; the locks are released

    ``resume``: continue the run (``check_resume``: refuse one that holds nothing to continue, see
    :func:`check_resumable`); else create or, with ``overwrite``, replace it (:func:`check_run_dir`). ``also_lock``:
    other hiervq runs this one writes into or reads from (a prior run locks its autoencoder run).
    """

    def __init__(self, run_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False,
                 what: str = "run directory", also_lock: tuple | list = (), check_resume: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.resuming, self.overwrite, self.what = resume, overwrite, what
        self.check_resume = check_resume
        self.lock = RunLock(self.run_dir)
        self.also = [RunLock(p) for p in also_lock if lock_path(p) != self.lock.path]
        self.swap = Swap(self.run_dir)
        self._held: list[RunLock] = []

    def check(self) -> None:
        """Refuse a run directory this session may not write (call it before any work; again on entering)."""
        if not self.resuming:
            check_run_dir(self.run_dir, overwrite=self.overwrite, what=self.what)
        elif self.check_resume:
            check_resumable(self.run_dir)

    def __enter__(self) -> RunSession:
        try:
            for lock in [*self.also, self.lock]:
                self._held.append(lock.acquire())
                lock.writing = lock is not self.lock  # the main run: from start() or resume() on
            remove_leftovers(self.run_dir)  # of a swap that a kill interrupted
            self.check()  # again: another process may have written it before we held the lock
            if self.resuming:
                remove_stale_tmp(self.run_dir)  # of atomic writes that a kill interrupted
        except BaseException:
            self._release()
            raise
        return self

    def start(self, files: dict[str, bytes] | None = None) -> None:
        """Create the new run with ``files`` (or replace the old one, which waits aside until
        :meth:`checkpointed`)."""
        self.lock.writing = True
        self.swap.start(files)

    def resume(self) -> None:
        """Continue the run in place (runs from before the marker get one)."""
        self.lock.writing = True
        mark_output_dir(self.run_dir)

    def claim(self, path: str | os.PathLike) -> None:
        """Count ``path`` as written by this session whatever its time stamp (:meth:`RunLock.claim`)."""
        self.lock.claim(path)

    def checkpointed(self) -> None:
        """The run holds a checkpoint: the old run goes, and the manifest lists what was written so far."""
        self.swap.commit()
        self.lock.record()

    def _release(self) -> None:
        while self._held:
            self._held.pop().release()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and self.swap.old is not None:
                logger.warning("%s: the new run failed before its first checkpoint; the previous run is back",
                               self.run_dir)
            self.swap.__exit__(exc_type, exc, tb)
        finally:
            self._release()


def remove_leftovers(run_dir: str | os.PathLike) -> None:
    """Clean up after a process killed during or after :func:`start_run_dir`'s swap (call it holding the lock):
    delete ``.NAME.new-*``; when ``NAME`` is missing, or is a new run killed before its first checkpoint (the swap
    was never committed), put the newest ``.NAME.old-*`` back; delete the other ``.NAME.old-*``."""
    run_dir = Path(run_dir)
    parent, name = run_dir.parent, run_dir.name
    if not parent.is_dir():
        return
    new = [p for p in parent.iterdir() if p.name.startswith(f".{name}.new-") and p.is_dir()]
    old = sorted((p for p in parent.iterdir() if p.name.startswith(f".{name}.old-") and p.is_dir()),
                 key=lambda p: p.stat().st_mtime)
    for p in new:
        shutil.rmtree(p, ignore_errors=True)
    run = RunDir(run_dir)
    uncommitted = run_dir.is_dir() and not run.has_checkpoint() and not run.is_finished()
    if old and any(old[-1].iterdir()) and (not run_dir.exists() or uncommitted):
        if run_dir.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
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
    run_dir = Path(run_dir).resolve()  # one lock per directory, however it is named (a symbolic link, ../x, ...)
    if not run_dir.name:
        raise HierVQError(f"{run_dir} cannot be a run directory")
    return run_dir.parent / f".{run_dir.name}.lock"


class RunLock:
    """An exclusive lock on a run directory for the life of the process that writes it (a context manager).

    ``acquire`` never waits: a second writer gets a HierVQError naming the holder's PID. The lock is keyed by the
    resolved path, so a symbolic link to a run is the same run. :meth:`record` lists what the holder wrote in the
    run's manifest (:func:`record_written`); release does too once the holder set :attr:`writing` (a command
    refused before it wrote anything leaves the marker untouched).
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.pid_path = self.path.with_name(self.path.name + ".pid")
        self._lock = None
        self.since_ns = time.time_ns()
        #: set by the holder once it starts writing the run: release then records what it wrote
        self.writing = False
        #: files the holder put into the run whatever their time stamps (:meth:`claim`)
        self.claimed: set[Path] = set()

    def claim(self, path: str | os.PathLike) -> None:
        """Count ``path`` (inside the run) as written by the holder, e.g. a hard link to an older file."""
        self.claimed.add(Path(path))

    def record(self) -> None:
        """List every file written into the run since the lock was taken in its manifest."""
        record_written(self.run_dir, self.since_ns, self.claimed)

    def acquire(self) -> RunLock:
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
        self.since_ns = time.time_ns()
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
            if self.writing:
                self.record()
        except HierVQError:
            pass  # a run directory that can no longer be written keeps its older manifest
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
    "RUNS_ROOT",
    "RUN_MARKER",
    "RunDir",
    "RunLock",
    "RunSession",
    "Swap",
    "check_output_path",
    "check_replaceable",
    "check_output_file",
    "check_resumable",
    "check_run_dir",
    "commit_swap",
    "foreign_files",
    "is_hiervq_output",
    "lock_path",
    "mark_output_dir",
    "read_manifest",
    "record_written",
    "remove_leftovers",
    "remove_stale_tmp",
    "start_run_dir",
    "undo_swap",
]
