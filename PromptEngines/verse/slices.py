"""A stack's slices as VerSe sees them, and back: each slice scaled from its minimum to its
98th percentile onto [0, 1] (clipped above, as the reference's preprocessing) and resized to
the model's square; results resized back onto the slice's own grid (the volume's geometry is
never touched: slice k of the array is slice k of the result)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalised(slices: np.ndarray) -> np.ndarray:
    """(S, H, W) -> float32 in [0, 1], per slice min .. 98th percentile."""
    slices = np.asarray(slices, np.float32)
    low = slices.min(axis=(1, 2), keepdims=True)
    high = np.percentile(slices, 98, axis=(1, 2), keepdims=True).astype(np.float32)
    return ((np.minimum(slices, high) - low) / (high - low + 1e-4)).astype(np.float32)


def to_model(slices: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) normalised slices -> (S, 1, size, size)."""
    x = torch.from_numpy(np.ascontiguousarray(slices))[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > size or x.shape[-2] > size)


def to_slice_grid(maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(S, 1, size, size) logits or probabilities -> (S, H, W) on the slices' own grid."""
    return F.interpolate(maps, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]


def mask_to_model(mask: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) binary masks -> (S, 1, size, size) in [0, 1], as a previous result."""
    return to_model(np.asarray(mask, np.float32), size).clamp(0, 1)


def model_pixel(row: float, col: float, shape: tuple[int, int], size: int) -> tuple[int, int]:
    """A (row, col) of the slice's grid -> the nearest pixel of the model's square."""
    scaled = [(c + 0.5) * size / n - 0.5 for c, n in zip((row, col), shape)]
    return tuple(int(np.clip(round(c), 0, size - 1)) for c in scaled)
