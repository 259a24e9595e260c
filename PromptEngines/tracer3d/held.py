"""Slices traced from a contact with another vessel on, held back until judged (issue 15).

When a slice's mask takes in a vessel that was outside the trace one slice before
(contacts.foreign_parts), the tracks from there on are a contact: their voxels count as
traced (no track takes them twice) but are not shown. After `judge_after` slices, or when
its tracks end, the contact is judged in 3D (contacts.separate / passes_by): the other
vessel's voxels are dropped and never traced again (`rejected`), the rest is shown. So a
live view never shows a piece that the finished trace drops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure, slice_pieces
from .contacts import LUMEN, passes_by, separate
from .slice_patches import Patches

MARGIN = 4              # voxels around what a contact holds: the trace's side of the split


@dataclass
class _Contact:
    ids: set = field(default_factory=set)          # its own and those merged into it
    slices: list = field(default_factory=list)     # (z, rows, cols, mask) held back
    foreign: list = field(default_factory=list)    # (z, rows, cols, mask) where a vessel came in


def _in_box(z, rows, cols, box):
    return (z - box[0].start, slice(rows.start - box[1].start, rows.stop - box[1].start),
            slice(cols.start - box[2].start, cols.stop - box[2].start))


class HeldContacts:
    """The open contacts of one trace (a contact: the tracks from where another vessel came
    in, merged when they meet), what they hold, and what was judged another vessel's."""

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

    def held_slices(self, group: int) -> int:
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
            held[_in_box(z, rows, cols, box)] |= mask
        foreign = np.zeros(held.shape, np.int32)
        for index, (z, rows, cols, mask) in enumerate(contact.foreign, start=1):
            foreign[_in_box(z, rows, cols, box)][mask] = index
        # What the trace showed before, around what is held: the other side of the watershed.
        own = traced[box] & ~held & (self.pending.box(box) == 0)
        kept = held.copy()
        if (foreign > 0).any() and own.any():
            kept &= ~self._passing(held, own, foreign, volume[box] > LUMEN,
                                   self.rejected.box(box))
        dropped = held & ~kept
        traced[box] &= ~dropped
        for z, rows, cols, mask in slice_pieces(dropped, box):
            self.rejected.paste(z, rows, cols, mask, True)
        return slice_pieces(kept, box)

    def _passing(self, held, own, foreign, lumen, rejected) -> np.ndarray:
        """The held voxels of vessels that only touch the trace (box arrays)."""
        # The lumen outside the trace, but not the rim of the trace's own lumen that its
        # mask left out (that would join another vessel to the trace's all along). Vessels
        # already dropped show their arms to the straight pairs (a vein's far side), not to
        # passes_by.
        rim = ndimage.binary_dilation(own, full_structure(3), iterations=2)
        outside = lumen & ~held & ~rim
        regions, through = separate(held, own, foreign, self.spacing, outside)
        outside &= ~rejected
        trace = regions == 1
        # One vessel may have come in at several places (each a marker): judged whole, with
        # the lumen it runs on in outside the trace; so is a held piece joined to neither the
        # trace nor where a vessel came in (a track's step through its overlap margin).
        theirs = held & (regions != 1)
        del regions
        vessels, count = ndimage.label(theirs, full_structure(3))
        seen, _ = ndimage.label(theirs | outside, full_structure(3))
        # On the arms of a vessel passing straight through: that vessel.
        touching = ndimage.binary_dilation(through, full_structure(3))
        passing = np.zeros(held.shape, bool)
        for index in range(1, count + 1):
            region = vessels == index
            if (touching & region).any() or passes_by(
                    region, trace, self.spacing, np.isin(seen, np.unique(seen[region]))):
                passing |= region
        return passing

    def _box(self, slices, margin: int = MARGIN) -> tuple[slice, ...]:
        zs = [s[0] for s in slices]
        low = (min(zs), min(s[1].start for s in slices), min(s[2].start for s in slices))
        high = (max(zs) + 1, max(s[1].stop for s in slices), max(s[2].stop for s in slices))
        return tuple(slice(max(lo - margin, 0), min(hi + margin, n))
                     for lo, hi, n in zip(low, high, self.shape))
