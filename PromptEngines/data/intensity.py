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
GAUSSIAN_TRUNCATE = 4.0     # scipy's default: the kernel reaches 4 sigma


def smoothed(image: np.ndarray, spacing_zyx, region=None) -> np.ndarray:
    """Light Gaussian smoothing, 0.7 of the finest voxel size, in millimetres: of the whole
    image, or only of `region` (slices). A region is filtered together with the filter's reach
    around it, so its values equal the whole image's smoothing there, bit for bit, at the cost
    of the region alone."""
    sigma = 0.7 * min(spacing_zyx) / np.asarray(spacing_zyx, float)
    if region is None:
        return ndimage.gaussian_filter(image.astype(np.float32), sigma)
    reach = [int(GAUSSIAN_TRUNCATE * s + 0.5) for s in sigma]      # scipy's kernel radius
    grown = tuple(slice(max(r.start - k, 0), min(r.stop + k, n))
                  for r, k, n in zip(region, reach, image.shape))
    smooth = ndimage.gaussian_filter(image[grown].astype(np.float32), sigma,
                                     truncate=GAUSSIAN_TRUNCATE)
    return smooth[tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(region, grown))]


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


def noise_level(image, smooth) -> float:
    """Robust noise: MAD of the raw image minus its smoothed version (both of one region),
    floored at a millionth of the region's range (noise-free images)."""
    residual = image.astype(np.float32) - smooth
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


def levels_at(image, voxel, spacing_zyx) -> Levels:
    """The levels the click says, from its neighbourhood only (the window around it)."""
    region = window([voxel], image.shape, spacing_zyx)
    smooth = smoothed(image, spacing_zyx, region)
    local = tuple(int(v) - r.start for v, r in zip(voxel, region))
    structure = float(np.median(sample_balls(smooth, [local], SEED_RADIUS_MM, spacing_zyx)))
    return Levels(structure, float(np.median(smooth)), noise_level(image[region], smooth))


def brightest_near(image, voxel, spacing_zyx, radius_mm: float) -> tuple[int, int, int]:
    """For a click that misses a bright (contrast-filled) vessel: in the click's slice, the
    smoothed image's brightest voxel within `radius_mm`, then uphill (8 neighbours) to the
    top of the structure it is on, so the answer is the vessel's middle, not its edge."""
    z, y, x = (int(v) for v in voxel)
    spacing = np.asarray(spacing_zyx, float)
    reach = np.ceil((radius_mm + 4.0) / spacing[1:]).astype(int)   # room to climb
    region = (slice(z, z + 1), slice(max(y - reach[0], 0), min(y + reach[0] + 1, image.shape[1])),
              slice(max(x - reach[1], 0), min(x + reach[1] + 1, image.shape[2])))
    smooth = smoothed(image, spacing_zyx, region)[0]
    ys, xs = np.ogrid[region[1], region[2]]
    inside = ((ys - y) * spacing[1]) ** 2 + ((xs - x) * spacing[2]) ** 2 <= radius_mm ** 2
    at = np.unravel_index(int(np.argmax(np.where(inside, smooth, -np.inf))), smooth.shape)
    while True:                                # each step strictly brighter: it ends
        rows = slice(max(at[0] - 1, 0), at[0] + 2)
        cols = slice(max(at[1] - 1, 0), at[1] + 2)
        step = np.unravel_index(int(np.argmax(smooth[rows, cols])), smooth[rows, cols].shape)
        best = (rows.start + step[0], cols.start + step[1])
        if smooth[best] <= smooth[at]:
            return z, int(at[0] + region[1].start), int(at[1] + region[2].start)
        at = best


def require_contrast(levels: Levels, what: str = "vessel or structure") -> None:
    if levels.contrast < MIN_CONTRAST:
        raise PromptError(f"no {what} at the seed: its intensity ({levels.structure:.0f}) does "
                          f"not stand out from its surroundings ({levels.surroundings:.0f}, "
                          f"noise {levels.noise:.0f})")
