"""The cube PRISM works in: `size`^3 voxels `mm` apart (the model's spacing), placed in a
volume's index frame around the user's first prompt (a box's centre or the first click;
never around ground truth). Images are sampled into it, prompts moved into it, and the
cube's logits sampled back onto the volume's own grid where the cube covers it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

OUTSIDE = -20.0          # logits where the cube has nothing to say (far below the threshold)


@dataclass(frozen=True)
class Cube:
    origin: tuple[float, float, float]     # volume index (z, y, x) of the cube's voxel 0
    step: tuple[float, float, float]       # volume voxels per cube voxel, per axis
    size: int

    @classmethod
    def around(cls, centre_zyx, spacing_zyx, size: int, mm: float) -> "Cube":
        """Rounded to a millionth of a voxel: a volume whose matrix went through a file (a
        few ULPs off) gives the same cube, so a replay samples the very same points."""
        step = np.round(np.asarray(mm, float) / np.asarray(spacing_zyx, float), 6)
        origin = np.round(np.asarray(centre_zyx, float) - step * (size - 1) / 2, 6)
        return cls(tuple(float(v) for v in origin), tuple(float(v) for v in step), size)

    def field_mm(self, spacing_zyx) -> np.ndarray:
        """How far the cube reaches along each axis, in mm."""
        return self.size * np.asarray(self.step) * np.asarray(spacing_zyx)

    def to_cube(self, zyx) -> np.ndarray:
        """Cube coordinates of a volume index position (to a millionth of a voxel, so that a
        position on a voxel's border rounds the same way whatever ULPs the matrix had)."""
        return np.round((np.asarray(zyx, float) - self.origin) / self.step, 6)

    def to_volume(self, cube_zyx) -> np.ndarray:
        return np.asarray(cube_zyx, float) * self.step + self.origin

    def contains(self, cube_zyx) -> bool:
        inside = (np.asarray(cube_zyx) >= -0.5) & (np.asarray(cube_zyx) <= self.size - 0.5)
        return bool(np.all(inside))

    def sample(self, image: np.ndarray) -> np.ndarray:
        """The image in the cube (trilinear; past the volume's edge the edge's value)."""
        axes = [self.origin[a] + self.step[a] * np.arange(self.size) for a in range(3)]
        low = [max(int(np.floor(axes[a].min())) - 1, 0) for a in range(3)]
        high = [min(int(np.ceil(axes[a].max())) + 2, image.shape[a]) for a in range(3)]
        if any(h <= lo for lo, h in zip(low, high)):
            raise ValueError("the cube does not overlap the volume")
        part = np.asarray(image[tuple(slice(lo, h) for lo, h in zip(low, high))], np.float32)
        # Axis-aligned: cube voxel i reads part at origin + step * i - low, axis by axis.
        return ndimage.affine_transform(part, self.step, np.subtract(self.origin, low),
                                        output_shape=(self.size,) * 3, order=1,
                                        mode="nearest").astype(np.float32)

    def region(self, shape) -> tuple[slice, slice, slice]:
        """The volume voxels the cube covers (its voxel centres' box, clipped)."""
        low = np.ceil(self.to_volume([-0.5] * 3) - 1e-6).astype(int)
        high = np.floor(self.to_volume([self.size - 0.5] * 3) + 1e-6).astype(int) + 1
        return tuple(slice(int(max(lo, 0)), int(min(h, n))) for lo, h, n in zip(low, high, shape))

    def paste(self, logits: np.ndarray, shape) -> tuple[tuple[slice, ...], np.ndarray]:
        """The cube's mask on the volume's grid: (region, uint8 patch) where logits > 0."""
        region = self.region(shape)
        step = 1.0 / np.asarray(self.step)
        start = (np.array([r.start for r in region]) - self.origin) * step
        values = ndimage.affine_transform(np.asarray(logits, np.float32), step, start,
                                          output_shape=tuple(r.stop - r.start for r in region),
                                          order=1, mode="constant", cval=OUTSIDE)
        return region, (values > 0).astype(np.uint8)
