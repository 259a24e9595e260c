"""Which of a tentative trace's additions are branches of the tree (the tracer's second
look, tracking.SliceTracer._second_look)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure


def keep_branches(traced: np.ndarray, added: np.ndarray, volume: np.ndarray, options) -> np.ndarray:
    """The 3D pieces of `added` that reach `options.min_escape` voxels beyond `traced` (a
    branch, not the trace's boundary drawn again) and are no brighter than the traced vessel
    they leave by more than `options.max_brighter` (contrast only falls along a tree; bone
    marrow and calcium touching the vessel are brighter)."""
    if not added.any():
        return added
    pieces, count = ndimage.label(added, full_structure(3))
    # Distances are only compared with min_escape: a margin that wide keeps them exact.
    margin = int(np.ceil(options.min_escape)) + 1
    box = tuple(slice(max(s.start - margin, 0), s.stop + margin)
                for s in ndimage.find_objects(added.astype(np.uint8))[0])
    pieces_box, traced_box, volume_box = pieces[box], traced[box], volume[box]
    beyond = ndimage.distance_transform_edt(~traced_box)
    reach = np.atleast_1d(ndimage.maximum(beyond, pieces_box, np.arange(1, count + 1)))
    keep = [label for label, r in zip(range(1, count + 1), reach)
            if r >= options.min_escape and _no_brighter_than_parent(
                pieces_box == label, traced_box, volume_box, options.max_brighter)]
    return np.isin(pieces, keep)


def _no_brighter_than_parent(piece, traced, volume, max_brighter) -> bool:
    parent = ndimage.binary_dilation(piece, full_structure(3), iterations=2) & traced
    if not parent.any():
        return False
    return bool(np.median(volume[piece]) <= np.median(volume[parent]) + max_brighter)
