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

from ..engine import Engine, register_engine
from ..errors import PromptError
from ..prompts import Box, MaskPrompt, Point, Scribble

SEED_RADIUS_MM = 1.0        # intensity sample around each prompt
WINDOW_MM = 20.0            # half-width of the surroundings window
BARRIER_RADIUS_MM = 2.0     # what a negative prompt blocks
MIN_CONTRAST = 2.0          # in raw-noise standard deviations: below it, nothing stands out
MAX_FILL = 0.5              # a region larger than this share of the volume has leaked


@dataclass(frozen=True)
class GrowState:
    positive: tuple = ()            # voxel indices of positive points and scribble points
    negative: tuple = ()
    box: tuple | None = None        # ((z0, y0, x0), (z1, y1, x1)) voxel bounds, inclusive
    base: np.ndarray | None = field(default=None, compare=False)   # starting mask


def _voxel(zyx, shape) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(zyx, shape))


@register_engine
class RegionGrowEngine(Engine):
    name = "regiongrow"
    capabilities = frozenset({"point", "box", "scribble", "mask"})

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
        if isinstance(prompt, Point):
            voxel = (_voxel(prompt.position, shape),)
            key = "positive" if prompt.label else "negative"
            return replace(state, **{key: getattr(state, key) + voxel})
        if isinstance(prompt, Scribble):
            voxels = tuple(_voxel(p, shape) for p in prompt.points)
            key = "positive" if prompt.label else "negative"
            return replace(state, **{key: getattr(state, key) + voxels})
        if isinstance(prompt, Box):
            low = _voxel(np.ceil(np.asarray(prompt.low) - 0.5 + 1e-6), shape)
            high = _voxel(np.floor(np.asarray(prompt.high) + 0.5 - 1e-6), shape)
            return replace(state, box=(low, high))
        if isinstance(prompt, MaskPrompt):
            return replace(state, base=(prompt.mask > 0).astype(np.uint8))
        raise PromptError(f"regiongrow cannot take {prompt.kind} prompts")

    # ------------------------------------------------------------------ the algorithm
    def _smooth(self) -> np.ndarray:
        if self._smoothed is None:
            sigma = 0.7 * min(self.spacing_zyx) / np.asarray(self.spacing_zyx)
            self._smoothed = ndimage.gaussian_filter(self.image.astype(np.float32), sigma)
        return self._smoothed

    def _ball(self, centre, radius_mm) -> tuple[tuple[slice, ...], np.ndarray]:
        """Region slices and a boolean ball of `radius_mm` around a voxel, clipped."""
        reach = np.maximum(1, np.ceil(radius_mm / np.asarray(self.spacing_zyx))).astype(int)
        low = np.maximum(np.asarray(centre) - reach, 0)
        high = np.minimum(np.asarray(centre) + reach + 1, self.image.shape)
        grid = np.ogrid[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
        distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, self.spacing_zyx))
        return tuple(slice(lo, hi) for lo, hi in zip(low, high)), distance2 <= radius_mm ** 2

    def _sample(self, image, voxels, radius_mm) -> np.ndarray:
        samples = [image[region][ball] for region, ball in
                   (self._ball(v, radius_mm) for v in voxels)]
        return np.concatenate(samples) if samples else np.empty(0, np.float32)

    def _grow(self, state: GrowState) -> np.ndarray:
        base = state.base if state.base is not None else np.zeros(self.image.shape, np.uint8)
        seeds = list(state.positive)
        if state.box is not None and not seeds:
            seeds = [tuple((lo + hi) // 2 for lo, hi in zip(*state.box))]
        barrier = np.zeros(self.image.shape, bool)
        for voxel in state.negative:
            region, ball = self._ball(voxel, BARRIER_RADIUS_MM)
            barrier[region] |= ball
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
        window = self._window(seeds)
        background = float(np.median(image[window]))
        noise = self._noise(window)
        levels = [float(np.median(self._sample(image, [s], SEED_RADIUS_MM))) for s in seeds]
        for level in levels:          # every positive prompt must sit on something distinct
            if abs(level - background) < MIN_CONTRAST * noise:
                raise PromptError("no vessel or structure at the seed: its intensity "
                                  f"({level:.0f}) does not stand out from its surroundings "
                                  f"({background:.0f}, noise {noise:.0f})")
        foreground = float(np.median(levels))
        # A band around the structure's level reaching half way to the background, as a
        # threshold range in Slicer's editor; negative prompts whose intensity differs add
        # classes the band must stay nearer to the structure than (e.g. calcium, bone).
        accept = np.abs(image - foreground) < abs(foreground - background) / 2
        for voxel in state.negative:
            level = float(np.median(self._sample(image, [voxel], SEED_RADIUS_MM)))
            if abs(level - foreground) >= MIN_CONTRAST * noise:
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

    def _window(self, seeds) -> tuple[slice, ...]:
        reach = np.ceil(WINDOW_MM / np.asarray(self.spacing_zyx)).astype(int)
        points = np.asarray(seeds)
        low = np.maximum(points.min(axis=0) - reach, 0)
        high = np.minimum(points.max(axis=0) + reach + 1, self.image.shape)
        return tuple(slice(lo, hi) for lo, hi in zip(low, high))

    def _noise(self, window) -> float:
        """Robust noise level: MAD of the raw image minus its smoothed version, in the window."""
        residual = self.image[window].astype(np.float32) - self._smooth()[window]
        mad = float(np.median(np.abs(residual - np.median(residual))))
        return max(1.4826 * mad, 1e-6 * (float(np.ptp(self.image)) or 1.0))
