"""Which of a tentative trace's additions are branches of the tree (the tracer's second
look, tracking.SliceTracer._second_look)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure, pieces_in_box


def keep_branches(traced: np.ndarray, added: np.ndarray, volume, options) -> np.ndarray:
    """The 3D pieces of `added` that reach `options.min_escape` voxels beyond `traced` (a
    branch, not the trace's boundary drawn again) and are no brighter than the traced vessel
    they leave by more than `options.max_brighter` (contrast only falls along a tree; bone
    marrow and calcium touching the vessel are brighter). `volume`: anything indexed like an
    array of `traced`'s shape (the tracer's lazily normalised view); each piece reads and
    works only in its own box, so memory goes with the largest piece, not the whole trace."""
    kept = np.zeros(added.shape, bool)
    if not added.any():
        return kept
    pieces, count, within = pieces_in_box(added)
    corner = [s.start for s in within]
    # Distances are only compared with min_escape: a margin that wide keeps them exact.
    # (and at least 2: the parent is looked for two dilations around the piece).
    margin = max(int(np.ceil(options.min_escape)) + 1, 2)
    for label, piece_box in enumerate(ndimage.find_objects(pieces), start=1):
        box = tuple(slice(max(s.start + c - margin, 0), min(s.stop + c + margin, n))
                    for s, c, n in zip(piece_box, corner, added.shape))
        piece = np.zeros([s.stop - s.start for s in box], bool)
        inner = tuple(slice(s.start + c - b.start, s.stop + c - b.start)
                      for s, c, b in zip(piece_box, corner, box))
        piece[inner] = pieces[piece_box] == label
        if _reach(piece, traced[box]) >= options.min_escape and _no_brighter_than_parent(
                piece, traced[box], volume[box], options.max_brighter):
            kept[box] |= piece
    return kept


def _reach(piece, traced) -> float:
    """How far (voxels) the piece gets from the trace; beyond the box's margin: infinity."""
    if not traced.any():
        return np.inf
    return float(ndimage.distance_transform_edt(~traced)[piece].max())


def _no_brighter_than_parent(piece, traced, volume, max_brighter) -> bool:
    parent = ndimage.binary_dilation(piece, full_structure(3), iterations=2) & traced
    if not parent.any():
        return False
    return bool(np.median(volume[piece]) <= np.median(volume[parent]) + max_brighter)
