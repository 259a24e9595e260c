"""Synthetic short-axis cardiac cine MRI stacks (LV, myocardium, RV), deterministic by seed.

Each case draws a heart (`cardiac_shapes`: ACDC's pathology groups, ED or ES, papillary
muscles, basal outflow gap, apical cap), its surroundings (body, fat, lungs, liver, stomach,
spine, aorta and pulmonary artery as unlabelled bright distractors) and how it was imaged
(contrast, surface-coil shading, blur, Rician noise, breath-hold intensity jumps and
misregistration, in-plane rotation or mirroring, spacing).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .cardiac_shapes import LV, MYO, RV, Heart, bump, heart_slice, random_heart
from .geometry import random_geometry
from .labelled_volume import LabelledVolume
from .tubes import smooth_field

CARDIAC_LABELS = {"RV": RV, "Myo": MYO, "LV": LV}     # ACDC's label values


def _ellipse(u, v, centre, axes, angle=0.0):
    """Normalised elliptic radius: < 1 inside."""
    du, dv = u - centre[0], v - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    return np.hypot((c * du + s * dv) / axes[0], (c * dv - s * du) / axes[1])


def _look(rng) -> dict:
    """Tissue intensities of one scan: the blood/myocardium contrast varies widely."""
    blood = rng.uniform(0.6, 1.0)
    myo = rng.uniform(0.15, min(0.4, blood - 0.25))
    return dict(blood=blood, myo=myo, tissue=myo + rng.uniform(0.2, 0.45) * (blood - myo),
                muscle=myo * rng.uniform(0.9, 1.3), fat=rng.uniform(0.55, 1.1),
                lung=rng.uniform(0.01, 0.08), liver=rng.uniform(0.25, 0.5),
                stomach=rng.uniform(0.1, 0.9), spine=rng.uniform(0.25, 0.5),
                rv_blood=blood * rng.uniform(0.85, 1.05), vessel=blood * rng.uniform(0.8, 1.1),
                rv_wall=myo * rng.uniform(0.9, 1.3), flow=rng.uniform(0.03, 0.12),
                apex_dim=rng.uniform(0.0, 0.2))


def _scene(rng, heart: Heart) -> dict:
    """Surroundings in the canonical frame, mm from the basal LV centre (None: absent)."""
    epi = heart.radius + heart.wall
    aorta = (rng.uniform(-10, 30), epi + rng.uniform(20, 40))
    return dict(
        body=((rng.uniform(-40, -10), rng.uniform(10, 40)),
              (rng.uniform(125, 170), rng.uniform(90, 125)), rng.uniform(-0.25, 0.25)),
        fat=rng.uniform(4, 18) if rng.random() < 0.75 else 0.0, muscle=rng.uniform(5, 15),
        lungs=[((side, rng.uniform(-10, 20)), (rng.uniform(25, 40), rng.uniform(50, 75)),
                rng.uniform(-0.4, 0.4)) for side in (epi + rng.uniform(25, 45),
                                                    -(epi + heart.rv_depth + rng.uniform(30, 50)))],
        liver=((rng.uniform(-70, -30), epi + rng.uniform(30, 50)),
               (rng.uniform(55, 80), rng.uniform(35, 55)),
               rng.uniform(0.2, 0.9)) if rng.random() < 0.75 else None,
        stomach=((rng.uniform(20, 60), epi + rng.uniform(30, 50)),
                 (rng.uniform(25, 40), rng.uniform(20, 30)),
                 rng.uniform(0.3, 0.9)) if rng.random() < 0.35 else None,
        aorta=(aorta, rng.uniform(9, 13)) if rng.random() < 0.85 else None,
        spine=((aorta[0] - rng.uniform(20, 35), aorta[1] + rng.uniform(10, 20)),
               rng.uniform(14, 18)),
        # Aortic root beside the outflow tract, pulmonary artery beyond the RV, at the base.
        great=(rng.uniform(0.05, 0.3), [
            (heart.rv_angle + heart.rv_wrap + rng.uniform(0.1, 0.6), epi + rng.uniform(12, 22),
             rng.uniform(11, 15)),
            (heart.rv_angle + heart.rv_wrap * rng.uniform(0.3, 0.8),
             epi + heart.rv_depth + rng.uniform(12, 20), rng.uniform(10, 14))])
        if rng.random() < 0.7 else None,
        # Fat around the epicardium, thicker in the grooves: the outer edge of the muscle.
        epicardial_fat=(rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.5), rng.uniform(0.5, 2),
                        rng.uniform(2, 6)) if rng.random() < 0.85 else None,
        # Vessels, fat and bowel around: blobs drifting from slice to slice.
        clutter=[((rng.uniform(-110, 90), rng.uniform(-90, 110)), rng.normal(0, 10, 2),
                  rng.uniform(3, 12, 2), rng.uniform(-np.pi, np.pi), rng.uniform(0.05, 0.9))
                 for _ in range(rng.integers(4, 13))])


def _paint(scene, look, heart, u, v, rough, shift, t):
    """One slice's image, labels and blood pools; u, v: mm from the basal LV centre."""
    image = np.zeros(u.shape)
    hu, hv = u - shift[0], v - shift[1]
    body = _ellipse(u, v, *scene["body"]) + 0.03 * rough
    inner = body * (1 + scene["fat"] / np.mean(scene["body"][1]))
    image[body < 1] = look["fat"]
    image[inner < 1] = look["muscle"]
    image[inner * (1 + scene["muscle"] / np.mean(scene["body"][1])) < 1] = look["tissue"]
    for centre, axes, angle in scene["lungs"]:
        lung = _ellipse(u, v, centre, axes, angle) + 0.2 * rough
        image[(lung < 1) & (inner < 0.95)] = look["lung"]
    for organ in ("liver", "stomach"):
        if scene[organ] is not None and t >= scene[organ][2]:
            grow = min(1.0, 0.4 + (t - scene[organ][2]) / 0.3)     # rises from below
            centre = (scene[organ][0][0], scene[organ][0][1] - 25 * t)
            extent = _ellipse(u, v, centre, np.multiply(scene[organ][1], grow)) + 0.1 * rough
            image[extent < 1] = look[organ]
    for centre, drift, axes, angle, value in scene["clutter"]:
        image[(_ellipse(u, v, centre + drift * t, axes, angle) < 1) & (inner < 1)] = value
    image[_ellipse(u, v, scene["spine"][0], [scene["spine"][1]] * 2) < 1] = look["spine"]
    if scene["aorta"] is not None:
        image[_ellipse(u, v, scene["aorta"][0], [scene["aorta"][1]] * 2) < 1] = look["vessel"]
    if scene["great"] is not None and t <= scene["great"][0]:
        for angle, distance, radius in scene["great"][1]:
            centre = distance * np.array([np.cos(angle), np.sin(angle)])
            image[_ellipse(hu, hv, centre, (radius, radius)) < 1] = look["vessel"]
    cut = heart_slice(heart, hu, hv, t)
    if scene["epicardial_fat"] is not None:
        angle, half_width, layer, groove = scene["epicardial_fat"]
        reach = layer + groove * bump(np.arctan2(hv, hu), angle, half_width)
        image[(cut.beyond > 0) & (cut.beyond < reach)] = look["fat"]
    dim = 1 - look["apex_dim"] * t                          # slower flow near the apex
    image[cut.rv_wall] = look["rv_wall"]
    image[cut.label == MYO] = look["myo"]
    image[cut.outflow | (cut.label == LV)] = look["blood"] * dim
    image[cut.label == RV] = look["rv_blood"] * dim
    image[cut.muscle] = look["myo"]
    blood = (cut.label == LV) | (cut.label == RV) | cut.outflow
    return image, cut.label, blood & ~cut.muscle


def cardiac_volume(seed: int = 0, slices: int = 10, size: int = 128) -> LabelledVolume:
    """Short-axis stack, base to apex: bright blood pools, dark myocardium, dark lungs."""
    rng = np.random.default_rng(seed)
    spacing, thickness = rng.uniform(1.2, 2.0), rng.uniform(5.0, 10.0)
    heart = random_heart(rng)
    look, scene = _look(rng), _scene(rng, heart)
    # A random in-plane rotation (any angle now and then) and mirroring of the canonical frame.
    angle = rng.uniform(-0.6, 0.6) if rng.random() < 0.7 else rng.uniform(-np.pi, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    frame = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if rng.random() < 0.25 else 1.0, 1.0])
    # The LV sits off-centre so that LV and RV together are centred in the field of view.
    rv_direction = np.array([np.cos(heart.rv_angle), np.sin(heart.rv_angle)])
    lv_at = -frame.T @ (heart.rv_depth / 2 * rv_direction) + rng.normal(0, 4, 2)
    y, x = (np.indices((size, size)) - (size - 1) / 2) * spacing
    u = frame[0, 0] * (x - lv_at[0]) + frame[0, 1] * (y - lv_at[1])
    v = frame[1, 0] * (x - lv_at[0]) + frame[1, 1] * (y - lv_at[1])
    # The long axis is oblique to the slices; breath-holds misregister slices a little.
    drift = rng.normal(0, 5, 2)
    shifts = rng.normal(0, rng.uniform(0, 1.5), (slices, 2))
    if rng.random() < 0.25:
        shifts[rng.integers(slices)] += rng.uniform(2, 4) * rng.choice([-1, 1], 2)
    texture = [smooth_field((size, size), rng, 15 / spacing) for _ in range(2)]
    rough = smooth_field((size, size), rng, 10 / spacing)
    grain = smooth_field((size, size), rng, 2 / spacing)
    flow = smooth_field((size, size), rng, 8 / spacing, look["flow"])
    images, labels = [], []
    for index in range(slices):
        t = index / max(slices - 1, 1)                   # 0 base .. 1 apex
        shift = drift * t + shifts[index]
        image, label, blood = _paint(scene, look, heart, u, v, rough, shift, t)
        image *= 1 + 0.08 * ((1 - t) * texture[0] + t * texture[1]) + 0.06 * grain
        image[blood] *= 1 + flow[blood]      # inflow and turbulence
        images.append(image)
        labels.append(label)
    images = ndimage.gaussian_filter(np.stack(images), (0, *[rng.uniform(0.4, 1.0)] * 2))
    # Surface coil: brighter towards one side, about 1 at the heart.
    coil = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(coil) * (x - lv_at[0]) + np.sin(coil) * (y - lv_at[1])) / (size * spacing / 2)
    bias = np.exp(rng.uniform(0.2, 0.8) * ramp
                  + smooth_field((size, size), rng, 60 / spacing, rng.uniform(0.05, 0.2)))
    gains = 1 + (rng.random() < 0.35) * np.clip(rng.normal(0, 0.08, slices), -0.2, 0.2)
    images *= bias * gains[:, None, None]
    images /= max(1.0, np.percentile(images, 99.5) / 1.2)
    sigma = rng.uniform(0.01, 0.06)
    noise = rng.normal(0, sigma, (2, *images.shape))
    images = np.clip(np.hypot(images + noise[0], noise[1]), 0, 1.5)   # Rician magnitude
    geometry = random_geometry(rng, (thickness, spacing, spacing))
    return LabelledVolume(Volume(images.astype(np.float32), geometry),
                          np.stack(labels), dict(CARDIAC_LABELS))
