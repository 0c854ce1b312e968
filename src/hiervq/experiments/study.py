"""Views of training: reconstructions of a fixed batch and t-SNE maps of the code vectors at chosen epochs.

:class:`TrainingSnapshots` is a Trainer callback (it also implements ``on_fit_start`` to catch epoch 0, the
untrained model). At every snapshot epoch it writes ``RUN/study/epoch_XXXX.npz``: the fixed batch's
reconstruction, and per level the code vectors (K, D) and their usage counts (K,) on ``usage_images`` test
images. :func:`finish_study` turns the snapshots into ``RUN/study/reconstructions.png`` and
``RUN/study/tsne_level{l}.png``. Snapshots only read the model (eval mode, no gradients, no random numbers),
so a run with a study trains exactly like one without.
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np
import torch

from ..data import ImageSet
from ..extras import available, require, warn_missing
from ..io import atomic_write_bytes
from ..layout import RunDir
from ..metrics.plots import plot_embeddings, save_image_grid
from .config import StudyConfig

RECONSTRUCTIONS = "reconstructions.png"


def snapshot_epochs(fractions: list[float], total_epochs: int) -> list[int]:
    """Epoch numbers (0 = before training, ``total_epochs`` = the end) for fractions of the training."""
    return sorted({int(f * total_epochs + 0.5) for f in fractions})


class TrainingSnapshots:
    """Trainer callback writing snapshots at :func:`snapshot_epochs` (see the module docstring)."""

    def __init__(self, study: StudyConfig, run_dir: str | Path, test: ImageSet, total_epochs: int) -> None:
        self.study = study
        self.dir = RunDir(run_dir).study
        self.test = test
        self.epochs = snapshot_epochs(study.fractions, total_epochs)

    def on_fit_start(self, trainer) -> None:
        if 0 in self.epochs:
            self.snapshot(trainer, 0)

    def __call__(self, trainer, record: dict) -> None:
        if record["epoch"] in self.epochs:
            self.snapshot(trainer, record["epoch"])

    @torch.no_grad()
    def snapshot(self, trainer, epoch: int) -> None:
        if not trainer.dist.is_main:
            return
        model = trainer.model
        device = trainer.dist.device
        was_training = model.training
        model.eval()
        x, _ = self.test.batch(slice(0, min(self.study.fixed_batch, len(self.test))))
        recon = model(x.to(device)).recon.float().clamp(0, 1).cpu()
        counts = [torch.zeros(lv.codebook_size, dtype=torch.long) for lv in model.levels]
        n = min(self.study.usage_images, len(self.test))
        bs = trainer.config.eval_batch_size
        for start in range(0, n, bs):
            xb, _ = self.test.batch(slice(start, min(start + bs, n)))
            for i, idx in enumerate(model.codes_to_list(model.encode(xb.to(device)))):
                counts[i] += torch.bincount(idx.reshape(-1).cpu(), minlength=len(counts[i]))
        arrays = {"epoch": np.array(epoch), "recon": (recon.numpy() * 255).round().astype(np.uint8)}
        for i, vq in enumerate(model.quantizers()):
            arrays[f"codes{i}"] = vq.codebook.weight.detach().float().cpu().numpy()
            arrays[f"counts{i}"] = counts[i].numpy()
        model.train(was_training)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.dir / f"epoch_{epoch:04d}.npz", buffer.getvalue())


def _tsne(vectors: np.ndarray, study: StudyConfig, seed: int) -> np.ndarray:
    """2-D t-SNE (K, 2) of code vectors (K, D) with the study's perplexity, learning rate and iterations."""
    TSNE = require("sklearn.manifold", "t-SNE of code vectors").TSNE

    k = vectors.shape[0]
    kwargs = {
        "n_components": 2,
        "perplexity": min(study.tsne_perplexity, max(1.0, (k - 1) / 3)),  # TSNE needs perplexity < K
        "learning_rate": study.tsne_learning_rate,
        "init": "pca",
        "random_state": seed,
    }
    # scikit-learn >= 1.5 calls the iteration count max_iter (n_iter before)
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE.__init__).parameters else "n_iter"
    kwargs[iters] = study.tsne_iterations
    try:  # one OpenMP thread: next to torch's thread pool, more threads spin-wait and run ~5-50x slower
        from threadpoolctl import threadpool_limits  # optional dependency (comes with scikit-learn)
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    if threadpool_limits is None:  # pragma: no cover
        return TSNE(**kwargs).fit_transform(vectors.astype(np.float64))
    with threadpool_limits(1):
        return TSNE(**kwargs).fit_transform(vectors.astype(np.float64))


def study_finished(run_dir: str | Path) -> bool:
    """Whether :func:`finish_study` has drawn the figures of ``run_dir``'s snapshots."""
    return (RunDir(run_dir).study / RECONSTRUCTIONS).is_file()


def finish_study(study: StudyConfig, run_dir: str | Path, test: ImageSet, seed: int = 0) -> list[Path]:
    """Figures from a run's snapshots: reconstructions (originals, then one row per snapshot) and one t-SNE
    figure per level (one panel per snapshot, codes coloured by usage). Returns the written paths."""
    folder = RunDir(run_dir).study
    snaps = sorted(folder.glob("epoch_*.npz"))
    if not snaps:
        return []
    loaded = [dict(np.load(p)) for p in snaps]
    written = []
    x, _ = test.batch(slice(0, loaded[0]["recon"].shape[0]))
    rows = [x] + [torch.from_numpy(s["recon"]).float() / 255.0 for s in loaded]
    path = folder / RECONSTRUCTIONS
    save_image_grid(torch.cat(rows), path, nrow=x.shape[0], scale=3 if x.shape[-1] <= 32 else 1)
    written.append(path)
    epochs = [int(s["epoch"]) for s in loaded]
    (folder / "reconstructions.txt").write_text(
        "rows: originals, then reconstructions after epochs " + ", ".join(map(str, epochs)) + "\n"
    )

    if study.tsne and not available("sklearn"):
        warn_missing("sklearn", "the t-SNE maps of the study")
    elif study.tsne:
        levels = sum(1 for k in loaded[0] if k.startswith("codes"))
        for lv in range(levels):
            points = [_tsne(s[f"codes{lv}"], study, seed) for s in loaded]
            counts = [s[f"counts{lv}"] for s in loaded]
            path = folder / f"tsne_level{lv}.png"
            plot_embeddings(points, counts, [f"epoch {e}" for e in epochs], path,
                            suptitle=f"t-SNE of level {lv} code vectors (colour: usage on test images)")
            written.append(path)
    return written
