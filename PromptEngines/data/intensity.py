"""Intensity statistics around a clicked voxel, in millimetres, shared by the engines.

The tracer normalises a volume by what the click says: the structure's level near the click
maps to 1 and the surroundings' median to 0. This makes one model work on CT (bright
contrast-filled lumen) and on dark-vessel images alike, without a modality-specific window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import PromptError

SEED_RADIUS_MM = 1.0        # intensity sample around a click
WINDOW_MM = 20.0            # half-width of the surroundings window
MIN_CONTRAST = 2.0          # in raw-noise standard deviations: below it, nothing stands out


def smoothed(image: np.ndarray, spacing_zyx) -> np.ndarray:
    """Light Gaussian smoothing, 0.7 of the finest voxel size, in millimetres."""
    sigma = 0.7 * min(spacing_zyx) / np.asarray(spacing_zyx, float)
    return ndimage.gaussian_filter(image.astype(np.float32), sigma)


def ball(centre, radius_mm: float, shape, spacing_zyx) -> tuple[tuple[slice, ...], np.ndarray]:
    """Region slices and a boolean ball of `radius_mm` around a voxel, clipped to the image."""
    reach = np.maximum(1, np.ceil(radius_mm / np.asarray(spacing_zyx))).astype(int)
    low = np.maximum(np.asarray(centre) - reach, 0)
    high = np.minimum(np.asarray(centre) + reach + 1, shape)
    grid = np.ogrid[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing_zyx))
    return tuple(slice(lo, hi) for lo, hi in zip(low, high)), distance2 <= radius_mm ** 2


def sample_balls(image, voxels, radius_mm, spacing_zyx) -> np.ndarray:
    samples = [image[region][inside] for region, inside in
               (ball(v, radius_mm, image.shape, spacing_zyx) for v in voxels)]
    return np.concatenate(samples) if samples else np.empty(0, np.float32)


def window(voxels, shape, spacing_zyx, half_width_mm: float = WINDOW_MM) -> tuple[slice, ...]:
    reach = np.ceil(half_width_mm / np.asarray(spacing_zyx)).astype(int)
    points = np.asarray(voxels)
    low = np.maximum(points.min(axis=0) - reach, 0)
    high = np.minimum(points.max(axis=0) + reach + 1, shape)
    return tuple(slice(lo, hi) for lo, hi in zip(low, high))


def noise_level(image, smooth, region) -> float:
    """Robust noise: MAD of the raw image minus its smoothed version, in the region."""
    residual = image[region].astype(np.float32) - smooth[region]
    mad = float(np.median(np.abs(residual - np.median(residual))))
    return max(1.4826 * mad, 1e-6 * (float(np.ptp(image)) or 1.0))


@dataclass(frozen=True)
class Levels:
    structure: float      # intensity of what was clicked
    surroundings: float   # median of the window around it
    noise: float

    @property
    def contrast(self) -> float:
        return abs(self.structure - self.surroundings) / self.noise

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """Structure -> 1, surroundings -> 0 (whatever the sign of the contrast)."""
        scale = self.structure - self.surroundings
        return ((image.astype(np.float32) - self.surroundings) / scale).astype(np.float32)


def levels_at(image, smooth, voxel, spacing_zyx) -> Levels:
    region = window([voxel], image.shape, spacing_zyx)
    structure = float(np.median(sample_balls(smooth, [voxel], SEED_RADIUS_MM, spacing_zyx)))
    return Levels(structure, float(np.median(smooth[region])), noise_level(image, smooth, region))


def require_contrast(levels: Levels, what: str = "vessel or structure") -> None:
    if levels.contrast < MIN_CONTRAST:
        raise PromptError(f"no {what} at the seed: its intensity ({levels.structure:.0f}) does "
                          f"not stand out from its surroundings ({levels.surroundings:.0f}, "
                          f"noise {levels.noise:.0f})")
