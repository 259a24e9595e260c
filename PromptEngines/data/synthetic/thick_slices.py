"""The same synthetic case as a thick-slice CT: `resliced(case, slice_mm)`.

A thick-slice reconstruction averages the thin slices over each slab, so every new slice is
the mean of the old image over [z - slice_mm / 2, z + slice_mm / 2] (old slices weighted by
their overlap with the slab; new slice k at k * slice_mm from the first old slice, so the
volume keeps its origin, in-plane grid and physical extent). Masks are resliced the same way
and kept where the slab is at least half inside: `label` where its fraction >= 0.5, other
vessels where theirs is >= 0.5 and not already the label (disjoint, as before). The click
moves to the new slice nearest its old position (to the nearest label voxel in that slice
if it fell off the label). Anatomy, contrast and noise are the thin case's, not new draws.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..volume import Volume


def slab_weights(count: int, spacing: float, slice_mm: float) -> np.ndarray:
    """(new slices, old slices): each row the old slices' overlap with one new slab, summing
    to one (slabs at the ends are averaged over the part of them the old volume covers)."""
    extent = (count - 1) * spacing
    new = np.arange(int(np.floor(extent / slice_mm + 1e-9)) + 1) * slice_mm
    old = np.arange(count) * spacing
    low = np.maximum(new[:, None] - slice_mm / 2, old[None] - spacing / 2)
    high = np.minimum(new[:, None] + slice_mm / 2, old[None] + spacing / 2)
    weights = np.clip(high - low, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def _average(weights, array) -> np.ndarray:
    return np.tensordot(weights, np.asarray(array, np.float32), axes=(1, 0))


def resliced(case, slice_mm: float):
    """`case` (a cta.VesselCase) with slices `slice_mm` thick and apart."""
    spacing = case.volume.spacing_zyx[0]
    weights = slab_weights(case.volume.shape[0], spacing, slice_mm).astype(np.float32)
    image = _average(weights, case.volume.array).astype(np.float32)
    label = _average(weights, case.label) >= 0.5

    def other(mask):
        return ((_average(weights, mask) >= 0.5) & ~label).astype(np.uint8)

    kinds = {kind: other(mask) for kind, mask in case.other_kinds.items()}
    other_vessels = other(case.other_vessels)
    distractor = other_vessels if case.distractor is case.other_vessels else other(case.distractor)
    matrix = case.volume.ijk_to_ras.copy()
    matrix[:3, 2] *= slice_mm / spacing              # the K (slice) axis, origin unchanged
    z, y, x = case.seed_index
    z = int(np.clip(round(z * spacing / slice_mm), 0, image.shape[0] - 1))
    if not label[z, y, x]:
        rows, cols = np.nonzero(label[z])
        if rows.size == 0:
            raise ValueError(f"the label vanished from slice {z} after reslicing")
        nearest = int(np.argmin((rows - y) ** 2 + (cols - x) ** 2))
        y, x = int(rows[nearest]), int(cols[nearest])
    # Branches stay as they are: grid-frame mm (index times spacing) is the same on both grids.
    return replace(case, volume=Volume(image, matrix), label=label.astype(np.uint8),
                   distractor=distractor, seed_index=(z, y, x),
                   other_vessels=other_vessels, other_kinds=kinds)
