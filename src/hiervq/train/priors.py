"""Prior runs: fit a prior over a trained autoencoder's codes into a prior run directory.

The run lifecycle of a prior, in the training layer: the networks, the task (:class:`hiervq.priors.task.PriorTask`),
code extraction, sampling and the per-family logic (:class:`~hiervq.priors.PriorKind`) live in
:mod:`hiervq.priors`, which imports nothing from here. The loop is over code tensors, not images, fitted by the one
engine with the run's ``TrainConfig`` keys.

Prior run directory (default ``AE_RUN/priors/level<N>``, :meth:`hiervq.layout.RunDir.prior`; the layout of a run)::

    PRIOR/config.yaml    resolved prior config (autoencoder run, level, class_conditional, model, train, seed)
    PRIOR/model/         config.json + model.safetensors: ``hiervq.load(PRIOR)`` rebuilds the prior; the extra
                         metadata names the autoencoder run (and a hash of its weights), the level, the grid, K,
                         whether it is class-conditional, and the class names
    PRIOR/metrics.jsonl  one line per epoch: train and test negative log-likelihood in bits per code
    PRIOR/checkpoints/last.pt  written atomically after every epoch; ``hiervq prior RUN --resume`` continues it
    PRIOR/summary.json   test NLL in bits per code and per image, next to uniform log2(K) x codes
    PRIOR/report.md      those numbers and the per-epoch NLL table; nll.png, its curve (train and test, needs
                         matplotlib)
    PRIOR/codes.npz      the cached train/test codes (a hard link to ``AE_RUN/codes.npz`` where possible)
    PRIOR/.hiervq-run    marks it as hiervq's (``--overwrite`` replaces nothing else); the process writing it
                         holds the lock ``.level<N>.lock`` beside it (:mod:`hiervq.train.rundir`)

The codes are extracted once per autoencoder run and data config into ``AE_RUN/codes.npz`` (keyed by a hash of
the weights and the data config) and shared by the priors of all levels.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import load_data
from ..errors import HierVQError
from ..layout import RunDir
from ..pretrained import load, resolve_model_dir, save_pretrained
from ..priors.codes import CodeSet, cache_key, cached_codes, load_codes, save_codes
from ..priors.config import PriorsConfig
from ..priors.kinds import PriorKind, prior_kind_for
from ..priors.pixelcnn import uniform_bits
from ..priors.task import LN2, PriorTask, evaluate_prior
from ..schema import from_dict, to_dict
from ..tasks import DistInfo, TrainConfig, env_device, resolve_device
from ..zoo import resolve, shipped_dir
from .checkpoint import has_checkpoint, load_checkpoint
from .config import apply_overrides, read_yaml_mapping, with_overrides
from .report import write_prior_report
from .run import model_run_config, seed_everything
from .rundir import RunSession
from .trainer import Trainer

logger = logging.getLogger(__name__)



@dataclass
class PriorRunConfig:
    """The resolved configuration of one prior run (what ``PRIOR/config.yaml`` holds)."""

    autoencoder: str = ""
    level: int = 0
    class_conditional: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    code_batch_size: int = 256
    seed: int = 0
    #: the data section the codes were extracted from when it is not the autoencoder run's own (a model that is
    #: not a run, or ``--data`` / ``--set data.*``); ``--resume`` reads the same data again
    data: dict[str, Any] | None = None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve_prior_config(
    priors: PriorsConfig | None,
    autoencoder: str,
    level: int,
    seed: int = 0,
    class_conditional: bool | None = None,
    overrides: list[str] | None = None,
) -> PriorRunConfig:
    """The ``priors:`` section merged with its ``levels[level]`` entry, ``--set`` overrides (keys of
    :class:`PriorRunConfig`, e.g. ``train.epochs=3``, ``model.layers=4``) and ``--class-conditional``."""
    section = to_dict(priors or PriorsConfig())
    per_level = section.pop("levels", None) or []
    raw = _merge(section, per_level[level]) if level < len(per_level) else section
    raw.update(autoencoder=str(autoencoder), level=level, seed=seed)
    if class_conditional is not None:
        raw["class_conditional"] = class_conditional
    config = from_dict(PriorRunConfig, raw, prior_config_where(autoencoder, level))  # the file's own errors
    if overrides:  # errors only the overrides bring in blame them, not the run's config.yaml
        config = from_dict(PriorRunConfig, apply_overrides(raw, overrides), prior_config_where(autoencoder, level, overrides))
    config.train.validate()
    return config


def prior_config_where(autoencoder: str | os.PathLike, level: int, overrides: list[str] | None = None) -> str:
    """What an error in a prior's config names: the autoencoder run's ``config.yaml`` (its ``priors:`` section),
    or the ``--set`` overrides when they are what made it invalid."""
    if overrides:
        return f"--set {' '.join(overrides)} (prior of level {level})"
    return f"{autoencoder}/config.yaml: priors (level {level})"


def fit_prior(
    prior,
    kind: PriorKind,
    level: int,
    train: CodeSet,
    test: CodeSet,
    config: TrainConfig,
    codes_per_image: int,
    run_dir: Path | None = None,
    seed: int = 0,
    log=None,
    resume: dict | None = None,
    checkpoint_extra: dict | None = None,
    val: CodeSet | None = None,
) -> tuple[list[dict], float, dict | None]:
    """Train ``prior`` on ``train``'s codes with cross-entropy (mean nats per code); evaluate every epoch on ``val``
    (on ``test`` when there is no ``val``).

    A :class:`PriorTask` fitted by the :class:`~hiervq.train.Trainer`: with a ``run_dir``, one record per epoch
    goes to ``run_dir/metrics.jsonl`` and ``run_dir/checkpoints/last.pt`` is written atomically after every epoch;
    ``resume`` (such a checkpoint) continues from it exactly: the same batches, dropout draws and weights as an
    uninterrupted fit. ``checkpoint_extra`` entries are stored in the checkpoint too. Returns (history, train
    seconds, the best epoch on val: ``{"epoch", "bits_per_image", "state"}`` or None).
    """
    task = PriorTask(prior, kind, level, train, test, config, codes_per_image, seed, log, checkpoint_extra, val)
    if resume is not None:
        task.best = resume.get("best")
        task.epochs_done = len(resume.get("history") or [])
    trainer = Trainer(config, run_dir, seed=seed, dist=DistInfo(device=task.device))
    history = trainer.fit_task(task, resume)
    return history, trainer.train_seconds, task.best


# ---------------------------------------------------------------------- runs
def read_prior_config(prior_dir: str | os.PathLike) -> PriorRunConfig:
    """The :class:`PriorRunConfig` a prior run directory was trained with (its ``config.yaml``)."""
    path = RunDir(prior_dir).config
    if not path.is_file():
        raise HierVQError(f"{prior_dir}: not a prior run directory (no {RunDir.CONFIG})")
    config = from_dict(PriorRunConfig, read_yaml_mapping(path, "a prior run config must be a mapping"), str(path))
    config.train.validate()
    return config


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def codes_key(ae_run: str | os.PathLike, data_config) -> str:
    """The key of a run's codes cache: the model's weights and the data config. The cache holds train, val (when
    the data has one) and test, so caches written before val existed are recomputed once."""
    return cache_key(resolve_model_dir(ae_run), {**to_dict(data_config), "splits": "train/val/test"})


def run_codes(ae_run: str | os.PathLike, model, data_config, batch_size: int = 256, log=None,
              path: str | os.PathLike | None = None) -> dict[str, CodeSet]:
    """Train, val (when the data has one) and test codes of an autoencoder's data, from the cache ``path`` (default ``AE_RUN/codes.npz``) or
    encoded once and written there; ``ae_run`` is any model reference (:func:`hiervq.zoo.resolve`)."""
    key = codes_key(ae_run, data_config)
    cache = Path(path) if path is not None else RunDir(ae_run).codes
    return cached_codes(cache, key, model, load_images=_images(data_config), batch_size=batch_size,
                        device=env_device(), log=log)


def _images(data_config):
    def images():
        data = load_data(data_config)
        return {"train": data.train, **({"val": data.val} if data.val is not None else {}), "test": data.test}

    return images


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_not_shipped(*targets: str | os.PathLike | None) -> None:
    """Refuse an output inside the installed package's tokenizers (:func:`hiervq.zoo.shipped_dir`)."""
    for target in targets:
        if target is not None and _inside(Path(target), shipped_dir()):
            raise HierVQError(f"{target} is inside the installed package's tokenizers, which are never written "
                              "into; choose --out elsewhere")


def no_out_message(ref: str | os.PathLike) -> str:
    """The refusal for a model reference that is not a run and no ``--out``: its folder is never written into."""
    name = Path(os.fspath(ref)).name or "model"
    return (f"{ref} is not a run directory (a saved model or a tokenizer): its folder is never written into; "
            f"give the priors a folder of their own, e.g. `hiervq prior {ref} --level all --out {name}-priors`")


def prior_run(
    ae_run: str | os.PathLike,
    level: str | int | None = None,
    class_conditional: bool | None = None,
    overrides: list[str] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    log=None,
    resume: bool = False,
    codes: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Fit the prior of one level of a trained autoencoder; write the prior run directory; return its summary.

    ``ae_run`` is any model reference (:func:`hiervq.zoo.resolve`): a run directory (the prior goes to
    ``RUN/priors/level<N>`` unless ``out`` says otherwise; the codes are cached in ``RUN/codes.npz``), or a
    ``save_pretrained`` folder or tokenizer name, whose folder is never written into: ``out`` is then required
    and the codes are cached in ``codes`` (default ``OUT/codes.npz``, the prior run's own). Such a model trains on
    the data its ``config.json`` recorded (:func:`hiervq.train.run.model_run_config`).

    ``overrides`` are prior config keys (``train.epochs=3``, ``model.layers=4``) and data keys (``data.path=...``:
    where the images are, when the recorded path is not there). ``resume`` continues an interrupted prior run in
    its directory with the configuration saved there (data keys may still point at the images); it cannot be
    combined with other overrides, ``class_conditional`` or ``overwrite``.
    """

    log = log or logger.info
    ae_ref = ae_run
    folder = resolve(ae_run)  # a run, a saved model folder or a tokenizer name
    is_run = RunDir(folder).config.is_file()
    if out is None and not is_run:
        raise HierVQError(no_out_message(ae_ref))
    check_not_shipped(out, codes)
    ae_config = model_run_config(folder)
    data_overrides = [o for o in overrides or [] if o.split("=", 1)[0].startswith("data.")]
    overrides = [o for o in overrides or [] if o not in data_overrides]
    model = load(folder)
    kind = prior_kind_for(model)
    lv = kind.parse_level(model, level)
    out_run = RunDir(out) if out is not None else RunDir(folder).prior(lv)
    out_dir = out_run.path
    codes_file = Path(codes) if codes is not None else RunDir(folder).codes if is_run else out_run.codes
    own_codes = codes_file == out_run.codes  # the prior run's own file: written once its directory is started
    if resume and (overrides or class_conditional is not None or overwrite):
        raise HierVQError("--resume continues with the prior run's saved config: drop --set (but for data keys), "
                          "--class-conditional and --overwrite")
    # one writer per prior run directory, for the whole run; the autoencoder run is locked too (its codes.npz is
    # written, its model read), so a `train --overwrite` of it is refused while the prior runs
    session = RunSession(out_dir, resume=resume, overwrite=overwrite, what="prior run directory",
                         also_lock=[folder] if is_run else [], check_resume=False)  # resume: load_checkpoint says why
    if not resume:
        session.check()  # before creating even the lock file
        config = resolve_prior_config(ae_config.priors, str(ae_ref), lv, ae_config.seed, class_conditional, overrides)
        # the architecture keys too, before anything is written or extracted; errors blame the file or --set
        for where_overrides in ([None, overrides] if overrides else [None]):
            trial = resolve_prior_config(ae_config.priors, str(ae_ref), lv, ae_config.seed, class_conditional,
                                         where_overrides)
            kind.build_prior(model, lv, dict(trial.model), 2 if trial.class_conditional else None,
                             f"{prior_config_where(ae_ref, lv, where_overrides)}: model")
    with session:  # an old prior run comes back if this one fails
        ae_key = cache_key(resolve_model_dir(folder), {})
        state = None
        if resume:
            state = load_checkpoint(out_run.checkpoint)
            config = read_prior_config(out_dir)
            if state.get("autoencoder_key") != ae_key or config.level != lv:
                raise HierVQError(f"{out_dir}: this prior run belongs to {config.autoencoder} level {config.level}, "
                                  f"not to the weights of {ae_ref} level {lv}")
            session.resume()
        data_config = ae_config.data
        if resume and config.data:
            data_config = with_overrides({"data": config.data}, None, str(out_run.config)).data
        if data_overrides:
            data_config = with_overrides({"data": to_dict(data_config)}, data_overrides, "the data").data
        if not resume and (data_overrides or not is_run):
            config.data = to_dict(data_config)  # what --resume reads again
        info = kind.level_info(model, lv)
        key = codes_key(folder, data_config)
        if own_codes and state is None:  # encoded now, written into the prior run directory once it is started
            found = load_codes(codes_file) if codes_file.is_file() else (None, None)  # --overwrite: reuse them
            code_sets = found[1] if found[0] == key else cached_codes(
                out_dir.parent / f".{out_dir.name}.codes.npz", key, model, load_images=_images(data_config),
                batch_size=config.code_batch_size, device=env_device(), log=log)
        else:
            code_sets = cached_codes(codes_file, key, model, load_images=_images(data_config),
                                     batch_size=config.code_batch_size, device=env_device(), log=log)
        train, test, val = code_sets["train"], code_sets["test"], code_sets.get("val")
        num_classes = None
        if config.class_conditional:
            if train.labels is None:
                raise HierVQError(f"{ae_ref}: the data has no labels, so the prior cannot be class-conditional")
            num_classes = max(train.num_classes or 0, test.num_classes or 0)
        seed_everything(config.seed)
        model_where = f"{out_run.config if resume else prior_config_where(ae_ref, lv, overrides)}: model"
        prior = kind.build_prior(model, lv, dict(config.model), num_classes, model_where)

        if state is None:
            # validated and the prior built: only now replace an old prior run
            session.start({RunDir.CONFIG: yaml.safe_dump(to_dict(config), sort_keys=False).encode()})
            if own_codes:
                tmp = out_dir.parent / f".{out_dir.name}.codes.npz"
                if tmp.is_file():
                    os.replace(tmp, out_run.codes)
                else:
                    save_codes(out_run.codes, code_sets, key)
            else:
                _link_or_copy(codes_file, out_run.codes)
                session.claim(out_run.codes)  # a hard link keeps the time stamp of the run's codes.npz
        n_codes = info["codes_per_image"]
        params = sum(p.numel() for p in prior.parameters())
        depth = info.get("depth", 1)
        depth_note = f", {depth} per position ({n_codes} per image)" if depth > 1 else ""
        where_codes = f"a {'x'.join(map(str, info['grid']))} grid"
        if "scales" in info:  # a multi-scale level's tokens
            where_codes = f"{n_codes} tokens in scales {', '.join('x'.join(map(str, p)) for p in info['scales'])}"
        log(
            f"prior level {lv}: {type(prior).__name__} {params:,} parameters over {where_codes} of "
            f"K={info['codebook_size']} codes{depth_note}{' (class-conditional)' if num_classes else ''}; "
            f"{len(train)} train{f' / {len(val)} val' if val is not None else ''} / {len(test)} test images"
        )
        if not config.class_conditional:
            train = CodeSet(train.codes, None, train.class_names)
            test = CodeSet(test.codes, None, test.class_names)
            val = None if val is None else CodeSet(val.codes, None, val.class_names)
        history, seconds, best = fit_prior(prior, kind, lv, train, test, config.train, n_codes, out_dir, config.seed,
                                           log, state, {"autoencoder_key": ae_key}, val)
        device = resolve_device(config.train.device)
        selected = {"selected_on": "last", "selected_epoch": history[-1]["epoch"] if history else 0}
        if best is not None:  # the epoch with the fewest val bits: what the prior run keeps
            prior.load_state_dict(best["state"])
            selected = {"selected_on": "val", "selected_epoch": best["epoch"]}
        per_image = evaluate_prior(prior, kind, lv, test, config.train.eval_batch_size, None, device) / LN2
        val_bits = (evaluate_prior(prior, kind, lv, val, config.train.eval_batch_size, None, device) / LN2
                    if val is not None else None)
        uniform = uniform_bits(info["codebook_size"], n_codes)
        summary = {
            "autoencoder": str(ae_ref),
            "level": lv,
            "grid": info["grid"],
            "codebook_size": info["codebook_size"],
            "codes_per_image": n_codes,
            "depth": depth,
            "class_conditional": bool(num_classes),
            "bits_per_code": per_image / n_codes,
            "bits_per_image": per_image,
            "uniform_bits_per_code": uniform_bits(info["codebook_size"], 1),
            "uniform_bits_per_image": uniform,
            "saved_bits_per_image": uniform - per_image,
            "saved_fraction": 1.0 - per_image / uniform,
            "train_bits_per_code": history[-1]["train"]["bits_per_code"] if history else None,
            "test_images": len(test),
            "train_images": len(train),
            **selected,
            "test": {"bits_per_code": per_image / n_codes, "bits_per_image": per_image, "images": len(test)},
            **({"val": {"bits_per_code": val_bits / n_codes, "bits_per_image": val_bits, "images": len(val)}}
               if val is not None else {}),
            "params": params,
            "epochs": config.train.epochs,
            "train_s": round(seconds, 2),
        }
        extra = {
            "autoencoder": str(folder.resolve()),
            "autoencoder_key": ae_key,
            "kind": kind.name,
            "level": lv,
            "grid": info["grid"],
            "codebook_size": info["codebook_size"],
            "class_conditional": bool(num_classes),
            "num_classes": num_classes,
            "class_names": train.class_names,
        }
        save_pretrained(prior.cpu(), out_run.model, extra=extra,
                        data=data_config.describe(tuple(model.image_shape)))
        out_run.write_summary(summary)
        write_prior_report(out_dir, summary, out_run.read_metrics())
        log(
            f"prior level {lv}: test {summary['bits_per_code']:.4f} bits/code, {per_image:.1f} bits/image "
            f"(uniform {uniform:.1f}; {summary['saved_fraction']:.1%} fewer) -> {out_dir}"
        )
        return summary


# ---------------------------------------------------------------------- sampling
__all__ = [
    "PriorRunConfig",
    "fit_prior",
    "has_checkpoint",
    "prior_run",
    "read_prior_config",
    "resolve_prior_config",
    "run_codes",
]
