"""Fundus photographs and X-ray angiograms as a correction model meets them: pictures where
the image alone does not say what the annotation is, deterministic by seed.

A clean picture (fundus.py) shows every annotated vessel and nothing else, so a model can
redraw the whole mask from the image and the user's prompts say nothing it did not know.
Real ones are ambiguous where the paper's automatic masks fail (68 mIoU):

- contrast that fades with the vessel's radius: thin distal vessels near the noise;
- blur: a vessel's width is uncertain by a pixel or two;
- vessel-like structures that are not the annotated tree: a fainter, wider background
  network (choroidal vessels; an angiogram's overlapping background vessels), a catheter
  (a smooth tube of constant width, as dark as the trunk), dark blobs (haemorrhages);
- uneven illumination and stronger noise.

The truth is the annotated tree only.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fundus import vessel_tree_2d
from .tubes import grow_branch, occupancy, signed_depth, smooth_field

CONTRAST = (0.22, 0.6)          # darkening of the thinnest and the widest annotated vessel
BACKGROUND_CONTRAST = (0.12, 0.25)
CATHETER_CHANCE = 0.5


def _darkening(shape, branches, contrast_of_radius) -> np.ndarray:
    """Each pixel's darkening by the tubes, its contrast set by the local radius."""
    values = [contrast_of_radius(b.radii) for b in branches]
    depth, contrast = signed_depth(shape, (1.0, 1.0), branches, point_values=values)
    return occupancy(depth, 1.0) * contrast


def _blobs(shape, rng, count: int) -> np.ndarray:
    yy, xx = np.indices(shape, dtype=np.float32)
    out = np.zeros(shape, np.float32)
    for _ in range(count):
        cy, cx = rng.uniform(0.15, 0.85, 2) * shape
        ry, rx = rng.uniform(3.0, 8.0, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        out = np.maximum(out, inside * rng.uniform(0.2, 0.4))
    return ndimage.gaussian_filter(out, 1.0)


def clinical_vessel_picture(seed: int, size: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 (size, size), truth bool): the annotated tree in an ambiguous picture."""
    rng = np.random.default_rng([seed, 5])
    shape = (size, size)
    tree = vessel_tree_2d(rng, size)
    truth = signed_depth(shape, (1.0, 1.0), tree) >= 0
    low, high = CONTRAST
    annotated = _darkening(shape, tree, lambda r: np.clip(low + (high - low) * (r - 1.2) / 3.3,
                                                          low, high))
    # Unannotated: a wider, fainter network, blurred more.
    background_tree = vessel_tree_2d(rng, size)
    faint = rng.uniform(*BACKGROUND_CONTRAST)
    others = ndimage.gaussian_filter(
        _darkening(shape, background_tree, lambda r: np.full(len(r), faint)), 1.5)
    if rng.random() < CATHETER_CHANCE:
        start = np.array([size - 2.0, size * rng.uniform(0.2, 0.8)])
        catheter = grow_branch(start, [-1.0, rng.normal(0, 0.3)], size * rng.uniform(0.4, 0.8),
                               2.2, 2.2, rng, np.array([size - 1.0, size - 1.0]),
                               tortuosity=0.01)
        others = np.maximum(others, _darkening(shape, [catheter],
                                               lambda r: np.full(len(r), high)))
    others = np.maximum(others, _blobs(shape, rng, int(rng.integers(2, 6))))
    yy, xx = np.indices(shape)
    radius = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    background = (0.55 + smooth_field(shape, rng, 10, 0.18)) * (1.0 - 0.3 * radius ** 2)
    picture = background * (1.0 - np.maximum(annotated, others))
    picture = ndimage.gaussian_filter(picture, rng.uniform(0.8, 1.3))
    picture = picture + rng.normal(0, rng.uniform(0.03, 0.06), shape)
    return picture.astype(np.float32), truth
