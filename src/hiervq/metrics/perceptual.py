"""The hook for perceptual metrics whose networks you have locally (LPIPS-like distances, FID-like statistics).

hiervq downloads nothing, so it ships no LPIPS or Inception weights. When you have such a network on disk, wrap it
in a :class:`PerceptualMetric` and hiervq computes it next to MSE/PSNR/SSIM wherever a model is evaluated:

* ``kind="distance"`` (LPIPS-like): ``network(x, y)`` takes originals and reconstructions (B, C, H, W) on [0, 1]
  and returns one distance per image (B,) (or (B, ...), averaged per image). The result is ``<name>`` (mean over
  images) and ``<name>_std``.
* ``kind="features"`` (FID-like): ``network(x)`` returns one feature vector per image (B, F) (or (B, ...),
  flattened). The result ``<name>`` is the Frechet distance between Gaussians fitted to the features of the
  originals and of the reconstructions (:func:`frechet_distance`; the FID formula, on whatever features the
  network gives; the reference statistics are the evaluated set's own originals).

The network receives images exactly as hiervq holds them (1 or 3 channels, the model's size, on [0, 1]); bring
them to what it expects (e.g. ``x.expand(-1, 3, -1, -1) * 2 - 1``, resizing) inside it. An ``nn.Module`` is moved to
the evaluation's device and put in eval mode; everything runs under ``torch.no_grad``.

From the command line, ``hiervq eval RUN --metric SPEC`` (repeatable) with SPEC = ``package.module:factory`` or
``path/to/file.py:factory``, where ``factory()`` returns a :class:`PerceptualMetric` (typically loading the
weights from a local file)::

    # my_lpips.py
    import torch
    from hiervq.metrics.perceptual import PerceptualMetric

    def lpips():
        net = MyLPIPS()                                              # your architecture
        net.load_state_dict(torch.load("/models/lpips_vgg.pt"))      # weights present locally
        return PerceptualMetric("lpips", net, kind="distance")

    $ hiervq eval runs/demo --metric my_lpips.py:lpips               # adds "lpips" and "lpips_std"

In Python: ``evaluate_run(run, metrics=[...])`` or ``Trainer.evaluate(model, data, metrics=[...])``.
tests/test_usability.py runs both kinds with tiny stand-in networks.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import HierVQError

KINDS = ("distance", "features")


@dataclass
class PerceptualMetric:
    """A named network-based metric: ``kind`` ``distance`` (``network(x, y) -> (B,)``) or ``features``
    (``network(x) -> (B, F)``, reported as a Frechet distance); see the module documentation."""

    name: str
    network: Callable
    kind: str = "distance"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"metric name {self.name!r}: use letters, digits and underscores")

    def accumulator(self) -> _DistanceAccumulator | _FeatureAccumulator:
        return _DistanceAccumulator(self) if self.kind == "distance" else _FeatureAccumulator(self)


def _prepare(metric: PerceptualMetric, device: torch.device) -> Callable:
    net = metric.network
    if isinstance(net, nn.Module):
        net.to(device).eval()
    return net


class _DistanceAccumulator:
    def __init__(self, metric: PerceptualMetric) -> None:
        self.metric, self.values, self.net = metric, [], None

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = self.net or _prepare(self.metric, x.device)
        d = torch.as_tensor(self.net(x, y))
        if d.shape[:1] != x.shape[:1]:
            raise ValueError(f"metric {self.metric.name!r}: expected one value per image ({x.shape[0]}), got shape "
                             f"{tuple(d.shape)}")
        self.values.append(d.reshape(d.shape[0], -1).double().mean(1).cpu())

    def result(self) -> dict[str, float]:
        v = torch.cat(self.values)
        return {self.metric.name: float(v.mean()), f"{self.metric.name}_std": float(v.std()) if v.numel() > 1 else 0.0}


class _FeatureAccumulator:
    def __init__(self, metric: PerceptualMetric) -> None:
        self.metric, self.real, self.fake, self.net = metric, [], [], None

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = self.net or _prepare(self.metric, x.device)
        for images, store in ((x, self.real), (y, self.fake)):
            f = torch.as_tensor(self.net(images))
            if f.shape[:1] != images.shape[:1]:
                raise ValueError(f"metric {self.metric.name!r}: expected one feature vector per image, got shape "
                                 f"{tuple(f.shape)}")
            store.append(f.reshape(f.shape[0], -1).double().cpu())

    def result(self) -> dict[str, float]:
        return {self.metric.name: frechet_distance(torch.cat(self.real), torch.cat(self.fake))}


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F) (N, M >= 2):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, in float64, with the trace of the matrix square
    root from the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric, so no complex parts)."""
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    if a.shape[0] < 2 or b.shape[0] < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two sets of >= 2 feature vectors of one size, got {tuple(a.shape)} and {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(value.clamp_min(0))


def load_metric(spec: str) -> PerceptualMetric:
    """``module:factory`` or ``file.py:factory`` -> ``factory()``, which must return a :class:`PerceptualMetric`;
    every failure is a one-line :class:`~hiervq.errors.HierVQError`."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise HierVQError(f"--metric {spec}: expected MODULE:FACTORY or FILE.py:FACTORY")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise HierVQError(f"--metric {spec}: {path}: no such file")
            name = f"hiervq_metric_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        factory = getattr(module, attr)
    except HierVQError:
        raise
    except AttributeError:
        raise HierVQError(f"--metric {spec}: {where} has no {attr!r}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module: report it on one line
        raise HierVQError(f"--metric {spec}: cannot import {where} ({type(exc).__name__}: {exc})") from None
    try:
        metric = factory()
    except Exception as exc:  # noqa: BLE001
        raise HierVQError(f"--metric {spec}: {attr}() failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(metric, PerceptualMetric):
        raise HierVQError(f"--metric {spec}: {attr}() returned {type(metric).__name__}, not a PerceptualMetric")
    return metric
