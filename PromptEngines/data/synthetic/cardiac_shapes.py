"""The heart of the synthetic short-axis stacks: LV, myocardium and RV shapes, base to apex.

Shapes are polar curves about the LV centre in millimetres, in a canonical frame (u towards
the lateral wall, v posterior, the RV towards -u), smooth in the slice fraction t (0 base,
1 apex) so that neighbouring slices differ little.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

RV, MYO, LV = 1, 2, 3                                   # ACDC's label values
KINDS = ("normal", "dilated", "hypertrophic", "infarct", "rv")
MIN_WALL = 3.0          # mm: thinner rings leak between pixels at 2 mm spacing


def wrapped(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def bump(angle, centre, half_width):
    """1 at `centre`, falling smoothly to 0 at +-half_width (a raised cosine)."""
    x = np.clip(np.abs(wrapped(angle - centre)) / half_width, 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * x)


@dataclass
class Heart:
    radius: float            # LV endocardial radius at the base, mm
    cavity_end: float        # slice fraction where the LV cavity closes (> 1: it stays open)
    shape: np.ndarray        # harmonics 2..4: amplitude at base, at apex, phase, twist
    wall: float              # mean myocardial thickness, mm
    wall_shape: np.ndarray   # harmonics 1..2 of the thickness: amplitude, phase
    septum: float            # extra septal thickness, mm
    infarct: tuple | None    # angle, half width, thickness factor of a thinned region
    rv_angle: float          # direction of the RV from the LV centre, rad
    rv_wrap: float           # half the RV's angular extent at the base, rad
    rv_depth: float          # RV cavity depth at the base, mm
    rv_end: float            # slice fraction where the RV ends
    rv_skew: float           # moves the RV's deepest point towards one insertion
    rv_wall: float           # RV free wall, unlabelled as in ACDC, mm
    muscles: np.ndarray      # papillary muscles, trabeculae: angle, radius, first, last t
    gap: tuple | None        # angle, half width, last t, reach mm: basal outflow gap


def random_heart(rng: np.random.Generator) -> Heart:
    """ACDC's groups (normal, dilated, hypertrophic, infarct, abnormal RV) at ED or ES."""
    kind = KINDS[rng.choice(5, p=[0.4, 0.15, 0.15, 0.15, 0.15])]
    radius, wall = rng.uniform(22.5, 27.5), rng.uniform(5.0, 10.0)
    septum = rng.uniform(0.0, 3.0) * (rng.random() < 0.5)
    rv_depth, rv_wrap, infarct = rng.uniform(18.0, 32.0), rng.uniform(0.9, 1.5), None
    if kind == "dilated":
        radius, wall = rng.uniform(30.0, 37.0), rng.uniform(4.0, 7.0)
    elif kind == "hypertrophic":
        radius, wall, septum = rng.uniform(17.0, 23.0), rng.uniform(11.0, 16.0), rng.uniform(2, 8)
    elif kind == "infarct":
        radius *= rng.uniform(1.0, 1.2)
        infarct = (rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.6))
    elif kind == "rv":
        rv_depth, rv_wrap = rng.uniform(32.0, 45.0), rng.uniform(1.3, 1.9)
    if rng.random() < 0.5:                        # end-systole: the cavities contract
        squeeze = rng.uniform(0.85, 0.95) if kind == "dilated" else rng.uniform(0.6, 0.8)
        radius, wall = radius * squeeze, wall / squeeze ** 0.8
        rv_depth *= rng.uniform(0.55, 0.8)
    rv_angle = np.pi + rng.uniform(0.1, 0.6)
    shape = np.column_stack([rng.uniform(0, [0.15, 0.05, 0.03]), rng.uniform(0, [0.15, 0.05, 0.03]),
                             rng.uniform(0, 2 * np.pi, 3), rng.uniform(-0.5, 0.5, 3)])
    n_papillary, n_trabeculae = rng.choice(3, p=[0.2, 0.2, 0.6]), rng.integers(0, 7)
    papillary = np.column_stack([
        rv_angle + np.pi + np.array([-1, 1])[:n_papillary] * rng.uniform(0.6, 1.1, n_papillary),
        rng.uniform(3.0, 5.0, n_papillary), rng.uniform(0.05, 0.25, n_papillary),
        rng.uniform(0.6, 0.85, n_papillary)])
    trabeculae = np.column_stack([
        rng.uniform(-np.pi, np.pi, n_trabeculae), rng.uniform(1.0, 2.0, n_trabeculae),
        rng.uniform(0.3, 0.7, n_trabeculae), np.full(n_trabeculae, 2.0)])
    # The basal outflow tract opens the ring next to the RV's anterior insertion.
    gap = (rv_angle + rv_wrap + rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.5),
           rng.uniform(0.0, 0.15), rng.uniform(5.0, 15.0)) if rng.random() < 0.45 else None
    return Heart(radius, rng.uniform(0.85, 1.3), shape, wall,
                 np.column_stack([rng.uniform(0, [0.2, 0.12]), rng.uniform(0, 2 * np.pi, 2)]),
                 septum, infarct, rv_angle, rv_wrap, rv_depth, rng.uniform(0.6, 0.9),
                 rng.uniform(-0.4, 0.4), rng.uniform(2.0, 4.0),
                 np.concatenate([papillary, trabeculae]), gap)


def endocardium(heart: Heart, theta, t: float):
    """LV cavity radius (mm) towards theta; an ellipsoid's profile, 0 past the cavity's end."""
    size = heart.radius * np.sqrt(max(0.0, 1.0 - (t / heart.cavity_end) ** 2))
    shape = 1.0
    for k, (base, apex, phase, twist) in enumerate(heart.shape, start=2):
        shape = shape + (base + (apex - base) * t) * np.cos(k * (theta - phase - twist * t))
    return size * shape


def thickness(heart: Heart, theta, t: float):
    wall = heart.wall * (1.0 + sum(a * np.cos(k * theta - p)
                                   for k, (a, p) in enumerate(heart.wall_shape, start=1)))
    wall = wall + heart.septum * bump(theta, heart.rv_angle, 0.9)
    if heart.infarct is not None:
        angle, half_width, factor = heart.infarct
        wall = wall * (1.0 - (1.0 - factor) * bump(theta, angle, half_width))
    cap = np.clip(1.0 - (t - heart.cavity_end) / 0.5, 0.5, 1.0)    # the apical cap tapers
    return np.maximum(wall * cap, MIN_WALL)


def rv_depth(heart: Heart, theta, t: float):
    """RV cavity depth beyond the epicardium: a crescent narrowing and vanishing to the apex."""
    if t >= heart.rv_end:
        return np.zeros_like(theta)
    left = 1.0 - t / heart.rv_end
    x = np.clip(wrapped(theta - heart.rv_angle) / (heart.rv_wrap * (0.6 + 0.4 * left)), -1, 1)
    return heart.rv_depth * left ** 0.7 * (1 - x * x) ** 0.6 * (1 + heart.rv_skew * x)


class HeartSlice(NamedTuple):
    label: np.ndarray        # uint8, ACDC values
    muscle: np.ndarray       # papillary muscles and trabeculae: dark, but labelled LV
    rv_wall: np.ndarray      # dark, unlabelled
    outflow: np.ndarray      # blood beyond the basal gap, unlabelled
    beyond: np.ndarray       # mm outside the epicardium


def heart_slice(heart: Heart, u: np.ndarray, v: np.ndarray, t: float) -> HeartSlice:
    """Labels and tissue masks of one slice; u, v are mm from this slice's LV centre."""
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    endo = endocardium(heart, theta, t)
    epi = endo + thickness(heart, theta, t)
    opening = np.zeros_like(r)
    if heart.gap is not None and t <= heart.gap[2]:
        opening = bump(theta, heart.gap[0], heart.gap[1])
    depth = rv_depth(heart, theta, t) * (1.0 - opening)
    label = np.zeros(r.shape, np.uint8)
    label[r < epi] = MYO
    # A rounded tongue of blood out through the gap, towards the aortic root.
    outflow = (opening > 0.2) & (r >= endo) & (r < epi + opening * (heart.gap or [0] * 4)[3])
    label[outflow] = 0
    label[r < endo] = LV
    rv = (r >= epi) & (r < epi + depth)
    label[rv] = RV
    rv_wall = (depth > 0) & (r >= epi) & (r < epi + depth + heart.rv_wall) & ~rv
    muscle = np.zeros(r.shape, bool)
    for angle, radius, first, last in heart.muscles:
        reach = endocardium(heart, angle, t)
        if not first <= t <= last or reach < 2.5 * radius:
            continue
        centre = (reach - 0.7 * radius) * np.array([np.cos(angle), np.sin(angle)])
        muscle |= np.hypot(u - centre[0], v - centre[1]) < radius
    return HeartSlice(label, muscle & (label == LV), rv_wall, outflow & ~rv, r - epi)
