"""An MLP classifier head on a pretrained model's features (or on raw pixels), and its training loop.

The head is flatten -> (standardize) -> [Linear -> GELU -> Dropout] x len(hidden) -> Linear -> logits, trained with
cross-entropy on the logits (no softmax before the loss) by AdamW (a constant learning rate as published, or
``schedule: cosine``). The pretrained autoencoder is frozen by default (its features can then be computed once).
Fine-tuned, its encoders train end to end with the head (through the quantizers' straight-through gradients, at
``encoder_lr``), its codebooks and its stage-input statistics stay fixed unless ``train_codebooks``, and the head
standardises with batch statistics that follow the moving features. Trained from scratch, the same network starts from a fresh initialisation and trains everything.
Image inputs can be augmented with random flips and 90-degree rotations (the dihedral group of the square).
The evaluation point is selected on a validation split; test accuracy is reported there, at the last point and
at the best point on test (the optimistic protocol of the published tables, reported separately).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..models.base import DiscreteAutoencoder
from ..nn import Standardize


@dataclass
class ClassifierConfig:
    """The classifier head and its optimisation (defaults: the published fine-tuning recipe).

    Attributes:
        hidden: widths of the hidden layers (GELU after each).
        dropout: dropout after each hidden layer.
        standardize: standardize every input feature: with the mean/std of the (unlabeled) training inputs when
            the features are fixed (frozen encoder, pixels); with batch statistics (running ones in evaluation) when
            the encoder trains, so the standardisation follows the features.
        epochs: training epochs over the labeled subset; ``min_steps`` raises them for small subsets so that every
            fraction gets at least that many optimiser steps.
        evals: how many times the model is evaluated (on val and test) over the training, evenly spaced in epochs
            (the last epoch always); the selected point is one of these.
        batch_size, eval_batch_size: images per step / per evaluation batch.
        lr, weight_decay, betas: AdamW (the head's learning rate).
        schedule: ``constant`` (as published) or ``cosine`` (every group's learning rate decays to 0 over the
            run's steps, per step: torch's CosineAnnealingLR).
        encoder_lr: learning rate of a trained encoder (fine-tuning; ``null``: ``lr``, as published).
        finetune: the default mode of ``classify.models`` rows given as a bare path: fine-tune instead of frozen.
        train_codebooks: when fine-tuning, codebooks (EMA, dead-code reset) and stage-input statistics keep
            adapting; default: fixed at their pretrained values.
        quantize: when fine-tuning, the features go through the quantizers (straight-through gradients); false:
            every quantizer passes its continuous input through (the encoders fine-tune as a continuous network
            initialised from pretraining; codes are not used).
        augment: random horizontal/vertical flips and 90-degree rotations of training images (pixels and
            fine-tuned/from-scratch rows; frozen features are computed once, without augmentation).
        grad_clip: clip the gradient norm (``null``: no clipping).
    """

    hidden: list[int] = field(default_factory=lambda: [512])
    dropout: float = 0.0
    standardize: bool = True
    epochs: int = 100
    min_steps: int = 0
    evals: int = 100
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 1.5e-4
    schedule: str = "constant"
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    encoder_lr: float | None = None
    finetune: bool = False
    train_codebooks: bool = False
    quantize: bool = True
    augment: bool = False
    grad_clip: float | None = None

    def validate(self) -> None:
        if any(h < 1 for h in self.hidden) or not 0.0 <= self.dropout < 1.0:
            raise ValueError("hidden widths must be >= 1 and dropout in [0, 1)")
        if self.epochs < 1 or self.min_steps < 0 or self.batch_size < 1 or self.eval_batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1, min_steps >= 0, lr > 0")
        if self.evals < 1 or (self.encoder_lr is not None and self.encoder_lr <= 0):
            raise ValueError("evals must be >= 1 and encoder_lr > 0")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be constant or cosine, got {self.schedule!r}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")


class MLPHead(nn.Module):
    """(B, ...) inputs -> flatten -> (standardize) -> MLP with GELU -> logits (B, num_classes).

    Standardisation: fixed statistics set by :meth:`set_standardization` (identity until then), or, with
    ``batch_norm``, batch statistics in training and running ones in evaluation (for features that move).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: list[int] | tuple = (512,), dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.norm = nn.BatchNorm1d(in_features, affine=False) if batch_norm else nn.Identity()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    @torch.no_grad()
    def set_standardization(self, inputs: torch.Tensor, chunk: int = 1024) -> None:
        """Standardize with the per-feature mean and std of ``inputs`` (N, ...) (features, or uint8 images taken
        on [0, 1]) from now on; computed in chunks, in float64."""
        n = len(inputs)
        total = torch.zeros_like(self.mean, dtype=torch.float64)
        squares = torch.zeros_like(total)
        for i in range(0, n, chunk):
            flat = as_inputs(inputs[i : i + chunk]).flatten(1).double()
            total += flat.sum(0)
            squares += flat.pow(2).sum(0)
        mean = total / max(n, 1)
        var = (squares - n * mean.pow(2)).clamp_min(0) / max(n - 1, 1)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float().clamp_min(1e-6) if n > 1 else torch.ones_like(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm((x.flatten(1) - self.mean) / self.std))


class ConvClassifier(nn.Module):
    """A plain convolutional network for small images, the supervised reference: images (B, C, H, W) in [0, 1] ->
    logits (B, num_classes).

    One 3x3 convolution per entry of ``widths`` (its output channels), each followed by batch norm and ReLU, 2x2
    max pooling after every second one, then global average pooling and a linear layer. With the default 6 widths
    (32, 32, 64, 64, 128, 128) a 32x32 image is pooled to 4x4 before the average; 288,000 parameters for 3 input
    channels.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: list[int] | tuple = (32, 32, 64, 64, 128, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(width, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            width = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((-2, -1)))


class FeatureClassifier(nn.Module):
    """A :class:`DiscreteAutoencoder` and a head on its ``features(x)``: images (B, C, H, W) in [0, 1] -> logits
    (B, num_classes).

    Frozen (default): no gradients reach the autoencoder, which stays in eval mode. ``finetune``: its parameters
    train with the head, through the straight-through gradients of the quantizers; its layers are in training mode
    except, unless ``train_codebooks``, the quantizers (no EMA update, no dead-code reset) and the stage-input
    standardisation (statistics fixed), which keep their pretrained state. ``quantize=False`` (fine-tuning only):
    the quantizers pass their continuous inputs through (see ``VectorQuantizer.bypass``).
    """

    def __init__(self, encoder: DiscreteAutoencoder, head: nn.Module, finetune: bool = False,
                 train_codebooks: bool = False, quantize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.finetune = finetune
        self.train_codebooks = train_codebooks and finetune
        encoder.requires_grad_(finetune)
        for vq in encoder.quantizers():
            vq.bypass = finetune and not quantize
        self.train(self.training)

    def train(self, mode: bool = True) -> FeatureClassifier:
        super().train(mode)
        if not (self.finetune and mode):
            self.encoder.eval()
        elif not self.train_codebooks:
            fixed = {id(q) for q in self.encoder.quantizers()}
            for module in self.encoder.modules():
                if isinstance(module, Standardize) or id(module) in fixed:
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.finetune:
            return self.head(self.encoder.features(x))
        with torch.no_grad():
            feats = self.encoder.features(x)
        return self.head(feats)


def as_inputs(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float on [0, 1]; anything else unchanged."""
    return batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch


def dihedral_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``images`` (B, C, H, W) (H == W) under an independent random element of the dihedral group of
    the square (8 elements: 4 rotations by 90 degrees, each with or without a horizontal flip); for cells and
    other images without an orientation. Draws from ``generator`` only, so the batches are reproducible."""
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"dihedral augmentation needs square images (B, C, H, W), got {tuple(images.shape)}")
    element = torch.randint(0, 8, (len(images),), generator=generator)
    out = images.clone()
    for g in range(1, 8):
        idx = (element == g).nonzero().flatten()
        if len(idx):
            part = torch.rot90(images[idx], g % 4, dims=(-2, -1))
            out[idx] = part.flip(-1) if g >= 4 else part
    return out


@torch.no_grad()
def extract_features(
    encoder: DiscreteAutoencoder, images: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """``encoder.features`` of uint8 or float images (N, C, H, W), flattened: (N, F) float32 on the CPU."""
    was_training = encoder.training
    encoder.eval()
    out = [
        encoder.features(as_inputs(images[i : i + batch_size]).to(device)).flatten(1).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class ClassifierResult:
    """Outcome of :func:`fit_classifier` (accuracies on [0, 1]; confusion rows = true class).

    ``test_acc``/``test_confusion``/``per_class`` are at ``best_epoch`` (highest validation accuracy, then lowest
    validation loss, then earliest, among the evaluated epochs); ``final_*`` at the last epoch; ``best_test_acc``
    the highest test accuracy of any evaluated epoch (selection on test: optimistic, as in the published tables).
    """

    best_epoch: int
    epochs: int
    steps: int
    val_acc: float
    test_acc: float
    final_val_acc: float
    final_test_acc: float
    best_test_acc: float
    per_class: list[float]
    final_per_class: list[float]
    test_confusion: list[list[int]]
    final_test_confusion: list[list[int]]
    train_images: int
    params: int
    train_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits (N, num_classes) of ``model`` for ``inputs`` (N, ...), in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    out = [model(as_inputs(inputs[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(out)
