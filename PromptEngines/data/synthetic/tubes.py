"""Vessel trees as polylines with radii, grown at random and rasterised in 2D or 3D.

Coordinates are millimetres in the grid frame: index times spacing, in array axis order
((z, y, x) in 3D, (y, x) in 2D). Rasterising gives the signed depth of every voxel inside
the nearest tube (mm; > 0 inside), from which both the label and partial-volume intensity
follow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Branch:
    points: np.ndarray            # (n, ndim) mm, grid frame
    radii: np.ndarray             # (n,) mm
    parent: int | None = None
    role: str = "branch"          # trunk | branch | turnback
    children: list = field(default_factory=list)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, float)
    return vector / max(np.linalg.norm(vector), 1e-12)


def perpendicular(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to `direction` (any dimension >= 2)."""
    while True:
        candidate = rng.normal(size=direction.size)
        candidate -= candidate.dot(direction) * direction
        if np.linalg.norm(candidate) > 1e-3:
            return unit(candidate)


def turned(direction: np.ndarray, angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    angle = np.deg2rad(angle_deg)
    return unit(np.cos(angle) * direction + np.sin(angle) * perpendicular(direction, rng))


def grow_branch(start, direction, length, radius_start, radius_end, rng, extent,
                step=1.0, tortuosity=0.02, bend_to=None, bend_degrees=0.0) -> Branch:
    """A tortuous centreline from `start`; with `bend_to`, the direction swings by
    `bend_degrees` towards that vector over the branch (a vessel that turns back)."""
    direction = unit(direction)
    drift = np.zeros_like(direction)
    points = [np.asarray(start, float)]
    steps = max(2, int(length / step))
    extent = np.asarray(extent, float)
    bend_per_step = np.deg2rad(bend_degrees) / steps if bend_to is not None else 0.0
    for _ in range(steps):
        # Smoothly varying wander: a damped random velocity of the direction.
        drift = 0.8 * drift + tortuosity * rng.normal(size=direction.size)
        drift -= drift.dot(direction) * direction
        direction = unit(direction + drift * step)
        if bend_per_step:
            target = unit(np.asarray(bend_to, float))
            axis = unit(target - target.dot(direction) * direction) if abs(
                target.dot(direction)) < 0.999 else perpendicular(direction, rng)
            direction = unit(np.cos(bend_per_step) * direction + np.sin(bend_per_step) * axis)
        nxt = points[-1] + step * direction
        # Stay inside the grid: a vessel that reaches the edge stops there.
        if np.any(nxt < 0) or np.any(nxt > extent):
            break
        points.append(nxt)
    points = np.array(points)
    radii = np.linspace(radius_start, radius_end, len(points))
    return Branch(points, radii)


def point_at(branch: Branch, fraction: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Position, direction and radius at a fraction of the branch's length."""
    index = int(np.clip(round(fraction * (len(branch.points) - 1)), 1, len(branch.points) - 2))
    direction = unit(branch.points[index + 1] - branch.points[index - 1])
    return branch.points[index].copy(), direction, float(branch.radii[index])


def signed_depth(shape, spacing, branches, radius_scale=None, point_values=None):
    """max over tube segments of (radius - distance to the centreline), in mm.

    `radius_scale` maps branch index -> factor (too thin / too thick variants). With
    `point_values` (one array per branch, one value per centreline point) it returns
    (depth, values): each voxel gets the value interpolated on its deepest segment."""
    spacing = np.asarray(spacing, float)
    depth = np.full(shape, -np.inf, np.float32)
    values = None if point_values is None else np.zeros(shape, np.float32)
    for index, branch in enumerate(branches):
        scale = 1.0 if radius_scale is None else radius_scale.get(index, 1.0)
        p, r = branch.points, branch.radii * scale
        v = np.zeros(len(p)) if values is None else np.asarray(point_values[index], float)
        for a, b, ra, rb, va, vb in zip(p[:-1], p[1:], r[:-1], r[1:], v[:-1], v[1:]):
            _paint_segment(depth, spacing, a, b, ra, rb, values, va, vb)
    return depth if values is None else (depth, values)


def _paint_segment(depth, spacing, a, b, ra, rb, values=None, va=0.0, vb=0.0, margin=2.0):
    reach = max(ra, rb) + margin
    low = np.floor((np.minimum(a, b) - reach) / spacing).astype(int).clip(0)
    high = (np.ceil((np.maximum(a, b) + reach) / spacing).astype(int) + 1).clip(
        None, np.array(depth.shape))
    if np.any(high <= low):
        return
    axes = np.meshgrid(*[np.arange(lo, hi) * s for lo, hi, s in zip(low, high, spacing)],
                       indexing="ij")
    grid = np.stack(axes, axis=-1)
    ab = b - a
    t = np.clip(((grid - a) @ ab) / max(ab.dot(ab), 1e-12), 0.0, 1.0)
    nearest = a + t[..., None] * ab
    local = (ra + t * (rb - ra)) - np.linalg.norm(grid - nearest, axis=-1)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    if values is not None:
        deeper = local > depth[box]
        values[box][deeper] = (va + t * (vb - va))[deeper]
    np.maximum(depth[box], local.astype(np.float32), out=depth[box])


def occupancy(depth: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Partial-volume fraction of each voxel inside a tube (linear ramp one voxel wide)."""
    return np.clip(0.5 + depth / voxel_mm, 0.0, 1.0).astype(np.float32)


def smooth_field(shape, rng, sigma, amplitude=1.0) -> np.ndarray:
    """Low-frequency random field, zero mean, roughly unit peak times `amplitude`."""
    from scipy.ndimage import gaussian_filter

    field_ = gaussian_filter(rng.normal(size=shape), sigma)
    field_ /= max(np.abs(field_).max(), 1e-12)
    return (amplitude * field_).astype(np.float32)
