"""Synthetic short-axis cardiac MRI-like stacks (LV, myocardium, RV), deterministic by seed."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .geometry import random_geometry
from .labelled_volume import LabelledVolume
from .tubes import smooth_field

CARDIAC_LABELS = {"RV": 1, "Myo": 2, "LV": 3}     # ACDC's label values


def cardiac_volume(seed: int = 0, slices: int = 10, size: int = 128) -> LabelledVolume:
    """Short-axis stack, base to apex: bright blood pools, dark myocardium, dark lungs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size)).astype(float)
    centre = np.array([size * 0.5, size * 0.55]) + rng.normal(0, 3, 2)
    images, labels = [], []
    for s in range(slices):
        t = s / max(slices - 1, 1)                        # 0 base .. 1 apex
        lv_radius = (15.0 - 8.0 * t) * rng.uniform(0.95, 1.05)
        wall = rng.uniform(5.0, 7.0)
        c = centre + rng.normal(0, 0.7, 2) + np.array([0, 3 * t])
        stretch = rng.uniform(0.9, 1.1)
        r = np.hypot((yy - c[0]) * stretch, (xx - c[1]) / stretch)
        label = np.zeros((size, size), np.uint8)
        label[r <= lv_radius + wall] = CARDIAC_LABELS["Myo"]
        label[r <= lv_radius] = CARDIAC_LABELS["LV"]
        if t < 0.85:                                   # the RV ends before the apex
            rv_centre = c + np.array([-2.0, -(lv_radius + wall) * 0.9])
            rv = np.hypot((yy - rv_centre[0]) / 1.25, xx - rv_centre[1]) <= (lv_radius + wall) * (1.0 - 0.5 * t)
            label[rv & (r > lv_radius + wall + 1.5)] = CARDIAC_LABELS["RV"]
        body = np.hypot((yy - size / 2) / 0.8, xx - size / 2) < size * 0.47
        lungs = body & (np.hypot((yy - size * 0.45) / 1.6, np.abs(xx - size / 2) - size * 0.3) < size * 0.12)
        image = np.where(body, 0.35, 0.02) + smooth_field((size, size), rng, 6, 0.08)
        image[lungs] = 0.06
        image[label == CARDIAC_LABELS["Myo"]] = 0.28
        image[(label == CARDIAC_LABELS["LV"]) | (label == CARDIAC_LABELS["RV"])] = 0.9
        image = ndimage.gaussian_filter(image, 0.8)
        noise = rng.normal(0, 0.03, (2, size, size))
        images.append(np.hypot(image + noise[0], noise[1]))   # Rician magnitude noise
        labels.append(label)
    geometry = random_geometry(rng, (8.0, 1.4, 1.4))
    return LabelledVolume(Volume(np.stack(images).astype(np.float32), geometry),
                          np.stack(labels), dict(CARDIAC_LABELS))
