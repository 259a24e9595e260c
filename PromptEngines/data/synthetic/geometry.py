"""Random scanner geometry shared by the synthetic generators: rotations and ijk-to-RAS."""
from __future__ import annotations

import numpy as np

from ..volume import geometry_matrix
from .tubes import unit


def random_rotation(rng: np.random.Generator, min_deg=10.0, max_deg=25.0) -> np.ndarray:
    """A rotation by a random angle in [min_deg, max_deg] about a random axis (Rodrigues)."""
    axis = unit(rng.normal(size=3))
    angle = np.deg2rad(rng.uniform(min_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def random_geometry(rng, spacing_zyx, oblique=True) -> np.ndarray:
    directions = random_rotation(rng) if oblique else np.eye(3)
    origin = rng.uniform(-120, 120, size=3) if oblique else np.zeros(3)
    return geometry_matrix(spacing_zyx, origin, directions)
