"""`regiongrow`: what a Slicer user does by hand with flood filling / threshold + islands.

From the clicked points it learns the structure's intensity (median around positive prompts)
and the surroundings' (median of a window around them), keeps the voxels within a band around
the structure's level (half way to the surroundings, and nearer to it than to any distinct
negative prompt), and takes the connected pieces that hold a positive prompt. Negative prompts are also barriers; a box
bounds the growth. It is the floor every learned engine must beat.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..data import intensity
from ..data.intensity import Levels, require_contrast
from ..data.lasso_area import lasso_area
from ..engine import Engine
from ..errors import PromptError
from .descriptor import REGIONGROW

BARRIER_RADIUS_MM = 2.0     # what a negative prompt blocks
MAX_FILL = 0.5              # a region larger than this share of the volume has leaked


@dataclass(frozen=True)
class GrowState:
    positive: tuple = ()            # voxel indices of positive points and scribble points
    negative: tuple = ()
    box: tuple | None = None        # ((z0, y0, x0), (z1, y1, x1)) voxel bounds, inclusive
    base: np.ndarray | None = field(default=None, compare=False)   # starting mask
    erased: np.ndarray | None = field(default=None, compare=False)  # inside negative lassos


def _voxel(zyx, shape) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(zyx, shape))


class RegionGrowEngine(Engine):
    descriptor = REGIONGROW

    def _on_image(self) -> None:
        self._state = GrowState()

    def _save_state(self):
        return self._state

    def _restore_state(self, state) -> None:
        self._state = state

    # ------------------------------------------------------------------ interaction
    def _interact(self, prompt):
        self._state = self._with_prompt(self._state, prompt)
        yield self._final_update(self._grow(self._state), message="region grown")

    def _with_prompt(self, state: GrowState, prompt) -> GrowState:
        shape = self.image.shape
        if prompt.kind == "box":
            low = _voxel(np.ceil(np.asarray(prompt.low) - 0.5 + 1e-6), shape)
            high = _voxel(np.floor(np.asarray(prompt.high) + 0.5 - 1e-6), shape)
            return replace(state, box=(low, high))
        if prompt.kind == "mask":
            return replace(state, base=(prompt.mask > 0).astype(np.uint8))
        if prompt.kind == "lasso":       # as Slicer's scissors: fill or erase inside
            area = lasso_area(prompt.points, shape)
            base = np.zeros(shape, bool) if state.base is None else state.base > 0
            erased = np.zeros(shape, bool) if state.erased is None else state.erased
            if prompt.label:             # the later lasso wins where two overlap
                return replace(state, base=(base | area).astype(np.uint8), erased=erased & ~area)
            return replace(state, base=(base & ~area).astype(np.uint8), erased=erased | area)
        # Points and scribbles: each of their positions is a seed of their polarity.
        voxels = tuple(_voxel(p, shape) for p in prompt.positions())
        key = "positive" if prompt.label else "negative"
        return replace(state, **{key: getattr(state, key) + voxels})

    # ------------------------------------------------------------------ the algorithm
    # Work only where the prompts are: statistics from their neighbourhood, and the growth in a
    # box around them, doubled while what grows reaches the box's side (not the volume's
    # edge), so the result is the whole volume's at the cost of the region.
    def _level(self, voxel) -> float:
        region, _ = intensity.ball(voxel, intensity.SEED_RADIUS_MM, self.image.shape,
                                   self.spacing_zyx)
        smooth = intensity.smoothed(self.image, self.spacing_zyx, region)
        local = tuple(v - r.start for v, r in zip(voxel, region))
        return float(np.median(intensity.sample_balls(smooth, [local], intensity.SEED_RADIUS_MM,
                                                      self.spacing_zyx)))

    def _barriers(self, state: GrowState):
        """(region, ball) of each negative prompt: what it blocks."""
        return [intensity.ball(v, BARRIER_RADIUS_MM, self.image.shape, self.spacing_zyx)
                for v in state.negative]

    def _grow(self, state: GrowState) -> np.ndarray:
        seeds = list(state.positive)
        if state.box is not None and not seeds:
            seeds = [tuple((lo + hi) // 2 for lo, hi in zip(*state.box))]
        mask = np.zeros(self.image.shape, bool)        # pages untouched outside the growth
        if seeds:
            box, grown = self._grown_region(seeds, state)
            mask[box] = grown
        if state.base is not None:
            mask |= state.base > 0
        if state.erased is not None:
            mask &= ~state.erased
        for region, ball in self._barriers(state):
            mask[region] &= ~ball
        # Negative prompts on a starting mask remove the piece of it they land in.
        if state.negative and state.base is not None and state.base.any():
            pieces, _ = ndimage.label(mask)
            hit = {pieces[v] for v in state.negative} - {0}
            mask &= ~np.isin(pieces, list(hit))
        return mask.astype(np.uint8)

    def _grown_region(self, seeds, state) -> tuple[tuple[slice, ...], np.ndarray]:
        """The grown region in a box: (box, its voxels)."""
        shape, spacing = self.image.shape, self.spacing_zyx
        region = intensity.window(seeds, shape, spacing)
        smooth = intensity.smoothed(self.image, spacing, region)
        background = float(np.median(smooth))
        noise = intensity.noise_level(self.image[region], smooth)
        levels = [self._level(s) for s in seeds]
        for level in levels:          # every positive prompt must sit on something distinct
            require_contrast(Levels(level, background, noise))
        foreground = float(np.median(levels))
        negatives = [self._level(v) for v in state.negative]
        if state.box is not None:                      # nothing grows outside a box prompt
            box = tuple(slice(lo, hi + 1) for lo, hi in zip(*state.box))
        else:
            box = region
        while True:
            grown = self._grown_in(box, seeds, state, foreground, background, noise, negatives)
            wider = _widened(box, grown, shape)
            if wider == box or state.box is not None:
                break
            box = wider
        if grown.sum() > MAX_FILL * self.image.size:
            raise PromptError("region growing filled more than half of the volume; "
                              "add a negative point or a box to contain it")
        return box, grown

    def _grown_in(self, box, seeds, state, foreground, background, noise, negatives):
        image = intensity.smoothed(self.image, self.spacing_zyx, box)
        # A band around the structure's level reaching half way to the background, as a
        # threshold range in Slicer's editor; negative prompts whose intensity differs add
        # classes the band must stay nearer to the structure than (e.g. calcium, bone).
        accept = np.abs(image - foreground) < abs(foreground - background) / 2
        for level in negatives:
            if abs(level - foreground) >= intensity.MIN_CONTRAST * noise:
                accept &= np.abs(image - foreground) < np.abs(image - level)
        for region, ball in self._barriers(state):
            inner = tuple(slice(max(r.start, b.start), min(r.stop, b.stop))
                          for r, b in zip(region, box))
            if all(i.start < i.stop for i in inner):
                part = tuple(slice(i.start - r.start, i.stop - r.start) for i, r in zip(inner, region))
                accept[tuple(slice(i.start - b.start, i.stop - b.start)
                             for i, b in zip(inner, box))] &= ~ball[part]
        pieces, _ = ndimage.label(accept)
        local = [tuple(v - b.start for v, b in zip(s, box)) for s in seeds]
        keep = {pieces[s] for s in local
                if all(0 <= c < n for c, n in zip(s, pieces.shape))} - {0}
        if not keep and state.box is not None:          # box only: its largest piece
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            keep = {int(np.argmax(sizes))} if sizes.max() > 0 else set()
        return np.isin(pieces, list(keep))


def _widened(box, grown, shape) -> tuple[slice, ...]:
    """The box twice as wide along every axis where `grown` reaches a side of it that is not
    the volume's edge; the same box if it reaches none."""
    wider = []
    for axis, (part, size) in enumerate(zip(box, shape)):
        others = tuple(a for a in range(grown.ndim) if a != axis)
        along = grown.any(axis=others)
        width = part.stop - part.start
        low = part.start - width if along[0] and part.start > 0 else part.start
        high = part.stop + width if along[-1] and part.stop < size else part.stop
        wider.append(slice(max(low, 0), min(high, size)))
    return tuple(wider)
