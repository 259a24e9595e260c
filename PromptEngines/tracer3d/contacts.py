"""Where the trace touches another vessel (issue 15): the geometry.

Arteries run beside veins and cross them. Where two touch, the model's mask of the slice
joins them and the slice alone cannot tell them apart (no neck, no darker bridge). Two 3D
cues can, read off the masks (what the model says), the image only saying where a lumen is:

- Lumen continuity (`foreign_parts`): a part of a slice's mask beyond the previous slice's
  reach that lies over a lumen which, on the previous slice, ran outside the trace continues
  a vessel that was not the trace's one slice ago; so does a piece of the mask on none of
  the track's previous mask (`pieces_apart`) over such a lumen.
- Two tubes (`separate`, `passes_by`): traced on a little, the voxels from such a contact
  on are split between the trace and the other vessel by watershed on the 3D depth inside
  the mask (touching tubes meet through a shallow saddle; in 3D they have one). A branch
  leaves the place where it met the trace one way; a vessel that only touches it goes on
  both ways from there.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from ..data.regions import bounding_box, full_structure, inner_distance

LUMEN = 0.5             # click-normalised level: half way from surroundings (0) to vessel (1)
MIN_ORIGIN = 3          # pixels of a part over another lumen of the previous slice


def outside_lumen(image: np.ndarray, traced: np.ndarray) -> np.ndarray:
    """A slice's lumen (brighter than half way to the clicked vessel) neither traced nor
    touching the trace: where another vessel runs on that slice."""
    near = ndimage.binary_dilation(traced, full_structure(2))
    return (image > LUMEN) & ~near


def foreign_parts(kept: np.ndarray, reach: np.ndarray, other_lumen: np.ndarray) -> np.ndarray:
    """The parts of `kept` (a slice's mask) beyond `reach` (the previous slice's mask grown
    by the overlap margin) that lie over `other_lumen` of the previous slice by at least
    MIN_ORIGIN pixels: another vessel coming in."""
    beyond = kept & ~reach
    found = np.zeros(kept.shape, bool)
    if not beyond.any() or not other_lumen[beyond].any():
        return found
    parts, count = ndimage.label(beyond, full_structure(2))
    over = np.bincount(parts[other_lumen & beyond], minlength=count + 1)
    for part in np.flatnonzero(over[1:] >= MIN_ORIGIN) + 1:
        found |= parts == part
    return found


def pieces_apart(kept: np.ndarray, previous: np.ndarray, pieces: np.ndarray | None = None
                 ) -> np.ndarray:
    """The pieces of `kept` (a slice's mask) on none of `previous` (the track's mask on the
    slice before), taken only through the overlap margin. Over another vessel's lumen
    (`foreign_parts`), the track stepped sideways onto that vessel: on thick slices its own
    ended or moved, and the other lay within the margin. `pieces`: kept's pieces already
    labelled (full connectivity), as the tracker has them."""
    if pieces is None:
        pieces, _ = ndimage.label(kept, full_structure(2))
    return kept & ~np.isin(pieces, np.unique(pieces[kept & previous]))


def separate(held: np.ndarray, own: np.ndarray, foreign: np.ndarray, spacing) -> np.ndarray:
    """Split `held` (voxels traced from a contact on) between the trace (`own`: what it
    showed before, label 1) and each other vessel (`foreign`: labels 1.. where it came in,
    2.. in the result): watershed on the depth (mm) inside held | own."""
    domain = held | own
    depth = inner_distance(domain, spacing, np.float32)     # a judged box's largest array
    markers = np.where(own, 1, 0).astype(np.int32)
    markers[foreign > 0] = foreign[foreign > 0] + 1
    return watershed(-depth, markers, mask=domain)


def arms(region: np.ndarray, contact, spacing, radius_mm: float) -> int:
    """How many ways `region` (3D) leaves `contact` (a voxel): pieces outside a ball around
    the contact (twice the vessel's radius plus a voxel: where the two meet) that reach at
    least two radii farther."""
    spacing = np.asarray(spacing, float)
    ball = 2.0 * radius_mm + float(spacing.max())
    grid = np.ogrid[tuple(slice(0, n) for n in region.shape)]
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, contact, spacing)))
    pieces, count = ndimage.label(region & (distance > ball), full_structure(3))
    if count == 0:
        return 0
    farthest = ndimage.maximum(distance, pieces, index=np.arange(1, count + 1))
    return int((np.asarray(farthest) >= ball + 2.0 * radius_mm).sum())


def passes_by(region: np.ndarray, trace: np.ndarray, spacing, seen=None) -> bool:
    """`region` (another vessel's voxels, split off by `separate`) only touches `trace`: it
    goes on both ways from the voxel where they meet. A branch leaves from there one way.
    `seen`: the region with the image's lumen it runs on in outside the trace (a vessel the
    tracks followed one way only still shows both ways in the image)."""
    if not region.any() or not trace.any():
        return False
    # Where they meet: the region's voxel nearest the trace, looked for around the region
    # (they touch, so the nearest trace voxel is within a voxel or two of it).
    near = bounding_box(region, margin=2)
    if not trace[near].any():                 # joined only through the overlap margin
        near = tuple(slice(0, n) for n in trace.shape)
    to_trace = ndimage.distance_transform_edt(~trace[near], sampling=spacing)
    inside = region[near]
    contact = np.argwhere(inside)[int(np.argmin(to_trace[inside]))] + [b.start for b in near]
    seen = region if seen is None else seen
    box = bounding_box(seen, margin=1)
    seen = seen[box]
    contact = contact - [b.start for b in box]
    radius = float(inner_distance(seen, spacing).max())
    return arms(seen, contact, spacing, radius) >= 2
