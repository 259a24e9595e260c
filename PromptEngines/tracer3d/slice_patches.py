"""Masks kept slice by slice where something happened, read back as windows of a volume."""
from __future__ import annotations

from collections import defaultdict

import numpy as np


class Patches:
    """Values pasted on slices (which contact holds a voxel, what was judged another
    vessel's): what a whole-volume label array would hold there, at the cost of those places
    only (a click on a 512 x 512 x 800 scan must not pay for a volume-sized array)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self._by_z: dict[int, list] = defaultdict(list)     # z -> [(rows, cols, mask, value)]

    def paste(self, z: int, rows: slice, cols: slice, mask: np.ndarray, value) -> None:
        if mask.any():
            self._by_z[z].append((rows, cols, mask.copy(), value))

    def window(self, z: int, rows: slice, cols: slice) -> np.ndarray:
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), self.dtype)
        for p_rows, p_cols, mask, value in self._by_z.get(z, ()):
            top, left = max(rows.start, p_rows.start), max(cols.start, p_cols.start)
            bottom, right = min(rows.stop, p_rows.stop), min(cols.stop, p_cols.stop)
            if top < bottom and left < right:
                part = mask[top - p_rows.start:bottom - p_rows.start,
                            left - p_cols.start:right - p_cols.start]
                out[top - rows.start:bottom - rows.start,
                    left - cols.start:right - cols.start][part] = value
        return out

    def box(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        return np.stack([self.window(z, box[1], box[2]) for z in range(box[0].start, box[0].stop)])

    def drop(self, values) -> None:
        """Take away what was pasted with any of `values`."""
        for z in list(self._by_z):
            self._by_z[z] = [p for p in self._by_z[z] if p[3] not in values]
            if not self._by_z[z]:
                del self._by_z[z]

    def any(self) -> bool:
        return bool(self._by_z)
