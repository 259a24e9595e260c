"""One training case, whatever its source (synthetic, nnU-Net folder, recorded session)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelledCase:
    name: str
    image: np.ndarray            # (z, y, x) float32
    label: np.ndarray            # (z, y, x) uint8, the structure to learn (binary)
    spacing_zyx: tuple[float, float, float]
    real: bool = True            # real scans get scanner-variation augmentation
    click: tuple[int, int, int] | None = None   # where a user clicked first (index z, y, x)
    steps: list = field(default_factory=list)   # the recorded prompts, in index coordinates
