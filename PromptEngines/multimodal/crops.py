"""What a correction step sees: a square crop of one slice around its point, normalised the
same way in training and in the engine, and the current mask as SAM's dense mask prompt."""
from __future__ import annotations

import numpy as np

from ..data.regions import window

MASK_LOGIT = 4.0              # the current mask as logits: inside +4, outside -4


def crop_origin(point_yx, size: int, shape) -> tuple[int, int]:
    """Top-left of the size x size crop centred on the point, moved inside the slice where
    the slice is larger than the crop (a point near the border is off-centre, not padded)."""
    origin = []
    for p, n in zip(point_yx, shape):
        start = int(round(p)) - size // 2
        origin.append(min(max(start, 0), n - size) if n >= size else start)
    return tuple(origin)


def cropped(image2d: np.ndarray, origin, size: int, *masks):
    """The crop at `origin` as a step sees it: the normalised image, which of its pixels lie
    in the slice, and the crops of `masks` (bool)."""
    valid = window(np.ones(image2d.shape, bool), origin, size, False)
    image = normalised(window(image2d, origin, size), valid)
    return image, valid, [window(np.asarray(m) > 0, origin, size, False) for m in masks]


def normalised(crop: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The crop's intensities mapped by its own 0.5th-99.5th percentiles to 0..1 (clipped):
    fundus photographs, X-ray angiograms and CT slices alike, without a modality window.
    `valid`: the pixels inside the image (padding is 0 after mapping)."""
    values = crop[valid] if valid is not None else crop.ravel()
    low, high = (np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0))
    scale = np.float32(1.0 / max(float(high - low), 1e-6))
    out = np.clip((crop.astype(np.float32) - np.float32(low)) * scale, 0.0, 1.0)
    if valid is not None:
        out[~valid] = 0.0
    return out


def mask_prompt(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, MASK_LOGIT, -MASK_LOGIT).astype(np.float32)
