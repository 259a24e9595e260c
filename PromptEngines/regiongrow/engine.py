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


def _voxel(zyx, shape) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(zyx, shape))


class RegionGrowEngine(Engine):
    descriptor = REGIONGROW

    def _on_image(self) -> None:
        self._state = GrowState()
        self._smoothed = None

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
        # Points and scribbles: each of their positions is a seed of their polarity.
        voxels = tuple(_voxel(p, shape) for p in prompt.positions())
        key = "positive" if prompt.label else "negative"
        return replace(state, **{key: getattr(state, key) + voxels})

    # ------------------------------------------------------------------ the algorithm
    def _smooth(self) -> np.ndarray:
        if self._smoothed is None:
            self._smoothed = intensity.smoothed(self.image, self.spacing_zyx)
        return self._smoothed

    def _level(self, image, voxel) -> float:
        return float(np.median(intensity.sample_balls(image, [voxel], intensity.SEED_RADIUS_MM,
                                                      self.spacing_zyx)))

    def _grow(self, state: GrowState) -> np.ndarray:
        base = state.base if state.base is not None else np.zeros(self.image.shape, np.uint8)
        seeds = list(state.positive)
        if state.box is not None and not seeds:
            seeds = [tuple((lo + hi) // 2 for lo, hi in zip(*state.box))]
        barrier = np.zeros(self.image.shape, bool)
        for voxel in state.negative:
            region, inside = intensity.ball(voxel, BARRIER_RADIUS_MM, self.image.shape,
                                            self.spacing_zyx)
            barrier[region] |= inside
        grown = np.zeros(self.image.shape, bool)
        if seeds:
            grown = self._grown_region(seeds, state, barrier)
        mask = (base > 0) | grown
        mask &= ~barrier
        # Negative prompts on a starting mask remove the piece of it they land in.
        if state.negative and base.any():
            pieces, _ = ndimage.label(mask)
            hit = {pieces[v] for v in state.negative} - {0}
            mask &= ~np.isin(pieces, list(hit))
        return mask.astype(np.uint8)

    def _grown_region(self, seeds, state, barrier) -> np.ndarray:
        image = self._smooth()
        region = intensity.window(seeds, image.shape, self.spacing_zyx)
        background = float(np.median(image[region]))
        noise = intensity.noise_level(self.image, image, region)
        levels = [self._level(image, s) for s in seeds]
        for level in levels:          # every positive prompt must sit on something distinct
            require_contrast(Levels(level, background, noise))
        foreground = float(np.median(levels))
        # A band around the structure's level reaching half way to the background, as a
        # threshold range in Slicer's editor; negative prompts whose intensity differs add
        # classes the band must stay nearer to the structure than (e.g. calcium, bone).
        accept = np.abs(image - foreground) < abs(foreground - background) / 2
        for voxel in state.negative:
            level = self._level(image, voxel)
            if abs(level - foreground) >= intensity.MIN_CONTRAST * noise:
                accept &= np.abs(image - foreground) < np.abs(image - level)
        accept &= ~barrier
        if state.box is not None:
            inside = np.zeros_like(accept)
            inside[tuple(slice(lo, hi + 1) for lo, hi in zip(*state.box))] = True
            accept &= inside
        pieces, _ = ndimage.label(accept)
        keep = {pieces[s] for s in seeds} - {0}
        if not keep and state.box is not None:          # box only: its largest piece
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            keep = {int(np.argmax(sizes))} if sizes.max() > 0 else set()
        grown = np.isin(pieces, list(keep))
        if grown.mean() > MAX_FILL:
            raise PromptError("region growing filled more than half of the volume; "
                              "add a negative point or a box to contain it")
        return grown
