"""What makes a CT angiogram hard to segment by thresholding, for the synthetic vessel volumes.

- Contrast falls along the tree (bolus dilution, partial volume of small vessels): distal
  branches are much dimmer than the trunk where the user clicks.
- Bone touches the vessel: a vertebral body or rib with a bright cortex and a marrow whose
  intensity overlaps contrast-filled lumen, in contact with the vessel wall.
- Calcified plaque sits on the vessel wall, outside the lumen.
- Noise is higher (thin-slice, low-dose protocols), so distal branches have a contrast-to-noise
  ratio of about three.
Intensities are Hounsfield units; geometry in millimetres in the grid frame (see tubes.py).
"""
from __future__ import annotations

import numpy as np

from .tubes import Branch, occupancy, perpendicular, point_at, smooth_field

TISSUE_HU = 40.0
CORTEX_HU, CORTEX_MM = 800.0, 1.2
MARROW_HU = 260.0           # cancellous bone: inside the lumen's intensity range
PLAQUE_HU = 900.0
# The share of the trunk's contrast over tissue lost at the tree's farthest point, drawn in
# this range (the volumes of every table so far).
CONTRAST_FALL = (0.45, 0.6)


def path_distances(branches: list[Branch]) -> list[np.ndarray]:
    """Arc length (mm) from the root of the tree to every centreline point."""
    distances: list[np.ndarray] = []
    for branch in branches:
        steps = np.linalg.norm(np.diff(branch.points, axis=0), axis=1)
        start = 0.0
        if branch.parent is not None:
            parent = branches[branch.parent]
            nearest = np.argmin(np.linalg.norm(parent.points - branch.points[0], axis=1))
            start = float(distances[branch.parent][nearest])
        distances.append(start + np.concatenate([[0.0], np.cumsum(steps)]))
    return distances


def lumen_along_tree(branches, rng, trunk_hu: float,
                     fall: tuple = CONTRAST_FALL) -> list[np.ndarray]:
    """Lumen HU per centreline point: `trunk_hu` at the root, falling linearly with path
    distance; at the farthest point the share `fall` (drawn in that range; 0.45-0.6: 40-55 %
    of the trunk's contrast over tissue left) is lost."""
    distances = path_distances(branches)
    farthest = max(float(d.max()) for d in distances)
    loss = rng.uniform(*fall)
    return [TISSUE_HU + (trunk_hu - TISSUE_HU) * (1.0 - loss * d / farthest) for d in distances]


def ellipsoid_depth(grid_mm, centre, axes, semi_axes) -> np.ndarray:
    """Approximate signed depth (mm, > 0 inside) in an ellipsoid: (1 - rho) * smallest axis."""
    local = (grid_mm - centre) @ np.asarray(axes).T / np.asarray(semi_axes)
    rho = np.linalg.norm(local, axis=-1)
    return ((1.0 - rho) * min(semi_axes)).astype(np.float32)


def grid_mm(shape, spacing) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)],
                                indexing="ij"), axis=-1)


def add_touching_bone(image, rng, spacing, trunk: Branch, grid) -> np.ndarray:
    """A bone beside the trunk's distal half whose cortex touches the vessel wall."""
    position, direction, radius = point_at(trunk, rng.uniform(0.55, 0.75))
    side = perpendicular(direction, rng)
    third = np.cross(direction, side)
    along, across = rng.uniform(10.0, 16.0), rng.uniform(6.0, 9.0)
    centre = position + side * (radius + across + rng.uniform(0.0, 0.4))
    depth = ellipsoid_depth(grid, centre, [direction, side, third], [along, across, across])
    return paint_bone(image, rng, spacing, depth)


def paint_bone(image, rng, spacing, depth) -> np.ndarray:
    """A bone's cortex and its lumen-bright marrow, from its signed depth (mm, > 0 inside)."""
    voxel_mm = float(np.min(spacing))
    bone = occupancy(depth, voxel_mm)
    marrow = occupancy(depth - CORTEX_MM, voxel_mm)
    marrow_hu = MARROW_HU + smooth_field(image.shape, rng, sigma=2, amplitude=50.0)
    image = image + bone * (CORTEX_HU - image)
    return image + marrow * (marrow_hu - image)


def add_wall_plaques(image, rng, spacing, branch: Branch, grid, count: int) -> np.ndarray:
    """Calcified plaques on the outside of the vessel wall (not lumen, so not in the label)."""
    for _ in range(count):
        position, direction, radius = point_at(branch, rng.uniform(0.3, 0.9))
        size = rng.uniform(0.8, 1.4)
        centre = position + perpendicular(direction, rng) * (radius + size)
        depth = size - np.linalg.norm(grid - centre, axis=-1)
        image = image + occupancy(depth, float(np.min(spacing))) * (PLAQUE_HU - image)
    return image


def vein_hu(rng, trunk_hu: float) -> float:
    """An unconnected vessel (vein in arterial phase): less contrast than the artery."""
    return TISSUE_HU + (trunk_hu - TISSUE_HU) * rng.uniform(0.55, 0.9)
