"""Synthetic tumour volumes: a tumour in an organ with an ambiguous edge, deterministic by seed."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .geometry import random_geometry
from .labelled_volume import LabelledVolume
from .tubes import smooth_field

TUMOUR_LABELS = {"organ": 1, "tumour": 2}


def tumour_volume(seed: int = 0, shape=(56, 96, 96)) -> LabelledVolume:
    """An organ (liver-like) holding a hypodense tumour whose edge fades over millimetres."""
    rng = np.random.default_rng(seed)
    spacing = np.array([rng.uniform(1.5, 2.5), 0.8, 0.8])
    grid = np.indices(shape).transpose(1, 2, 3, 0) * spacing
    extent = (np.asarray(shape) - 1) * spacing
    organ_radii = extent * rng.uniform(0.3, 0.38, 3)
    organ_level = np.linalg.norm((grid - extent / 2) / organ_radii, axis=-1) - 1.0
    organ_level += smooth_field(shape, rng, 10, 0.15)
    organ = organ_level < 0
    tumour_level = np.full(shape, np.inf, np.float32)
    centre = extent / 2 + rng.normal(0, 1, 3) * organ_radii * 0.2
    for _ in range(rng.integers(3, 6)):
        lobe = centre + rng.normal(0, 1, 3) * 4.0
        radius = rng.uniform(6.0, 10.0)
        tumour_level = np.minimum(tumour_level, np.linalg.norm(grid - lobe, axis=-1) - radius)
    tumour_level += smooth_field(shape, rng, 3, 2.0)
    tumour = (tumour_level < 0) & organ
    image = np.full(shape, -80.0, np.float32)                           # fat
    image[organ_level < 0.35] = 45.0                                   # other tissue
    image[organ] = 110.0
    fade = 1.0 / (1.0 + np.exp(tumour_level / 2.5))                    # ambiguous edge
    image = np.where(organ, image - 35.0 * fade, image)
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0, 12.0, shape)
    labels = np.zeros(shape, np.uint8)
    labels[organ] = TUMOUR_LABELS["organ"]
    labels[tumour] = TUMOUR_LABELS["tumour"]
    volume = Volume(image.astype(np.float32), random_geometry(rng, tuple(spacing)))
    return LabelledVolume(volume, labels, dict(TUMOUR_LABELS))
