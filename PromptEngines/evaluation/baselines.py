"""Non-learned one-click baselines for vessel tracing (the floor a learned tracer must beat).

- threshold + connected component: the click-normalised volume above a threshold tuned on
  training volumes, the piece holding the click (26-connectivity);
- regiongrow: our Slicer-style region growing engine from the same click.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure
from ..prompts import Point
from ..registry import get_engine
from . import metrics


def threshold_component(normalised: np.ndarray, seed_voxel, threshold: float) -> np.ndarray:
    above = normalised > threshold
    pieces, _ = ndimage.label(above, full_structure(3))
    label = pieces[tuple(seed_voxel)]
    return pieces == label if label else np.zeros(above.shape, bool)


def tune_threshold(cases, candidates=np.linspace(0.2, 0.8, 13)) -> tuple[float, float]:
    """The threshold with the best mean Dice over (normalised volume, seed, truth) cases."""
    scores = [np.mean([metrics.dice(threshold_component(v, s, t), truth) for v, s, truth in cases])
              for t in candidates]
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def regiongrow_mask(case) -> np.ndarray:
    engine = get_engine("regiongrow")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    return engine.run(Point(case.seed_index)).astype(bool)
