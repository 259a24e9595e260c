"""The volume as tracer3d's model sees it: normalised at the click (vessel -> 1,
surroundings -> 0) and clipped, at inference and in training alike."""
from __future__ import annotations

import numpy as np

from ..data import intensity

NORMALISED_RANGE = (-3.0, 4.0)       # bounds calcium and bone after normalisation


def normalised_volume(image, spacing_zyx, seed_voxel, smooth=None) -> np.ndarray:
    """Click-conditioned normalisation (structure -> 1, surroundings -> 0), clipped.
    `smooth`: the image's light smoothing, if already computed."""
    smooth = intensity.smoothed(image, spacing_zyx) if smooth is None else smooth
    levels = intensity.levels_at(image, smooth, seed_voxel, spacing_zyx)
    intensity.require_contrast(levels, "vessel")
    return np.clip(levels.normalise(image), *NORMALISED_RANGE)
