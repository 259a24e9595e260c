"""Small region geometry shared by data generation, the simulated user, training and tracing."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def full_structure(ndim: int) -> np.ndarray:
    """Full connectivity (26 in 3D, 8 in 2D)."""
    return ndimage.generate_binary_structure(ndim, ndim)


def inner_distance(region: np.ndarray, spacing=None, dtype=np.float64) -> np.ndarray:
    """Distance (mm) of each voxel to the region's outside, the image border counting as
    outside (pad first, so border voxels are not treated as deep). `dtype` float32: the
    same values (to float32), summed axis by axis from the feature transform at about 40 %
    less peak memory, for large boxes."""
    padded = np.pad(region, 1)
    inside = tuple(slice(1, -1) for _ in range(region.ndim))
    if np.dtype(dtype) == np.float64:
        return ndimage.distance_transform_edt(padded, sampling=spacing)[inside]
    nearest = ndimage.distance_transform_edt(padded, sampling=spacing, return_distances=False,
                                             return_indices=True)
    grid = np.ogrid[tuple(slice(0, n) for n in padded.shape)]
    scale = np.ones(region.ndim) if spacing is None else spacing
    distance = np.zeros(padded.shape, dtype)
    for axis, (index, size) in enumerate(zip(grid, scale)):
        step = (nearest[axis] - index).astype(dtype)
        step *= size
        distance += np.square(step, out=step)
    del nearest
    return np.sqrt(distance, out=distance)[inside]


def deepest_point(region: np.ndarray, spacing=None) -> tuple[int, ...]:
    """The region's centre: the deepest voxel; among equally deep ones (a flat or elongated
    region), the one nearest their centroid."""
    # Depth within the region's bounding box only: just outside the box is outside the
    # region too, and no farther than anything beyond it, so depths (and the answer) are
    # the same as over the whole array, at the cost of the box (a vessel's cross-section
    # in a crop: a tracer's every slice).
    box = bounding_box(region)
    corner = np.array([b.start for b in box])
    depth = inner_distance(region[box], spacing)
    deepest = np.argwhere(depth >= depth.max() - 1e-6) + corner
    scale = np.ones(region.ndim) if spacing is None else np.asarray(spacing, float)
    offsets = (deepest - deepest.mean(axis=0)) * scale
    return tuple(int(p) for p in deepest[int(np.argmin((offsets ** 2).sum(axis=1)))])


def bounding_box(region: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding the region's voxels, grown by `margin` on each
    side within the array; the whole array for an empty region."""
    box = []
    for axis, size in enumerate(region.shape):
        others = tuple(a for a in range(region.ndim) if a != axis)
        where = np.flatnonzero(region.any(axis=others)) if region.ndim > 1 \
            else np.flatnonzero(region)
        box.append(slice(max(where[0] - margin, 0), min(where[-1] + 1 + margin, size))
                   if where.size else slice(0, size))
    return tuple(box)


def slice_pieces(mask: np.ndarray, box: tuple[slice, ...]) -> list[tuple]:
    """A 3D mask cut out at `box` of a volume, slice by slice where it holds anything: (z,
    rows, cols, piece) in the volume's coordinates, each piece cropped to its bounding box
    (what a tracer yields per slice)."""
    out = []
    for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        rows, cols = bounding_box(mask[z])
        out.append((int(z) + box[0].start,
                    slice(rows.start + box[1].start, rows.stop + box[1].start),
                    slice(cols.start + box[2].start, cols.stop + box[2].start),
                    mask[z, rows, cols].copy()))
    return out


def pieces_in_box(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[slice, ...]]:
    """The mask's connected pieces (full connectivity) labelled within its bounding box: the
    same pieces, numbered in the same order, at the box's cost. Returns the labels (box-sized),
    their count and the box."""
    box = bounding_box(mask)
    pieces, count = ndimage.label(mask[box], full_structure(mask.ndim))
    return pieces, count, box


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


def dilated_within(mask: np.ndarray, box: tuple[slice, ...], iterations: int) -> np.ndarray:
    """`mask` dilated `iterations` times (full connectivity) on `box` only: the same values
    there as dilating the whole mask (each looks `iterations` voxels away, so the box grown
    by that much is all it reads), at the cost of the box."""
    outer = tuple(slice(max(b.start - iterations, 0), min(b.stop + iterations, size))
                  for b, size in zip(box, mask.shape))
    grown = ndimage.binary_dilation(mask[outer], full_structure(mask.ndim),
                                    iterations=iterations)
    return grown[tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))]


def within_mm(shape, centre, spacing, half_mm: float) -> np.ndarray:
    """The voxels within `half_mm` of `centre` along every axis (a box `2 half_mm` across,
    in mm whatever the spacing): e.g. the part of a vessel tree one segments as a segment."""
    axes = [np.abs(np.arange(n) - c) * s <= half_mm for n, c, s in zip(shape, centre, spacing)]
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]
