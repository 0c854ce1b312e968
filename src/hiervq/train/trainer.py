"""The Trainer: phases, optimiser and schedule, evaluation, metrics, atomic checkpoints, exact resume, DDP.

It only knows the :class:`~hiervq.models.DiscreteAutoencoder` interface: ``model(x)`` returns an ``Output``
with ``loss``, named ``losses``, ``recon``, ``codes`` and per-level ``stats``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import BatchSource, DataSplits, ImageSet
from ..errors import DivergedError
from ..layout import RunDir
from ..log import progress
from ..metrics import EvalAccumulator, mse_per_image, psnr
from ..models.base import DiscreteAutoencoder, crop_images
from ..nn import compile_stacks
from ..pretrained import load_state, nonfinite_tensors
from ..tasks import PhaseConfig, Task, TrainConfig
from .checkpoint import save_checkpoint
from .distributed import DistInfo, barrier, resolve_device, wrap_ddp
from .engine import lr_factor, make_optimizer, make_scheduler  # noqa: F401 - lr_factor re-exported

logger = logging.getLogger(__name__)

Callback = Callable[["Trainer", dict], None]


class AutoencoderTask(Task):
    """A :class:`DiscreteAutoencoder` on images: its phases, the reconstruction + quantizer loss, PSNR and
    perplexity per level while training, MSE/PSNR/codebook health per epoch on the validation split.

    The test split is never looked at while training when there is a validation split: every per-epoch number is
    on val, and the weights of the epoch with the lowest val MSE are kept (:attr:`best`, also in the checkpoint)
    for the final model (``train.keep: best``; ``last`` keeps the last epoch's). Without a val split
    (``data.val_fraction: 0`` on data that has none) the per-epoch numbers are on test, as before, and nothing is
    selected.
    """

    resume_command = "hiervq train --resume {run_dir} --set train.lr=..."

    def __init__(self, trainer: Trainer, model: DiscreteAutoencoder, data: DataSplits) -> None:
        self.trainer = trainer
        self.model = model
        self.data = data
        self.config = trainer.config
        self.eval_every = trainer.config.eval_every
        self.net: nn.Module = model
        self._last_stats: list = []
        self.source: BatchSource | None = None
        #: the best epoch on val so far: {"epoch", "mse", "state"} (state: the model's tensors on the CPU)
        self.best: dict[str, Any] | None = None
        known = model.phases()
        for phase in self.phases():
            if phase.name not in known:
                raise ValueError(f"train.phases: {phase.name!r} is not a phase of this model (known: {', '.join(known)})")

    def phases(self) -> list[PhaseConfig]:
        return self.config.phase_list()

    def module(self) -> DiscreteAutoencoder:
        return self.model

    def parameters(self, phase: PhaseConfig) -> list[nn.Parameter]:
        """Freeze everything but the phase's modules; the trainable parameters."""
        model = self.model
        model.set_phase(phase.name)
        model.requires_grad_(False)
        for module in model.trainable_modules():
            module.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"phase {phase.name!r} has no trainable parameters")
        self.net = wrap_ddp(model, self.trainer.dist)  # DDP under torchrun; codebooks sync themselves
        return params

    def end_phase(self) -> None:
        self.model.requires_grad_(True)

    def train_mode(self) -> None:
        """Train mode for the current phase's modules only: frozen codebooks must not move."""
        self.model.eval()
        for module in self.model.trainable_modules():
            module.train()
        levels = len(self.model.levels)
        self._ppl_sums, self._resets = [0.0] * levels, [0] * levels

    def batches(self, epoch: int):
        """The epoch's ``(x, y)`` batches (:class:`hiervq.data.BatchSource`, built once per task)."""
        if self.source is None:
            self.source = self.trainer.batch_source(self.data)
        return self.source.epoch(epoch)

    def end_fit(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, dict[str, float]]:
        trainer = self.trainer
        x = batch[0].to(trainer.dist.device, non_blocking=True)
        with trainer._autocast():
            out = self.net(x)
        stats = out.stats[: len(self._ppl_sums)]
        with torch.no_grad():
            batch_psnr = psnr(mse_per_image(x, out.recon.float().clamp(0, 1))).mean()
            # every logged number of the step in one transfer (one host synchronisation on an accelerator);
            # float64 holds each float32/int value exactly, so the numbers are those of float()/int() on each
            scalars = [out.loss.detach(), batch_psnr, *out.losses.values()]
            scalars += [st["perplexity"] for st in stats] + [st.get("resets", torch.zeros(())) for st in stats]
            numbers = torch.stack([torch.as_tensor(v, device=x.device).double().reshape(()) for v in scalars]).tolist()
        names = ["loss", "psnr", *out.losses]
        values = dict(zip(names, numbers[: len(names)]))
        ppl, resets = numbers[len(names) : len(names) + len(stats)], numbers[len(names) + len(stats) :]
        for i in range(len(stats)):
            self._ppl_sums[i] += ppl[i]
            self._resets[i] += int(resets[i])
        self._last_stats = out.stats
        return out.loss, values

    def postfix(self, values: dict[str, float]) -> dict[str, str]:
        ppl = "/".join(f"{float(st['perplexity']):.0f}" for st in self._last_stats)
        return {"loss": f"{values['loss']:.4f}", "psnr": f"{values['psnr']:.2f}", "ppl": ppl}

    def train_stats(self, sums: dict[str, float], count: int) -> dict[str, Any]:
        stats = {k: v / max(count, 1) for k, v in sums.items()}
        stats["perplexity"] = [p / max(count, 1) for p in self._ppl_sums]  # training statistics are global already
        stats["resets"] = self._resets
        return stats

    def evaluate(self) -> dict[str, Any]:
        cfg, data = self.config, self.data
        if data.val is None:
            return {"test": self.trainer.evaluate(self.model, data.test, cfg.eval_limit)}
        val = self.trainer.evaluate(self.model, data.val, cfg.eval_limit)
        epoch = len(self.trainer.history) + 1
        # only the last phase's epochs are candidates: an earlier phase's model is unfinished (a stacked model
        # after its first stage reconstructs better than the whole stack, whose later stages are untrained then)
        final_phase = getattr(self.model, "phase", "all") == self.phases()[-1].name
        if cfg.keep == "best" and final_phase and (self.best is None or val["mse"] < self.best["mse"]):
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best = {"epoch": epoch, "mse": val["mse"], "state": state}
        return {"val": val}

    def monitored(self, record: dict[str, Any]) -> float | None:
        """The epoch's val MSE (test MSE without a val split), or None when it was not evaluated."""
        split = record.get("val") or record.get("test")
        return None if split is None else split["mse"]

    @property
    def checkpoint_extra(self) -> dict[str, Any]:
        return {"best": self.best} if self.best is not None else {}

    def log_epoch(self, record: dict) -> None:
        tr = record["train"]
        msg = (
            f"epoch {record['epoch']} [{record['phase']}] loss {tr['loss']:.5f} train psnr {tr['psnr']:.2f} "
            f"ppl {'/'.join(f'{p:.0f}' for p in tr['perplexity'])}"
        )
        for split in ("val", "test"):
            if split in record:
                te = record[split]
                msg += f" | {split} mse {te['mse']:.3e} psnr {te['psnr']:.2f} used " + "/".join(
                    f"{lv['used_fraction']:.2f}" for lv in te["levels"]
                )
        self.trainer.log(msg + f" ({record['train_s']:.0f}s)")

    def log(self, message: str) -> None:
        self.trainer.log(message)


class Trainer:
    """The training engine: fits a :class:`~hiervq.train.engine.Task` phase by phase (:meth:`fit_task`);
    :meth:`fit` fits a :class:`DiscreteAutoencoder` on images.

    Args:
        config: optimisation settings.
        run_dir: where ``metrics.jsonl`` and ``checkpoints/last.pt`` go (``None``: nothing is written).
        seed: seeds the data order (epoch ``e`` uses ``seed + e``), so a resumed run sees the same batches.
        dist: the process group (from :func:`hiervq.train.distributed.setup`); single process by default.
        callbacks: called as ``callback(trainer, record)`` after each epoch's record is written; a callback with
            an ``on_fit_start(trainer)`` method also gets that call before the first step of a fresh (not resumed)
            fit, and one with an ``on_step(trainer, values)`` method gets the task's numbers of every optimiser
            step (``trainer.step`` already counts it; this process's batch; only such callbacks cost anything per
            step). ``trainer.model`` is the model being trained.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        seed: int = 0,
        dist: DistInfo | None = None,
        callbacks: list[Callback] | tuple = (),
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run = RunDir(run_dir) if run_dir is not None else None  # its layout
        self.seed = seed
        self.dist = dist or DistInfo(device=_auto_device(config.device))
        self.callbacks = list(callbacks)
        self.history: list[dict] = []
        self.step = 0
        self.train_seconds = 0.0
        self.model: nn.Module | None = None
        self.task: Task | None = None
        self._eval_cache: tuple | None = None  # (model ref, dataset ref, key, accumulator) of the last evaluation

    # ------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        if self.dist.is_main:
            logger.info(message)

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run is None else self.run.checkpoint

    def batch_source(self, data: DataSplits) -> BatchSource:
        """Where an epoch's training batches of ``data.train`` come from (in memory or read on access, with
        ``data.workers`` processes and ``data.augment``), in this process's data order
        (:func:`hiervq.data.epoch_order`: ``DistributedSampler(seed, epoch)``)."""
        return BatchSource(data.train, self.config.batch_size, self.seed, self.dist.rank, self.dist.world_size,
                           workers=data.workers, augment=data.augment)

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        model: DiscreteAutoencoder,
        dataset: ImageSet,
        limit: int | None = None,
        with_counts: bool = False,
        per_image: bool = False,
        metrics: tuple | list = (),
        reuse: bool = False,
    ) -> dict[str, Any]:
        """MSE/PSNR/SSIM/MS-SSIM (mean and std over images, on [0, 1]), mean loss terms and codebook health per
        level (see :meth:`hiervq.metrics.EvalAccumulator.result`); ``per_image`` adds ``mse_per_image`` (N,);
        ``metrics`` are perceptual metrics (:class:`hiervq.metrics.perceptual.PerceptualMetric`) to add.

        ``reuse``: if the last evaluation saw the same model in the same state (no parameter or buffer written
        since, the same phase) on the same images with the same metrics, compute the result from that pass instead
        of running the model again (e.g. the final test evaluation of a run right after its last epoch's)."""
        model = _unwrap(model)
        n = len(dataset) if limit is None else min(limit, len(dataset))
        key = (n, self.config.eval_batch_size, getattr(model, "phase", None),
               _state_version(model), _state_version(dataset), tuple(id(m) for m in metrics))
        cached = self._eval_cache
        if reuse and cached is not None and cached[0]() is model and cached[1]() is dataset and cached[2] == key:
            acc = cached[3]
        else:
            acc = self._evaluate_pass(model, dataset, n, metrics)
            self._eval_cache = (weakref.ref(model), weakref.ref(dataset), key, acc)
        result = acc.result(with_counts=with_counts)
        if per_image:
            result["mse_per_image"] = acc.per_image_mse()
        return result

    def evaluate_groups(self, model: DiscreteAutoencoder, groups: list[ImageSet], metrics: tuple | list = ()
                        ) -> dict[str, Any]:
        """:meth:`evaluate` over several image sets as one (e.g. a folder's images grouped by size, each coded at
        its own size): one result, means over every image."""
        model = _unwrap(model)
        acc = EvalAccumulator([lv.codebook_size for lv in model.levels], metrics)
        for group in groups:
            self._evaluate_pass(model, group, len(group), metrics, acc)
        return acc.result()

    @torch.inference_mode()
    def _evaluate_pass(self, model: DiscreteAutoencoder, dataset: ImageSet, n: int,
                       metrics: tuple | list = (), acc: EvalAccumulator | None = None) -> EvalAccumulator:
        """Run ``model`` (in eval mode, under ``torch.inference_mode``) over the first ``n`` images of ``dataset``
        (into ``acc`` when given). Images of another size than the model's are coded at their own size
        (:meth:`~hiervq.models.DiscreteAutoencoder.pad_images`, cropped back before any metric)."""
        was_training = model.training
        model.eval()
        device = self.dist.device
        acc = acc or EvalAccumulator([lv.codebook_size for lv in model.levels], metrics)
        bs = self.config.eval_batch_size
        for start in range(0, n, bs):
            x, _ = dataset.batch(slice(start, min(start + bs, n)))
            x = x.to(device)
            size = tuple(x.shape[-2:])
            if size != tuple(model.image_shape[1:]):  # another size: coded at its own size (padded, cropped back)
                out = model(model.pad_images(x))  # float32 always: train.amp never changes a reported number
                recon = crop_images(out.recon.float(), size)
            else:
                out = model(x)
                recon = out.recon.float()
            losses = dict(out.losses)
            losses["total"] = out.loss.detach()
            acc.add(x, recon, out.codes, losses)
        model.train(was_training)
        return acc

    def _autocast(self):
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.config.amp)

    # ------------------------------------------------------------------ training
    def fit(self, model: DiscreteAutoencoder, data: DataSplits, resume: dict | None = None) -> list[dict]:
        """Train an autoencoder through every phase; ``resume`` is a checkpoint dict to continue from. Returns the
        history; :attr:`task` keeps the best epoch on val (:attr:`AutoencoderTask.best`)."""
        task = AutoencoderTask(self, model, data)
        if resume is not None:
            task.best = resume.get("best")
        return self.fit_task(task, resume)

    def fit_task(self, task: Task, resume: dict | None = None) -> list[dict]:
        """Fit ``task`` through its phases; ``resume`` is a checkpoint dict (written by this method) to continue
        from exactly: the same batches, random draws and weights as an uninterrupted fit. Returns the history."""
        model = task.module()
        model.to(self.dist.device)
        if self.config.compile:
            self.log(f"train.compile: {compile_stacks(model)} convolution stacks compiled for the training forward")
        self.model, self.task = model, task
        phases = task.phases()
        start_phase, start_epoch = 0, 0
        if resume is not None:
            load_state(model, resume["model"], "the checkpoint")
            self.history = list(resume["history"])
            self.step = int(resume["step"])
            self.train_seconds = float(resume.get("train_seconds", 0.0))
            # prior checkpoints written before the one engine hold "epoch" instead of the phase position
            start_phase = int(resume.get("phase_index", 0))
            start_epoch = int(resume["phase_epoch"] if "phase_epoch" in resume else resume["epoch"])
            torch.set_rng_state(resume["rng"])
            if torch.cuda.is_available() and resume.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(resume["cuda_rng"], self.dist.device)
            self._rewrite_metrics()
            if self.dist.is_main:
                task.log(task.describe_resume(phases[min(start_phase, len(phases) - 1)], start_epoch))
        else:
            for callback in self.callbacks:
                if hasattr(callback, "on_fit_start"):
                    callback.on_fit_start(self)

        epochs_before = sum(p.epochs for p in phases[:start_phase])
        try:
            for pi in range(start_phase, len(phases)):
                phase = phases[pi]
                first = start_epoch if pi == start_phase else 0
                if self._out_of_time():  # (a resumed run that had reached train.time_limit)
                    break
                if first < phase.epochs and not self._agree(self._plateaued(task, phase)):
                    self._run_phase(task, pi, phase, first, epochs_before, resume if pi == start_phase else None)
                epochs_before += phase.epochs
        finally:
            task.end_fit()
        return self.history

    def _run_phase(
        self, task: Task, pi: int, phase: PhaseConfig, first_epoch: int, epochs_before: int, resume: dict | None
    ) -> None:
        cfg = self.config
        params = task.parameters(phase)
        lr = phase.lr or cfg.lr
        optimizer = make_optimizer(cfg, params, lr)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        total = task.steps_per_epoch() * phase.epochs
        scheduler = make_scheduler(optimizer, cfg, total, phase.schedule or cfg.schedule)
        if resume is not None and (resume.get("optimizer") is None or resume.get("scheduler") is None):
            if self.dist.is_main:
                logger.warning("%s: the checkpoint has no optimizer state; the optimizer (%s moments) and the learning "
                               "rate schedule restart from scratch at step %d, so this run will not match an "
                               "uninterrupted one", self.checkpoint_path or "resume", cfg.optimizer, self.step)
        elif resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            # the checkpoint restores the hyperparameters it was saved with; a resumed run trains with its config
            # (what config.yaml says, e.g. after --resume --set train.lr=...); unchanged, this changes nothing
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                saved_lr, saved_base = optimizer.param_groups[0]["lr"], scheduler.base_lrs[0]
                scheduler.base_lrs = list(base_lrs)
                for group, base, factor in zip(optimizer.param_groups, base_lrs, scheduler.lr_lambdas):
                    group["lr"] = base * factor(scheduler.last_epoch)
                self._warn_schedule_jump(saved_lr, saved_base, optimizer.param_groups[0]["lr"], base_lrs[0], phase,
                                         total, scheduler.last_epoch)
            # (torch's recursive schedules, e.g. CosineAnnealingLR, continue from the checkpoint's learning rates)
            for group in optimizer.param_groups:
                group["betas"] = tuple(cfg.betas)
                group["weight_decay"] = cfg.weight_decay
        # what the gradient is clipped over, in module order (the order the norm is summed in)
        flat = [p for p in task.module().parameters() if p.requires_grad]
        for epoch in range(first_epoch, phase.epochs):
            global_epoch = epochs_before + epoch
            t0 = time.perf_counter()
            train_stats = self._train_epoch(task, optimizer, scheduler, flat, global_epoch, phase)
            self.train_seconds += time.perf_counter() - t0
            out_of_time = self._out_of_time()
            record: dict[str, Any] = {
                "epoch": global_epoch + 1,
                "phase": phase.name,
                "phase_epoch": epoch + 1,
                "step": self.step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_s": round(self.train_seconds, 3),
                "train": train_stats,
            }
            last = epoch + 1 == phase.epochs or out_of_time
            evaluated = self.dist.is_main and ((epoch + 1) % task.eval_every == 0 or last)
            if evaluated:
                record.update(task.evaluate())
            barrier(self.dist)
            record = task.record(record, evaluated)
            stopped = "time_limit" if out_of_time else None
            if record is not None:
                if stopped is None and self._plateaued(task, phase, record):
                    stopped = "plateau"
                if stopped is not None:
                    record["stopped"] = stopped
                    self.log(f"{'train.time_limit' if out_of_time else 'train.plateau'} reached: phase {phase.name} "
                             f"ends after epoch {epoch + 1} ({self.train_seconds:.0f}s of training)")
                self.history.append(record)
                task.log_epoch(record)
                if self.dist.is_main:
                    self._append_metrics(record)
            if self.dist.is_main:
                self._save(task, optimizer, scheduler, pi, epoch + 1)
            if record is not None:
                for callback in self.callbacks:
                    callback(self, record)
            if self._agree(stopped) is not None:
                break
        task.end_phase()

    def _out_of_time(self) -> bool:
        """``train.time_limit`` reached (rank 0's clock decides for every rank)."""
        limit = getattr(self.config, "time_limit", None)
        return self._agree(limit is not None and self.train_seconds >= limit) is True

    def _plateaued(self, task: Task, phase: PhaseConfig, record: dict | None = None) -> bool:
        """``train.plateau``: the phase's monitored number (:meth:`Task.monitored`, over the history of this phase
        and ``record``) improved by less than the plateau fraction over the last quarter of its evaluations."""
        tol = getattr(self.config, "plateau", None)
        if tol is None:
            return False
        records = [r for r in self.history if r.get("phase") == phase.name] + ([record] if record else [])
        return plateaued([v for v in map(task.monitored, records) if v is not None], tol)

    def _agree(self, value):
        """``value`` as rank 0 has it, on every rank (a no-op in a single process)."""
        if not self.dist.enabled:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def _warn_schedule_jump(self, saved_lr: float, saved_base: float, lr: float, base: float, phase: PhaseConfig,
                            total: int, step: int) -> None:
        """One warning when a resumed phase's schedule puts the learning rate well above where the checkpoint left
        it, relative to the base rate (``--resume --set train.epochs=N`` on a finished cosine run: from ~0 back up,
        then down again); a changed ``train.lr`` alone says nothing."""
        if not self.dist.is_main or not saved_base or lr / base <= saved_lr / saved_base + 0.05:
            return
        schedule = phase.schedule or self.config.schedule
        logger.warning(
            "resuming at step %d: the %s schedule now spans %d steps of phase %s (%d epochs), so the learning rate "
            "goes from %.3g (where the checkpoint left it) back up to %.3g and then follows the schedule to its end; "
            "set train.lr (or start a new run from the saved model) if that is not what you want",
            step, schedule, total, phase.name, phase.epochs, saved_lr, lr)

    def _train_epoch(self, task: Task, optimizer, scheduler, params, epoch: int, phase: PhaseConfig) -> dict:
        cfg = self.config
        task.train_mode()
        batches = task.batches(epoch)
        sums: dict[str, float] = {}
        count = 0
        bar = _progress(batches, f"{task.progress_label(phase)} epoch {epoch + 1}", cfg.progress and self.dist.is_main)
        step_hooks = [cb.on_step for cb in self.callbacks if hasattr(cb, "on_step")]
        for batch in bar:
            values = self.train_step(task, optimizer, scheduler, params, batch, f"epoch {epoch + 1}, phase {phase.name}")
            for hook in step_hooks:
                hook(self, values)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if hasattr(bar, "set_postfix"):
                postfix = task.postfix(values)
                if postfix:
                    bar.set_postfix(**postfix, refresh=False)
        if self.dist.enabled and sums:
            # every rank ran the same number of equal-sized batches: the mean of the ranks' sums is the global one
            keys = sorted(sums)
            total = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.dist.device)
            torch.distributed.all_reduce(total)
            sums = {k: float(v) / self.dist.world_size for k, v in zip(keys, total.tolist())}
        return task.train_stats(sums, count)

    def train_step(self, task: Task, optimizer, scheduler, params, batch, where: str = "") -> dict[str, float]:
        """One optimiser step of ``task`` on ``batch``: loss, backward, clipping of ``params``' gradient, the
        divergence check, the optimiser and schedule steps. Returns the task's values for the batch. ``where``
        (e.g. "epoch 3, phase all") goes into the divergence message."""
        loss, values = task.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach().float()
        grad_clip = self.config.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip else loss
        if not self._finite(torch.stack([loss, norm.detach().float().to(loss.device)])):
            # stop before the step: the weights (and the last checkpoint) stay finite
            what = f"loss {float(loss)}" if not torch.isfinite(loss) else f"gradient norm {float(norm)}"
            raise DivergedError(self._diverged(f"at step {self.step + 1}{f' ({where})' if where else ''}: "
                                               f"the training {what} is not finite"))
        optimizer.step()
        scheduler.step()
        self.step += 1
        return values

    # ------------------------------------------------------------------ divergence
    def _finite(self, values: torch.Tensor) -> bool:
        """Whether ``values`` are finite on every process (all stop together under DDP)."""
        ok = torch.isfinite(values).all().to(torch.float32)
        if self.dist.enabled:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok)

    def _diverged(self, what: str) -> str:
        """The one-line message of a divergence (``what``: when, and what went non-finite) and what was kept."""
        path = self.checkpoint_path
        if self.run is not None and self.run.has_checkpoint():
            # finite: _save refuses non-finite weights, load_checkpoint refuses to resume from them
            kept = f"the last finite checkpoint {path} (step {self.history[-1]['step'] if self.history else 0}) is kept"
        else:
            kept = "no checkpoint was written before it"
        command = self.task.resume_command if self.task is not None else None
        retry = f": {command.format(run_dir=self.run_dir)}" if command and self.run_dir is not None else ""
        return f"training diverged {what}; {kept}; continue with a lower learning rate{retry}"

    # ------------------------------------------------------------------ bookkeeping
    def _append_metrics(self, record: dict) -> None:
        if self.run is not None:
            self.run.append_metrics(record)

    def _rewrite_metrics(self) -> None:
        """On resume, make metrics.jsonl agree with the checkpoint's history (drop lines written after it)."""
        if self.run is not None and self.dist.is_main:
            self.run.write_metrics(self.history)

    def _save(self, task: Task, optimizer, scheduler, phase_index: int, phase_epoch: int) -> None:
        path = self.checkpoint_path
        if path is None:
            return
        model = task.module()
        bad = nonfinite_tensors(model.state_dict())
        if bad:  # e.g. a codebook's running averages: never saved, the last checkpoint stays the last finite one
            raise DivergedError(self._diverged(f"by step {self.step}: {', '.join(bad[:3])} became non-finite"))
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "phase_index": phase_index,
            "phase_epoch": phase_epoch,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "history": self.history,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.dist.device) if self.dist.device.type == "cuda" else None,
            **task.checkpoint_extra,
        }
        save_checkpoint(path, state)


def plateaued(values: list[float], tol: float, min_evals: int = 4) -> bool:
    """Whether a sequence of per-evaluation numbers (lower is better) has plateaued: at least ``min_evals`` of
    them, and the best of the last quarter (at least one) is not ``tol`` (a fraction) below the best before it.

    >>> plateaued([4.0, 2.0, 1.5, 1.49], 0.02), plateaued([4.0, 2.0, 1.5, 1.4], 0.02)
    (True, False)
    """
    if len(values) < min_evals:
        return False
    recent = max(1, len(values) // 4)
    before, after = min(values[:-recent]), min(values[-recent:])
    return after > before * (1.0 - tol)


def _state_version(obj: Any) -> tuple:
    """Identity and in-place version of every tensor of a module (parameters, buffers) or an image set, and the
    modules' ``bypass`` switches: changes whenever one of them is written (an optimiser step, a codebook update,
    ``load_state_dict``), replaced or switched."""
    if isinstance(obj, nn.Module):
        tensors = [*obj.parameters(), *obj.buffers()]
        switches = tuple(m.bypass for m in obj.modules() if isinstance(getattr(m, "bypass", None), bool))
        return switches + tuple((id(t), t._version) for t in tensors)
    else:
        tensors = [t for t in vars(obj).values() if isinstance(t, torch.Tensor)]
    return tuple((id(t), t._version) for t in tensors)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _auto_device(name: str) -> torch.device:
    return resolve_device(name)


def _progress(items: list, desc: str, enabled: bool):
    """A tqdm bar on a terminal, a progress line every ``HIERVQ_PROGRESS_INTERVAL`` s otherwise (:mod:`hiervq.log`)."""
    return progress(items, desc, enabled)
