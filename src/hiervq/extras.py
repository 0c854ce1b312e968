"""Optional dependencies ("extras" in pyproject.toml) and the one way hiervq imports them.

The core (``import hiervq``, the quantizers, models, training and evaluation) needs only torch, numpy, PyYAML,
safetensors, Pillow, tqdm, filelock and pytorch-msssim. The rest is imported lazily, where it is used:

==============  =====================  =====================================================================
extra           package                used for
==============  =====================  =====================================================================
``plots``       matplotlib             curves, Lorenz curves, heat maps, confusion matrices, t-SNE figures
``sklearn``     scikit-learn           t-SNE maps of code vectors (``study:``)
``tensorboard`` tensorboard            ``train.tensorboard: true``
``bench``       vector-quantize-pytorch  benchmarks/ only
==============  =====================  =====================================================================

:func:`require` imports a module or raises :class:`~hiervq.errors.MissingExtraError` with a one-line message
naming the extra (``pip install 'hiervq[plots]'``). Figures are optional output: where a command also writes
its results as JSON or markdown, a missing ``plots``/``sklearn`` extra skips the figures with one warning
(:func:`warn_missing`) instead of failing after the work is done.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from types import ModuleType

from .errors import MissingExtraError

#: the pip package each optional top-level module comes from, and the extra that installs it
PACKAGES = {
    "matplotlib": ("matplotlib", "plots"),
    "sklearn": ("scikit-learn", "sklearn"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "vector_quantize_pytorch": ("vector-quantize-pytorch", "bench"),
}

_warned: set[str] = set()


def message(module: str, what: str) -> str:
    """The one-line explanation of a missing optional module."""
    package, extra = PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
    how = f"pip install 'hiervq[{extra}]'" if extra else f"pip install {package}"
    return f"{what} needs {package}, which is not installed ({how})"


def available(module: str) -> bool:
    """Whether ``module`` (a top-level name such as ``matplotlib``) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, what: str) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` saying that ``what`` needs it and which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module is there but one of its own imports failed: that is not a missing extra
        raise MissingExtraError(message(module, what)) from None


def warn_missing(module: str, what: str) -> None:
    """Log (once per process and module) that ``what`` is skipped because ``module`` is not installed."""
    if module in _warned:
        return
    _warned.add(module)
    logging.getLogger("hiervq").warning("%s; skipped", message(module, what))
