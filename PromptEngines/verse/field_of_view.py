"""Rectangular fields of view, as cine MRI often has them (256 x 208): which rows or columns
a cut keeps, for the benchmark's held-out stacks and for training's augmentation (a sample
cut so and padded back to the square, centred, exactly as the engine pads such a slice)."""
from __future__ import annotations

import numpy as np

KEPT_SHARE = (0.7, 0.85)              # of the axis's length
HEART_MARGIN = 11                     # pixels the cut keeps beyond the heart


def kept_span(length: int, heart: np.ndarray, rng) -> tuple[int, int]:
    """(first, count) of the `length` rows (or columns) a cut keeps: 70-85 % of them, the
    heart (`heart`: the indices it covers) whole, not always in the middle."""
    keep = max(int(round(length * rng.uniform(*KEPT_SHARE))),
               int(heart[-1] - heart[0]) + HEART_MARGIN)
    keep = min(keep, length)
    first = int(rng.integers(max(0, heart[-1] + 1 - keep), min(heart[0], length - keep) + 1))
    return first, keep


def cut_and_padded(image: np.ndarray, truth: np.ndarray, heart: np.ndarray, rng):
    """A square sample as a rectangular field of view gives it to the model: one axis cut
    around the heart (`heart`: the slice's labelled pixels), the rest the minimum (0), the
    kept band centred. A slice without a heart is returned as it is."""
    axis = int(rng.integers(0, 2))
    covered = np.flatnonzero(heart.any(axis=1 - axis))
    if covered.size == 0:
        return image, truth
    length = image.shape[axis]
    first, keep = kept_span(length, covered, rng)
    at = (length - keep) // 2
    source, target = [slice(None)] * 2, [slice(None)] * 2
    source[axis], target[axis] = slice(first, first + keep), slice(at, at + keep)

    def moved(array):
        out = np.zeros_like(array)
        out[tuple(target)] = array[tuple(source)]
        return out
    return moved(image), moved(truth)
