"""Shared fixtures: volumes with the geometry that breaks naive code (oblique direction,
anisotropic spacing, non-zero origin) and small synthetic cases."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "InteractiveVesselSeg"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PromptEngines.data.synthetic.cta import vessel_volume  # noqa: E402
from PromptEngines.data.synthetic.geometry import random_rotation  # noqa: E402
from PromptEngines.data.volume import Volume, geometry_matrix  # noqa: E402


@pytest.fixture
def oblique_matrix():
    """IJK-to-RAS: rotated ~20 degrees, spacing (z 2.5, y 0.7, x 0.9) mm, origin far away."""
    rotation = random_rotation(np.random.default_rng(11), 18.0, 22.0)
    return geometry_matrix((2.5, 0.7, 0.9), (-87.5, 112.25, -40.0), rotation)


@pytest.fixture
def oblique_volume(oblique_matrix):
    rng = np.random.default_rng(5)
    return Volume(rng.normal(size=(7, 11, 13)).astype(np.float32), oblique_matrix)


@pytest.fixture(scope="session")
def vessel_case():
    return vessel_volume(seed=1001, shape=(64, 96, 96))
