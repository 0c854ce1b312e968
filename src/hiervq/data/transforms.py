"""Image transforms shared by the in-memory and the lazy readers (so neither imports the other)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DataError


def fit_images(images: torch.Tensor, size: int | None, fit: str = "resize", channels: int | None = None) -> torch.Tensor:
    """Bring uint8 images (N, C, H, W) to ``size`` x ``size`` (resize or centred pad) and ``channels``."""
    if channels is not None and images.shape[1] != channels:
        if images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif images.shape[1] == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")
    if size is None or tuple(images.shape[2:]) == (size, size):
        return images
    h, w = images.shape[2:]
    if fit == "pad":
        if h > size or w > size:
            raise DataError(f"cannot pad {h}x{w} images to {size}x{size}; use fit: resize")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(images, (left, size - w - left, top, size - h - top))
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + 4096] = resized.round().clamp(0, 255).to(torch.uint8)
    return out
