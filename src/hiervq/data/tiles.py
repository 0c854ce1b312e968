"""Histology tile selection: cut large slide images into tiles and keep the ones with tissue in focus.

A tile is kept when its pixel standard deviation (over all pixels and channels, 0-255) is >= ``min_std``
(drops empty background and flat regions) and the variance of the Laplacian of its luminance is >= ``min_laplacian``
(drops blurred, out-of-focus regions); the defaults 10 and 20 are the thresholds the published SVQVAE pipeline used
for CAMELYON16 crops. Numpy only; the kept tiles can be written as a flat folder of PNGs for ``data.name: folder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

#: 3x3 Laplacian kernel (the one OpenCV's ``Laplacian`` uses with its default ``ksize=1``).
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


@dataclass
class TileFilter:
    """Thresholds of :func:`select_tiles`: pixel std >= ``min_std`` and Laplacian variance >= ``min_laplacian``."""

    min_std: float = 10.0
    min_laplacian: float = 20.0


def _as_batch(tiles: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> (N, H, W, C) float64."""
    tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = tiles[..., None]
    if tiles.ndim != 4 or tiles.shape[3] not in (1, 3, 4):
        raise DataError(f"tiles must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {tiles.shape}")
    return tiles[..., :3].astype(np.float64)


def luminance(tiles: np.ndarray) -> np.ndarray:
    """Grey levels (N, H, W) of tiles (N, H, W[, C]) on their own scale (ITU-R 601 weights for RGB)."""
    t = _as_batch(tiles)
    if t.shape[3] == 1:
        return t[..., 0]
    return t[..., 0] * 0.299 + t[..., 1] * 0.587 + t[..., 2] * 0.114


def pixel_std(tiles: np.ndarray) -> np.ndarray:
    """Standard deviation (N,) of each tile over all its pixels and channels (0-255 for uint8 tiles)."""
    t = _as_batch(tiles)
    return t.reshape(len(t), -1).std(axis=1)


def laplacian_variance(tiles: np.ndarray) -> np.ndarray:
    """Variance (N,) of the 3x3 Laplacian of each tile's luminance (reflected borders, like OpenCV's default).

    A sharpness measure: flat or blurred tiles give small values.
    """
    g = np.pad(luminance(tiles), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = g.shape[1] - 2, g.shape[2] - 2
    lap = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4.0 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(lap), h * w).var(axis=1)


def select_tiles(tiles: np.ndarray, min_std: float = 10.0, min_laplacian: float = 20.0) -> np.ndarray:
    """Boolean mask (N,) of the tiles to keep: pixel std >= ``min_std`` and Laplacian variance >= ``min_laplacian``."""
    return (pixel_std(tiles) >= min_std) & (laplacian_variance(tiles) >= min_laplacian)


def cut_tiles(image: np.ndarray, size: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut an image (H, W[, C]) into ``size`` x ``size`` tiles every ``stride`` pixels (default: ``size``, no
    overlap); partial tiles at the right/bottom edges are dropped. Returns tiles (N, size, size, C) and their
    top-left corners (N, 2) as (row, col)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise DataError(f"an image must be (H, W) or (H, W, C), got {image.shape}")
    stride = stride or size
    if size < 1 or stride < 1:
        raise DataError(f"tile size and stride must be >= 1, got {size} and {stride}")
    h, w = image.shape[:2]
    rows = range(0, h - size + 1, stride)
    cols = range(0, w - size + 1, stride)
    origins = np.array([(r, c) for r in rows for c in cols], dtype=np.int64).reshape(-1, 2)
    tiles = np.stack([image[r : r + size, c : c + size] for r, c in origins]) if len(origins) else (
        np.zeros((0, size, size, image.shape[2]), dtype=image.dtype)
    )
    return tiles, origins


def tile_image(
    image: np.ndarray, size: int, stride: int | None = None, filt: TileFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The tiles of ``image`` that pass ``filt`` (default thresholds 10 and 20) and their corners (N, 2)."""
    filt = filt or TileFilter()
    tiles, origins = cut_tiles(image, size, stride)
    if len(tiles) == 0:
        return tiles, origins
    keep = select_tiles(tiles, filt.min_std, filt.min_laplacian)
    return tiles[keep], origins[keep]
