"""Errors meant for the user: the CLI prints their message on one line, without a traceback."""


class HierVQError(Exception):
    """A problem with the user's input (files, config, checkpoints, arguments), explained in its message."""


class ConfigError(HierVQError, ValueError):
    """An invalid configuration: unknown key, wrong type or value. The message names the key and the file."""


class DataError(HierVQError, ValueError):
    """A dataset or image file that is missing, corrupt or of the wrong shape."""


class CheckpointError(HierVQError):
    """A checkpoint or saved model that is missing, corrupt or does not match the configuration."""


class DivergedError(HierVQError):
    """Training produced a non-finite loss or weights; the message names the step and what was kept."""


class WriteError(HierVQError, OSError):
    """A file hiervq could not write (disk full, file too large, permissions): the message names the path."""


class MissingExtraError(HierVQError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (see :mod:`hiervq.extras`)."""
