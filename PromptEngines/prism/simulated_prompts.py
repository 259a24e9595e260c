"""The prompts PRISM's iterative training and its benchmark give, from the error of the
previous prediction (numpy, cube voxels): clicks drawn uniformly from FN and FP (label 1 on
FN), scribbles along the skeleton of the error (broken into a random stretch), and the
ground truth's bounding box."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize


def error_clicks(truth: np.ndarray, predicted: np.ndarray, count: int, rng) -> list:
    """`count` clicks ((z, y, x), label) drawn uniformly from the error."""
    fn, fp = truth & ~predicted, ~truth & predicted
    error = np.argwhere(fn | fp)
    if len(error) == 0:
        return []
    chosen = error[rng.choice(len(error), size=min(count, len(error)), replace=False)]
    return [(tuple(int(c) for c in voxel), int(fn[tuple(voxel)])) for voxel in chosen]


def error_scribble(truth: np.ndarray, predicted: np.ndarray, rng, longest: int = 40) -> list:
    """A scribble on the largest error region (FN as positive, FP as negative): a stretch of
    its skeleton, as clicks in the order they lie along it."""
    fn, fp = truth & ~predicted, ~truth & predicted
    kind = 1 if fn.sum() >= fp.sum() else 0
    region = fn if kind else fp
    if region.sum() < 8:
        return []
    pieces, count = ndimage.label(region)
    largest = pieces == (np.argmax(np.bincount(pieces.ravel())[1:]) + 1)
    skeleton = np.argwhere(skeletonize(largest))
    if len(skeleton) == 0:
        skeleton = np.argwhere(largest)
    start = skeleton[rng.integers(len(skeleton))]
    order = np.argsort(np.linalg.norm(skeleton - start, axis=1))
    stretch = skeleton[order[:int(rng.integers(max(2, longest // 4), longest + 1))]]
    return [(tuple(int(c) for c in voxel), kind) for voxel in stretch]


def truth_box(truth: np.ndarray) -> list[int] | None:
    """[low z, y, x, high + 1 z, y, x] of the truth, as the reference gives it."""
    found = np.argwhere(truth)
    if len(found) == 0:
        return None
    return [*(int(v) for v in found.min(axis=0)), *(int(v) + 1 for v in found.max(axis=0))]
