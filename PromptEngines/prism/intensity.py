"""Intensity windows per modality: the cube's voxels are clipped to a window and z-scored, as
the paper does (its four datasets with their fixed statistics), or with the cube's own
statistics (our presets: CT soft tissue, CT angiography, MR by percentiles)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PromptError


@dataclass(frozen=True)
class Window:
    low: float | None            # None: the cube's 0.5th / 99.5th percentiles (MR)
    high: float | None
    mean: float | None = None    # None: the clipped cube's own mean and deviation
    std: float | None = None

    def apply(self, cube: np.ndarray) -> np.ndarray:
        if self.low is None:
            low, high = np.percentile(cube, (0.5, 99.5))
        else:
            low, high = self.low, self.high
        clipped = np.clip(cube, low, high)
        mean = clipped.mean() if self.mean is None else self.mean
        std = clipped.std() if self.std is None else self.std
        return ((clipped - mean) / max(float(std), 1e-6)).astype(np.float32)


WINDOWS = {                     # the first is the default
    "CT soft tissue": Window(-160.0, 240.0),
    "CT angiography": Window(-200.0, 800.0),
    "MR": Window(None, None),
    # The paper's datasets (MedICL-VU/PRISM's dataloader): window and fixed statistics.
    "paper colon": Window(-57.0, 175.0, 65.175035, 32.651197),
    "paper pancreas": Window(-39.0, 204.0, 68.45214, 63.422806),
    "paper liver": Window(-48.0, 163.0, 60.057533, 40.198017),
    "paper kidney": Window(-54.0, 247.0, 59.53867, 55.457336),
}
DEFAULT_WINDOW = "CT soft tissue"


def window(name: str) -> Window:
    if name not in WINDOWS:
        raise PromptError(f"unknown intensity window {name!r}; known: {', '.join(WINDOWS)}")
    return WINDOWS[name]
