"""The volume as tracer3d's model sees it: normalised at the click (vessel -> 1,
surroundings -> 0) and clipped, at inference and in training alike.

At inference it is computed only where the tracker reads it (`ClickNormalised`): a click on
a 512 x 512 x 800 scan costs what the traced vessel costs, never a whole-volume float copy.
"""
from __future__ import annotations

import numpy as np

from ..data import intensity

NORMALISED_RANGE = (-3.0, 4.0)       # bounds calcium and bone after normalisation


class ClickNormalised:
    """The click-normalised volume, computed where it is read (any numpy index): equal, bit
    for bit, to normalising the whole volume (the normalisation is voxel by voxel)."""

    def __init__(self, image: np.ndarray, levels: intensity.Levels):
        self.image, self.levels = image, levels
        self.shape, self.ndim, self.dtype = image.shape, image.ndim, np.dtype(np.float32)

    def __getitem__(self, index) -> np.ndarray:
        return np.clip(self.levels.normalise(self.image[index]), *NORMALISED_RANGE)

    def window(self, box: tuple[slice, ...]) -> "ClickNormalised":
        """The same view of a box of the image (nothing read yet)."""
        return ClickNormalised(self.image[box], self.levels)


def click_normalised(image, spacing_zyx, seed_voxel) -> ClickNormalised:
    """The volume normalised by the levels around the click (structure -> 1, surroundings
    -> 0); refuses a click on nothing that stands out."""
    levels = intensity.levels_at(image, seed_voxel, spacing_zyx)
    intensity.require_contrast(levels, "vessel")
    return ClickNormalised(image, levels)


def normalised_volume(image, spacing_zyx, seed_voxel) -> np.ndarray:
    """The whole click-normalised volume as an array (training crops, baselines)."""
    return click_normalised(image, spacing_zyx, seed_voxel)[...]
