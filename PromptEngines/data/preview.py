"""PNG previews: maximum-intensity projections with segmentations overlaid."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _to_grey(projection: np.ndarray) -> np.ndarray:
    low, high = np.percentile(projection, [1.0, 99.8])
    return np.clip((projection - low) / max(high - low, 1e-6), 0.0, 1.0)


def _stretch(image: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    """Resample rows so that a pixel is square in millimetres (anisotropic volumes)."""
    from PIL import Image

    rows = max(1, int(round(image.shape[0] * row_mm / col_mm)))
    pil = Image.fromarray((image * 255).astype(np.uint8))
    return np.asarray(pil.resize((image.shape[1], rows), Image.Resampling.BILINEAR)) / 255.0


def mip_panels(image: np.ndarray, spacing_zyx, overlays=()) -> np.ndarray:
    """RGB array: axial, coronal and sagittal MIPs side by side; overlays are
    (mask, rgb) pairs blended where the mask projects."""
    panels = []
    for axis, (row_mm, col_mm) in ((0, spacing_zyx[1:]), (1, (spacing_zyx[0], spacing_zyx[2])),
                                   (2, (spacing_zyx[0], spacing_zyx[1]))):
        grey = _to_grey(image.max(axis=axis))
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        for mask, colour in overlays:
            hit = mask.max(axis=axis) > 0
            rgb[hit] = 0.45 * rgb[hit] + 0.55 * np.asarray(colour)
        channels = [_stretch(rgb[..., c], row_mm, col_mm) for c in range(3)]
        panel = np.stack(channels, axis=-1)
        if axis:
            panel = panel[::-1]          # superior up in coronal and sagittal views
        panels.append(panel)
    height = max(p.shape[0] for p in panels)
    gap = np.zeros((height, 4, 3))
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in panels]
    return np.concatenate([padded[0], gap, padded[1], gap, padded[2]], axis=1)


def save_preview(path: str | Path, image: np.ndarray, spacing_zyx, overlays=(),
                 min_width: int = 600) -> None:
    from PIL import Image

    if image.shape[0] == 1:          # a 2D picture: show the slice itself, not projections
        grey = _to_grey(image[0])
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        for mask, colour in overlays:
            hit = mask[0] > 0
            rgb[hit] = 0.45 * rgb[hit] + 0.55 * np.asarray(colour)
    else:
        rgb = mip_panels(image, spacing_zyx, overlays)
    picture = Image.fromarray((rgb * 255).astype(np.uint8))
    if picture.width < min_width:
        scale = min_width / picture.width
        picture = picture.resize((min_width, int(picture.height * scale)),
                                 Image.Resampling.NEAREST)
    picture.save(str(path))
