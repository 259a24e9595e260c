"""Small region geometry shared by data generation, the simulated user, training and tracing."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def full_structure(ndim: int) -> np.ndarray:
    """Full connectivity (26 in 3D, 8 in 2D)."""
    return ndimage.generate_binary_structure(ndim, ndim)


def inner_distance(region: np.ndarray, spacing=None) -> np.ndarray:
    """Distance (mm) of each voxel to the region's outside, the image border counting as
    outside (pad first, so border voxels are not treated as deep)."""
    padded = np.pad(region, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)
    return distance[tuple(slice(1, -1) for _ in range(region.ndim))]


def deepest_point(region: np.ndarray, spacing=None) -> tuple[int, ...]:
    """The region's centre: the deepest voxel; among equally deep ones (a flat or elongated
    region), the one nearest their centroid."""
    depth = inner_distance(region, spacing)
    deepest = np.argwhere(depth >= depth.max() - 1e-6)
    scale = np.ones(region.ndim) if spacing is None else np.asarray(spacing, float)
    offsets = (deepest - deepest.mean(axis=0)) * scale
    return tuple(int(p) for p in deepest[int(np.argmin((offsets ** 2).sum(axis=1)))])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected piece (full connectivity); an empty mask stays empty."""
    labels, count = ndimage.label(mask, full_structure(mask.ndim))
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def window(image: np.ndarray, top_left, size: int, fill=0) -> np.ndarray:
    """The size x size window of a 2D array from `top_left` (row, column; may lie outside
    it), `fill` where the window leaves the array: a crop as training and the tracker see it."""
    out = np.full((size, size), fill, dtype=image.dtype)
    y0, x0 = top_left
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, image.shape[0]), min(x0 + size, image.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0:ye - y0, xs - x0:xe - x0] = image[ys:ye, xs:xe]
    return out
