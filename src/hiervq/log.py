"""Messages that are not results: the ``hiervq`` logger, its default handler, and progress bars/lines.

Results (JSON, tables, "encoded N images -> FILE") go to stdout with ``print``; everything else (what a run is
doing, warnings, progress) goes through the :mod:`logging` logger ``hiervq`` (children ``hiervq.<module>``),
which by default writes plain lines to stderr at INFO (warnings start with ``warning:``). ``hiervq --quiet``
shows warnings and errors only, ``--verbose`` adds debug lines (:func:`set_verbosity`).

In Python the same default applies (training prints its epochs as ``hiervq train`` does); silence it with
``logging.getLogger("hiervq").setLevel(logging.WARNING)``, or route it through your own logging set-up with
:func:`use_own_handlers`.

Progress (:func:`progress`): a tqdm bar when stderr is a terminal; otherwise (CI, ``nohup``, ``| tee``) one compact
INFO line every :data:`PROGRESS_INTERVAL_S` seconds (``HIERVQ_PROGRESS_INTERVAL`` overrides it), e.g.
``all epoch 3: 120/469 batches (26%), 41s, ~2m00s left, 2.9 batches/s, loss 0.0123 psnr 25.10``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

NAME = "hiervq"
#: seconds between two progress lines when stderr is not a terminal (env ``HIERVQ_PROGRESS_INTERVAL``)
PROGRESS_INTERVAL_S = 30.0


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``hiervq`` logger, or its child ``hiervq.<name>``."""
    return logging.getLogger(NAME if not name else f"{NAME}.{name.removeprefix(NAME + '.')}")


class _Formatter(logging.Formatter):
    """INFO as it is; other levels prefixed with their name (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirections and test capture see the lines)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(_Formatter())

    @property
    def stream(self):  # logging.StreamHandler reads self.stream
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


_DEFAULT_HANDLER = _StderrHandler()


def _install_default() -> None:
    logger = logging.getLogger(NAME)
    if _DEFAULT_HANDLER not in logger.handlers:
        logger.addHandler(_DEFAULT_HANDLER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False


_install_default()


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    """``--quiet``: warnings and errors only (no progress); ``--verbose``: also debug lines; else INFO."""
    get_logger().setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def use_own_handlers() -> None:
    """Drop hiervq's stderr handler and let its records propagate to the root logger's handlers."""
    logger = get_logger()
    logger.removeHandler(_DEFAULT_HANDLER)
    logger.propagate = True


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_interval() -> float:
    """Seconds between progress lines (:data:`PROGRESS_INTERVAL_S`, or ``HIERVQ_PROGRESS_INTERVAL``)."""
    try:
        return max(0.0, float(os.environ.get("HIERVQ_PROGRESS_INTERVAL", PROGRESS_INTERVAL_S)))
    except ValueError:
        return PROGRESS_INTERVAL_S


class ProgressLines:
    """Iterate ``items`` and log a compact progress line every ``interval`` seconds (never after the last item).
    ``set_postfix`` takes the values the line ends with (as tqdm's does)."""

    def __init__(self, items: Iterable, desc: str, interval: float, logger: logging.Logger | None = None) -> None:
        self.items = items
        self.desc = desc
        self.interval = interval
        self.logger = logger or get_logger()
        self.postfix: dict[str, str] = {}
        self.lines = 0

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        total = len(self.items) if hasattr(self.items, "__len__") else None
        start = last = time.monotonic()
        for i, item in enumerate(self.items):
            yield item
            now = time.monotonic()
            done = i + 1
            if now - last < self.interval or (total is not None and done >= total):
                continue
            last = now
            elapsed = now - start
            rate = done / elapsed if elapsed > 0 else float("inf")
            where = f"{done}/{total} batches ({100 * done / total:.0f}%)" if total else f"{done} batches"
            left = f", ~{_duration((total - done) / rate)} left" if total and rate > 0 else ""
            values = "".join(f", {k} {v}" for k, v in self.postfix.items())
            self.logger.info("%s: %s, %s%s, %.2f batches/s%s", self.desc, where, _duration(elapsed), left, rate, values)
            self.lines += 1


def progress(items: Iterable, desc: str, enabled: bool = True):
    """``items`` with progress: a tqdm bar on a terminal, :class:`ProgressLines` otherwise; ``items`` itself when
    disabled or when the ``hiervq`` logger does not show INFO (``--quiet``)."""
    if not enabled or not get_logger().isEnabledFor(logging.INFO):
        return items
    if sys.stderr.isatty():
        return tqdm(items, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    return ProgressLines(items, desc, progress_interval())
