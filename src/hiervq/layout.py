"""The on-disk layout of hiervq's output: :class:`RunDir` owns where each file of a run (and of a prior run) lives.

Run directory (``hiervq train``; a prior run, ``RUN/priors/level<N>``, has the same layout)::

    RUN/config.yaml          resolved configuration
    RUN/metrics.jsonl        one line per epoch
    RUN/checkpoints/last.pt  written atomically after every epoch; ``--resume`` continues from it
    RUN/model/               config.json + model.safetensors (``hiervq.load(RUN)``)
    RUN/summary.json         final test metrics (a finished run has one); RUN/report.md with its PNGs
    RUN/codes.npz            the run's codes, cached for priors and code analyses
    RUN/priors/level<N>/     prior runs over the codes of level N
    RUN/analysis/            code analyses (``hiervq bayes``, ``hiervq info``)
    RUN/study/               training snapshots (a ``study:`` section)
    RUN/tensorboard/         TensorBoard event files (``train.tensorboard: true``)
    RUN/.hiervq-run          marks the directory as hiervq's: ``--overwrite`` replaces nothing else

The output folders of ``compare``, ``sweep`` and ``classify`` hold runs under the names below
(:data:`COMPARE_RUNS`, :data:`SWEEP_POINTS`, :data:`PRETRAIN_DIR`) next to their result files. What may be
written, replaced and deleted (locks, ``--overwrite``) is :mod:`hiervq.train.rundir`; how files are written,
:mod:`hiervq.io`. This module depends on neither torch nor the rest of hiervq, so every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .io import append_jsonl, read_json, read_jsonl, write_json, write_jsonl

#: a saved model directory (:func:`hiervq.pretrained.save_pretrained`): its config and weights
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"

#: the report of a run or of a compare/classify output folder
REPORT = "report.md"

#: where a command that is given no ``--out`` writes: ``runs/<config name>``
RUNS_ROOT = "runs"

#: ``hiervq compare``: OUT/hier/ and OUT/single/ (runs), OUT/compare.json, OUT/report.md
COMPARE_RUNS = ("hier", "single")
COMPARE_RESULT = "compare.json"
#: ``hiervq sweep``: OUT/points/NAME/ (a run or compare folder, with point.json once finished), OUT/sweep.json/.csv
SWEEP_POINTS = "points"
POINT_FILE = "point.json"
SWEEP_RESULT = "sweep.json"
SWEEP_TABLE = "sweep.csv"
#: ``hiervq classify``: OUT/pretrain/ (a run), OUT/results.json, OUT/report.md
PRETRAIN_DIR = "pretrain"
CLASSIFY_RESULT = "results.json"


class _Entry:
    """A path inside a run directory as a read-only attribute: ``run.config`` is ``run.path / "config.yaml"``."""

    def __init__(self, *parts: str, doc: str = "") -> None:
        self.parts = parts
        self.__doc__ = doc

    def __get__(self, run: RunDir | None, owner: type | None = None) -> Any:
        return self if run is None else run.path.joinpath(*self.parts)

    def __set__(self, run: RunDir, value: Any) -> None:
        raise AttributeError("the layout of a run directory is fixed")


class RunDir(os.PathLike):
    """A run directory (autoencoder run or prior run): the paths of its files and the few questions asked of them.

    ``RunDir(path)`` creates nothing. It is path-like (``Path(run)``, ``open(run.summary)``, ``os.fspath``), so
    it can be passed wherever a path is expected.
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    LAST = "last.pt"
    MODEL = "model"
    SUMMARY = "summary.json"
    REPORT = REPORT
    CODES = "codes.npz"
    PRIORS = "priors"
    ANALYSIS = "analysis"
    STUDY = "study"
    TENSORBOARD = "tensorboard"
    MARKER = ".hiervq-run"

    #: the folders of a run that atomic writes go to (where a killed process may leave temporary files)
    WRITTEN_DIRS = ("", CHECKPOINTS, MODEL, STUDY)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def default(cls, config: str | os.PathLike | None) -> RunDir:
        """The run directory of a config without ``--out``: ``runs/<config file name without suffix>``
        (``runs/default`` without a config file)."""
        return cls(Path(RUNS_ROOT) / (Path(config).stem if config else "default"))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ where things are
    config = _Entry(CONFIG, doc="``config.yaml``: the resolved configuration the run trains with.")
    metrics = _Entry(METRICS, doc="``metrics.jsonl``: one record per epoch.")
    checkpoint = _Entry(CHECKPOINTS, LAST, doc="``checkpoints/last.pt``: what ``--resume`` continues from.")
    model = _Entry(MODEL, doc="``model/``: the saved model (``config.json`` + ``model.safetensors``).")
    summary = _Entry(SUMMARY, doc="``summary.json``: the final test metrics.")
    report = _Entry(REPORT, doc="``report.md``: the run's report (its figures beside it).")
    codes = _Entry(CODES, doc="``codes.npz``: the cached codes of the run's data (for its priors and analyses).")
    priors = _Entry(PRIORS, doc="``priors/``: the prior runs, one folder per level.")
    analysis = _Entry(ANALYSIS, doc="``analysis/``: code analyses (``hiervq bayes``, ``hiervq info``).")
    study = _Entry(STUDY, doc="``study/``: training snapshots (a ``study:`` section).")
    tensorboard = _Entry(TENSORBOARD, doc="``tensorboard/``: TensorBoard event files (``train.tensorboard: true``).")
    marker = _Entry(MARKER, doc="``.hiervq-run``: marks the directory as hiervq's.")

    def prior(self, level: int) -> RunDir:
        """The prior run of ``level`` (the default of ``hiervq prior``): ``priors/level<N>``."""
        return RunDir(self.priors / f"level{level}")

    # ------------------------------------------------------------------ questions
    def has_checkpoint(self) -> bool:
        """Whether the run holds a checkpoint that ``--resume`` can continue."""
        return self.checkpoint.is_file()

    def has_model(self) -> bool:
        """Whether the run holds a saved model."""
        return (self.model / MODEL_CONFIG).is_file()

    def is_finished(self) -> bool:
        """Whether the run finished (its ``summary.json`` is written last but for the report)."""
        return self.summary.is_file()

    def find_priors(self) -> list[RunDir]:
        """The prior runs under ``priors/`` that hold a saved prior, or saved prior folders (a shipped tokenizer's):
        what ``hiervq sample`` uses by default."""
        if not self.priors.is_dir():
            return []
        # dot names are locks and the halves of a swap in progress (train.rundir.start_run_dir), not priors
        found = (RunDir(p) for p in sorted(self.priors.iterdir()) if not p.name.startswith("."))
        # a prior run holds model/; a shipped tokenizer's priors (hiervq.zoo) are saved model folders themselves
        return [r for r in found if r.has_model() or (r.path / MODEL_CONFIG).is_file()]

    # ------------------------------------------------------------------ reading and writing
    def read_summary(self) -> dict:
        return read_json(self.summary)

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary, summary)

    def read_metrics(self) -> list[dict]:
        """The per-epoch records of ``metrics.jsonl`` ([] when there is none)."""
        return read_jsonl(self.metrics)

    def append_metrics(self, record: dict) -> None:
        append_jsonl(self.metrics, record)

    def write_metrics(self, history: list[dict]) -> None:
        """Replace ``metrics.jsonl`` by ``history``, atomically."""
        write_jsonl(self.metrics, history)


__all__ = ["MODEL_CONFIG", "MODEL_WEIGHTS", "RunDir"]
