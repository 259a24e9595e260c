"""Slices traced from a contact with another vessel on, held back until judged (issue 15).

When a slice's mask takes in a vessel that was outside the trace one slice before
(contacts.foreign_parts), the tracks from there on are a contact: their voxels count as
traced (no track takes them twice) but are not shown. After `judge_after` slices, or when
its tracks end, the contact is judged in 3D (contacts.separate / passes_by): the other
vessel's voxels are dropped and never traced again (`rejected`), the rest is shown. So a
live view never shows a piece that the finished trace drops.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.regions import bounding_box, full_structure
from .contacts import LUMEN, passes_by, separate, with_lumen


class Patches:
    """Values pasted on slices where contacts are: what a whole-volume label array would hold
    there, at the cost of those places only (a click on a 512 x 512 x 800 scan must not pay
    for a volume-sized array; issue 20)."""

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


@dataclass
class _Contact:
    ids: set = field(default_factory=set)          # its own and those merged into it
    slices: list = field(default_factory=list)     # (z, rows, cols, mask) held back
    foreign: list = field(default_factory=list)    # (z, rows, cols, mask) where a vessel came in


def _local(z, rows, cols, box):
    return (z - box[0].start, slice(rows.start - box[1].start, rows.stop - box[1].start),
            slice(cols.start - box[2].start, cols.stop - box[2].start))


class HeldContacts:
    def __init__(self, shape, spacing):
        self.shape, self.spacing = tuple(shape), tuple(float(s) for s in spacing)
        self.pending = Patches(np.uint32)      # the contact holding a voxel (0: none)
        self.rejected = Patches(bool)          # another vessel's: never traced again
        self._open: dict[int, _Contact] = {}
        self._merged: dict[int, int] = {}
        self._count = 0

    def root(self, group: int) -> int:
        while group in self._merged:
            group = self._merged[group]
        return group

    def open(self) -> int:
        self._count += 1
        self._open[self._count] = _Contact({self._count})
        return self._count

    def groups(self) -> list[int]:
        return list(self._open)

    def slices(self, group: int) -> int:
        return len(self._open[group].slices)

    def hold(self, group: int, z, rows, cols, mask, foreign=None) -> None:
        self.pending.paste(z, rows, cols, mask, group)
        self._open[group].slices.append((z, rows, cols, mask.copy()))
        if foreign is not None:
            self._open[group].foreign.append((z, rows, cols, foreign & mask))

    def merge(self, other: int, group: int) -> None:
        """Two contacts' tracks met: one contact, judged as one."""
        other = self.root(other)
        if other in (0, group):
            return
        taken, target = self._open.pop(other), self._open[group]
        target.ids |= taken.ids
        target.slices += taken.slices
        target.foreign += taken.foreign
        self._merged[other] = group

    def judge(self, group: int, traced: np.ndarray, volume
              ) -> list[tuple[int, slice, slice, np.ndarray]]:
        """Split the contact's voxels between the trace and the vessels that came in; drop
        those that only touch the trace (from `traced` too), release the rest. `volume`:
        the click-normalised image (where a lumen is). Returns the kept voxels slice by
        slice (z, rows, cols, mask)."""
        contact = self._open.pop(group)
        self.pending.drop(contact.ids)
        box = self._box(contact.slices)
        held = np.zeros([b.stop - b.start for b in box], bool)
        for z, rows, cols, mask in contact.slices:
            held[_local(z, rows, cols, box)] |= mask
        foreign = np.zeros(held.shape, np.int32)
        for index, (z, rows, cols, mask) in enumerate(contact.foreign, start=1):
            foreign[_local(z, rows, cols, box)][mask] = index
        # What the trace showed before, around what is held: the other side of the watershed.
        own = traced[box] & ~held & (self.pending.box(box) == 0)
        kept = held.copy()
        if (foreign > 0).any() and own.any():
            regions = separate(held, own, foreign, self.spacing)
            trace = regions == 1
            # One vessel may have come in at several places (each a marker): judged whole,
            # with the lumen it runs on in outside the trace.
            theirs = held & (regions > 1)
            vessels, count = ndimage.label(theirs, full_structure(3))
            # Not the rim of the trace's own lumen that its mask left out (it would join
            # the region to the trace's own vessel along its length).
            rim = ndimage.binary_dilation(own, full_structure(3), iterations=2)
            lumen = (volume[box] > LUMEN) & ~self.rejected.box(box) & ~held & ~rim
            seen, _ = with_lumen(theirs, lumen)
            del regions, lumen, foreign
            for index in range(1, count + 1):
                region = vessels == index
                if passes_by(region, trace, self.spacing,
                             np.isin(seen, np.unique(seen[region]))):
                    kept &= ~region
        dropped = held & ~kept
        traced[box] &= ~dropped
        for z, rows, cols, mask in self._by_slice(dropped, box):
            self.rejected.paste(z, rows, cols, mask, True)
        return self._by_slice(kept, box)

    @staticmethod
    def _by_slice(mask, box) -> list[tuple[int, slice, slice, np.ndarray]]:
        out = []
        for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
            rows, cols = bounding_box(mask[z])
            out.append((int(z) + box[0].start,
                        slice(rows.start + box[1].start, rows.stop + box[1].start),
                        slice(cols.start + box[2].start, cols.stop + box[2].start),
                        mask[z, rows, cols].copy()))
        return out

    def _box(self, slices, margin: int = 4) -> tuple[slice, ...]:
        zs = [s[0] for s in slices]
        low = (min(zs), min(s[1].start for s in slices), min(s[2].start for s in slices))
        high = (max(zs) + 1, max(s[1].stop for s in slices), max(s[2].stop for s in slices))
        return tuple(slice(max(lo - margin, 0), min(hi + margin, n))
                     for lo, hi, n in zip(low, high, self.shape))
