"""One rule for "this array lies on that volume's voxel grid" (training labels, recorded
sessions, mask prompts all use it)."""
import numpy as np

from PromptEngines.data.volume import Volume, grid_mismatch


def test_grid_mismatch_names_shape_or_geometry():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([0.7, 0.7, 2.5])
    matrix[:3, 3] = (-120.0, 35.5, 410.0)
    volume = Volume(np.zeros((6, 8, 9), np.float32), matrix)
    assert grid_mismatch((6, 8, 9), matrix, volume) is None
    assert grid_mismatch((6, 8, 9), matrix + 1e-4, volume) is None          # rounding in a header
    assert grid_mismatch((6, 9, 8), matrix, volume) == "shape (6, 9, 8) vs (6, 8, 9)"
    shifted = matrix.copy()
    shifted[1, 3] += 0.5
    assert grid_mismatch((6, 8, 9), shifted, volume) == "IJK-to-RAS differs by up to 0.5 mm"
