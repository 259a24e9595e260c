"""A faint tumour in an organ with contrast-filled vessels crossing it (prism's benchmark and
training data): `tumour_volume`'s organ and tumour, then 2-4 bright tubes running through the
organ, at least one of them through or beside the tumour. Vessel voxels are not tumour (the
vessel crosses it), so a method must cut them out; `labels` holds organ 1, tumour 2,
vessels 3. Deterministic by seed; `tumour_volume` itself is unchanged."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .labelled_volume import LabelledVolume
from .tubes import unit
from .tumour import TUMOUR_LABELS, tumour_volume

LABELS = {**TUMOUR_LABELS, "vessel": 3}


def organ_tumour_volume(seed: int = 0, shape=(56, 96, 96)) -> LabelledVolume:
    case = tumour_volume(seed, shape)
    rng = np.random.default_rng([seed, 7])                # vessels: a stream of their own
    spacing = np.asarray(case.volume.spacing_zyx)
    grid = np.indices(shape).transpose(1, 2, 3, 0) * spacing
    tumour = case.labels == TUMOUR_LABELS["tumour"]
    organ = case.labels >= TUMOUR_LABELS["organ"]
    centre = np.argwhere(tumour).mean(axis=0) * spacing
    image = case.volume.array.copy()
    vessels = np.zeros(shape, bool)
    for index in range(int(rng.integers(2, 5))):
        # The first passes through or beside the tumour, the others elsewhere in the organ.
        if index == 0:
            through = centre + rng.normal(0, 4.0, 3)
        else:
            organ_points = np.argwhere(organ)
            through = organ_points[rng.integers(len(organ_points))] * spacing
        direction = unit(rng.normal(size=3))
        radius = rng.uniform(1.2, 3.0)
        offset = grid - through
        along = offset @ direction
        distance = np.linalg.norm(offset - along[..., None] * direction, axis=-1)
        tube = 1.0 / (1.0 + np.exp((distance - radius) / 0.4))     # partial volume at the wall
        image += (rng.uniform(140.0, 220.0) * tube * organ).astype(np.float32)
        vessels |= (distance < radius) & organ
    image = ndimage.gaussian_filter(image, 0.3).astype(np.float32)
    labels = case.labels.copy()
    labels[vessels] = LABELS["vessel"]
    volume = type(case.volume)(image, case.volume.ijk_to_ras)
    return LabelledVolume(volume, labels, dict(LABELS))
