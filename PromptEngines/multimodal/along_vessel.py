"""How a command made on one slice of a 3D volume acts on the vessel in 3D.

The model decides on the clicked slice (its 256 x 256 crop); these functions carry the
decision along the vessel:

- "make thinner" / "make thicker": the same step on every slice within ALONG_MM of the click
  that the clicked vessel crosses, with the point moved onto the vessel on that slice; its
  changes are kept where the vessel's centreline is within ALONG_MM of the click's place on
  it, across the vessel's whole width there (along_the_axis: a wide vessel's far wall and
  the rim of one running in the slice's plane count by where they are along the vessel, not
  by their straight distance from the click).
- "remove": what the model removed on the clicked slice (or, where it keeps most of it, the
  slice's piece of the mask the user pointed at, within POINTED_MM) seeds the 3D piece to
  delete: the mask is eroded by about a bridge's width (BRIDGE_MM), its eroded pieces that
  the seeds do not touch are the rest (grown back to their full width within the mask), and
  the connected parts of what remains that hold a seed are deleted. A leak into a neighbouring vein joined
  by a thin bridge goes whole, bridge included; a thin false branch goes back to its parent.
- "make a connection": the two 3D pieces of the mask nearest the click are joined by a tube
  from the middle of each one's end, as wide as they are there, added across the gap only
  (not as a coat on the pieces it joins).
- "extend" is handed to tracer3d by the engine (engine.py); of what it traces beyond the
  mask, the largest piece that starts within EXTEND_MM of the click is added.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure
from ..evaluation.metrics import skeleton

ALONG_MM = 5.0          # reach of thinner/thicker along the vessel
BRIDGE_MM = 1.5         # depth below which the mask is a bridge or a thin branch
EXTEND_MM = 3.0         # how near the click a traced continuation must start
POINTED_MM = 2.0        # a mask piece this near the click of a "remove" is the one meant
END_MM = 5.0            # how far into a piece its end's width and middle are looked for


def nearby_slices(z: int, depth: int, spacing_z: float, reach_mm: float = ALONG_MM):
    """Slices within reach of slice z, nearest first (the clicked slice itself first)."""
    reach = int(np.floor(reach_mm / spacing_z + 1e-9))
    others = sorted(range(max(z - reach, 0), min(z + reach, depth - 1) + 1),
                    key=lambda s: (abs(s - z), s))
    return others


def disc(shape, centre_yx, radius_mm: float, spacing_yx) -> np.ndarray:
    """Pixels of a slice within radius_mm of a point."""
    yy, xx = np.indices(shape, dtype=float)
    return np.hypot((yy - centre_yx[0]) * spacing_yx[0],
                    (xx - centre_yx[1]) * spacing_yx[1]) <= radius_mm


def piece_nearest(region: np.ndarray, point_yx, spacing_yx=(1.0, 1.0),
                  within_mm: float | None = None) -> np.ndarray | None:
    """The 2D piece of `region` holding the point, or the nearest one (None: empty, or
    none within `within_mm` of the point)."""
    pieces, count = ndimage.label(region, full_structure(2))
    if count == 0:
        return None
    pixels = np.argwhere(pieces > 0)
    distances = np.linalg.norm((pixels - np.asarray(point_yx)) * np.asarray(spacing_yx), axis=1)
    nearest = int(np.argmin(distances))
    if within_mm is not None and distances[nearest] > within_mm:
        return None
    return pieces == pieces[tuple(pixels[nearest])]


def vessel_point_on(component: np.ndarray, z: int, near_yx):
    """The clicked vessel's pixel on slice z nearest `near_yx` (None if it does not cross z)."""
    on_slice = component[z]
    if not on_slice.any():
        return None
    pixels = np.argwhere(on_slice)
    nearest = pixels[np.argmin(((pixels - np.asarray(near_yx)) ** 2).sum(1))]
    return tuple(float(p) for p in nearest)


def along_the_axis(component: np.ndarray, click, spacing, radius_mm: float,
                   reach_mm: float = ALONG_MM) -> np.ndarray:
    """Voxels within radius_mm of the clicked vessel's centreline where that centreline is
    within reach_mm of its point nearest the click (no centreline near the click: a ball of
    reach_mm around it). Worked out in a box around the click: the box's cost, not the
    scan's."""
    spacing = np.asarray(spacing, float)
    click = np.asarray(click, float)
    half = np.ceil((reach_mm + radius_mm) / spacing).astype(int) + 1
    centre = np.round(click).astype(int)
    box = tuple(slice(max(c - h, 0), min(c + h + 1, n))
                for c, h, n in zip(centre, half, component.shape))
    origin = np.array([b.start for b in box])
    centreline = skeleton(component[box])
    if centreline.any():
        on_line = np.argwhere(centreline)
        at_click = on_line[np.argmin(np.linalg.norm((on_line + origin - click) * spacing,
                                                    axis=1))]
        off_line, nearest = ndimage.distance_transform_edt(~centreline, sampling=spacing,
                                                           return_indices=True)
        along = _distance_mm(nearest, at_click, spacing)
        near = (along <= reach_mm) & (off_line <= radius_mm)
    else:
        voxels = np.indices(component[box].shape, dtype=float) + origin[:, None, None, None]
        near = _distance_mm(voxels, click, spacing) <= reach_mm
    inside = np.zeros(component.shape, bool)
    inside[box] = near
    return inside


def _distance_mm(coordinates, point, spacing) -> np.ndarray:
    """Each voxel's distance in mm to `point`, the voxels given by their index along each
    axis (`coordinates[axis]`, an array per axis)."""
    return np.sqrt(sum(((coordinates[axis] - point[axis]) * spacing[axis]) ** 2
                       for axis in range(len(spacing))))


def clicked_component(mask: np.ndarray, click, spacing) -> np.ndarray:
    """The 3D piece of the mask the click is on, or the nearest one (mm)."""
    pieces, count = ndimage.label(mask > 0, full_structure(3))
    if count == 0:
        return np.zeros(mask.shape, bool)
    label = pieces[tuple(int(round(c)) for c in click)]
    if label == 0:
        distances, nearest = ndimage.distance_transform_edt(pieces == 0, sampling=spacing,
                                                            return_indices=True)
        label = pieces[tuple(n[tuple(int(round(c)) for c in click)] for n in nearest)]
    return pieces == label


def removed_piece(mask: np.ndarray, seeds: np.ndarray, spacing) -> np.ndarray:
    """The 3D part of `mask` that `seeds` (voxels the model removed on the clicked slice)
    belong to, cut from the rest where it joins it by a thin bridge (module docstring);
    in millimetres, so thick slices erode no more than thin ones."""
    mask, structure = mask > 0, full_structure(3)
    eroded = ndimage.distance_transform_edt(mask, sampling=spacing) > BRIDGE_MM
    pieces, _ = ndimage.label(eroded, structure)
    seeded = np.unique(pieces[seeds & eroded])
    rest_core = eroded & ~np.isin(pieces, seeded[seeded > 0])
    # Grown back by the erosion and one voxel more: an opening leaves a round vessel's
    # corner voxels out, and they must stay with it.
    rest = np.zeros(mask.shape, bool)
    if rest_core.any():
        reach = ndimage.distance_transform_edt(~rest_core, sampling=spacing)
        rest = (reach <= BRIDGE_MM + max(spacing)) & mask
    components, _ = ndimage.label(mask, structure)
    clicked = np.unique(components[seeds & mask])
    tree = np.isin(components, clicked[clicked > 0])
    if not (rest & tree).any():
        # No narrow join: a piece on its own (a false positive) goes whole; on the main
        # tree's own trunk only the clicked slice's removal is made.
        largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
        return seeds & mask if largest in clicked else tree
    removable, _ = ndimage.label(mask & ~rest, structure)
    hit = np.unique(removable[seeds & (removable > 0)])
    return np.isin(removable, hit[hit > 0]) | (seeds & mask)


def bridge(mask: np.ndarray, click, spacing) -> np.ndarray | None:
    """A tube joining the two 3D pieces of the mask nearest the click (None: fewer than two
    pieces). Its radius is the pieces' mean depth at the voxels it joins."""
    pieces, count = ndimage.label(mask > 0, full_structure(3))
    if count < 2:
        return None
    click_mm = np.asarray(click, float) * spacing
    ends = []
    for label in range(1, count + 1):
        voxels = np.argwhere(pieces == label)
        distances = np.linalg.norm(voxels * spacing - click_mm, axis=1)
        ends.append((distances.min(), label, voxels[np.argmin(distances)]))
    ends.sort(key=lambda e: e[0])
    (_, first, a), (_, second, b) = ends[:2]
    # The closest pair of voxels between the two pieces near the click.
    a = _closest(np.argwhere(pieces == first), b, spacing)
    b = _closest(np.argwhere(pieces == second), a, spacing)
    depth = ndimage.distance_transform_edt(mask > 0, sampling=spacing)
    # From the middle of each piece's end, as wide as the piece is there.
    (centre_a, radius_a), (centre_b, radius_b) = (
        _end_centre(pieces == first, depth, a, spacing),
        _end_centre(pieces == second, depth, b, spacing))
    radius = max((radius_a + radius_b) / 2, min(spacing))
    # Only across the gap (rounded by the radius at each side): the tube's stretches inside
    # the two pieces' own span would only coat them, a voxel wider than they are.
    return _tube(mask.shape, centre_a, centre_b, radius, spacing, across=(a, b))


def _end_centre(piece, depth, end, spacing, reach_mm: float = END_MM):
    """The deepest voxel of the piece within reach of its end voxel, and its depth (mm)."""
    voxels = np.argwhere(piece)
    near = voxels[np.linalg.norm((voxels - end) * spacing, axis=1) <= reach_mm]
    depths = depth[tuple(near.T)]
    deepest = near[depths >= depths.max() - 1e-6]
    centre = deepest[np.argmin(np.linalg.norm((deepest - end) * spacing, axis=1))]
    return centre, float(depth[tuple(centre)])


def _closest(voxels: np.ndarray, target, spacing) -> np.ndarray:
    return voxels[np.argmin(np.linalg.norm((voxels - target) * spacing, axis=1))]


def _tube(shape, a, b, radius_mm: float, spacing, across=None) -> np.ndarray:
    """Voxels closer than radius_mm to the segment a-b (voxel indices): with a piece's depth
    (distance to its first voxel outside) as the radius, the largest tube that fits it.
    `across` (two voxels): only the part of the tube between them along its axis, and
    radius_mm beyond each."""
    spacing = np.asarray(spacing, float)
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    low = np.maximum(np.minimum(a, b) - reach, 0)
    high = np.minimum(np.maximum(a, b) + reach + 1, shape)
    grid = np.stack(np.meshgrid(*[np.arange(l, h) for l, h in zip(low, high)], indexing="ij"),
                    -1) * spacing
    start, end = np.asarray(a) * spacing, np.asarray(b) * spacing
    along = end - start
    length2 = max(along @ along, 1e-9)
    position = ((grid - start) @ along) / length2
    t = np.clip(position, 0, 1)
    inside = np.linalg.norm(grid - (start + t[..., None] * along), axis=-1) < radius_mm
    if across is not None:
        ends = [((np.asarray(v) * spacing - start) @ along) / length2 for v in across]
        margin = radius_mm / np.sqrt(length2)
        inside &= (position >= min(ends) - margin) & (position <= max(ends) + margin)
    out = np.zeros(shape, bool)
    out[tuple(slice(l, h) for l, h in zip(low, high))] = inside
    return out


def continuation(new: np.ndarray, click, spacing) -> np.ndarray | None:
    """The largest piece of `new` (traced, not yet in the mask) within EXTEND_MM of the
    click: the vessel continuing from where the user pointed (None: nothing there)."""
    pieces, count = ndimage.label(new, full_structure(3))
    if count == 0:
        return None
    reach = np.ceil(EXTEND_MM / np.asarray(spacing)).astype(int)
    near = tuple(slice(max(int(round(c)) - r, 0), int(round(c)) + r + 1)
                 for c, r in zip(click, reach))
    grid = np.stack(np.indices(pieces[near].shape), -1) + [s.start for s in near]
    within = np.linalg.norm((grid - np.asarray(click)) * spacing, axis=-1) <= EXTEND_MM
    candidates = np.unique(pieces[near][within])
    candidates = candidates[candidates > 0]
    if candidates.size == 0:
        return None
    sizes = ndimage.sum(new, pieces, candidates)
    return pieces == candidates[int(np.argmax(sizes))]
