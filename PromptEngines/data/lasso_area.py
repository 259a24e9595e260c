"""A lasso's area: the voxels inside a closed curve drawn on one slice plane, in any
orientation (axial, coronal, sagittal or an oblique reformat), in voxel index space."""
from __future__ import annotations

import numpy as np
from skimage.measure import points_in_poly

from ..errors import PromptError


def lasso_area(points_zyx, shape) -> np.ndarray:
    """Boolean mask (`shape`) of the voxels within half a voxel of the curve's plane and
    inside the curve there. The plane is the one the points lie in (a slice view's plane);
    a curve whose points lie on a line encloses nothing and is refused."""
    points = np.asarray(points_zyx, float)
    centre = points.mean(axis=0)
    _, spread, axes = np.linalg.svd(points - centre)
    if len(points) < 3 or spread[1] <= 1e-6 * max(spread[0], 1.0):
        raise PromptError("the lasso encloses no area: its points lie on a line")
    in_plane, normal = axes[:2], axes[2]
    outline = (points - centre) @ in_plane.T
    # A voxel is on the plane when the plane passes through its cube: the cube's half
    # extent along the normal is half the sum of the normal's components.
    half = 0.5 * np.abs(normal).sum()
    low = np.maximum(np.floor(points.min(axis=0) - half).astype(int), 0)
    high = np.minimum(np.ceil(points.max(axis=0) + half).astype(int) + 1, shape)
    area = np.zeros(shape, bool)
    if np.any(high <= low):
        return area
    # Slab by slab along the axis the normal is nearest: memory of one slab, not the box.
    axis = int(np.argmax(np.abs(normal)))
    others = [a for a in range(3) if a != axis]
    grid = np.stack(np.meshgrid(*(np.arange(low[a], high[a]) for a in others), indexing="ij"),
                    axis=-1).reshape(-1, 2).astype(float)
    for k in range(low[axis], high[axis]):
        voxels = np.empty((len(grid), 3))
        voxels[:, axis] = k
        voxels[:, others] = grid
        offset = voxels - centre
        near = np.abs(offset @ normal) <= half
        if not near.any():
            continue
        inside = np.zeros(len(grid), bool)
        inside[near] = points_in_poly(offset[near] @ in_plane.T, outline)
        index = [slice(None)] * 3
        index[axis] = k
        index[others[0]] = slice(low[others[0]], high[others[0]])
        index[others[1]] = slice(low[others[1]], high[others[1]])
        area[tuple(index)] = inside.reshape(high[others[0]] - low[others[0]],
                                            high[others[1]] - low[others[1]])
    return area
