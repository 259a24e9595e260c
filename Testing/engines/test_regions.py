"""Region geometry: the box-cropped deepest point and pieces equal the whole-array ones."""
import numpy as np
import pytest
from scipy import ndimage

from PromptEngines.data.regions import (bounding_box, deepest_point, full_structure,
                                        inner_distance, pieces_in_box)


def _deepest_over_whole_array(region, spacing=None):
    """The definition, over the whole array: deepest voxel, ties to the nearest centroid."""
    depth = inner_distance(region, spacing)
    deepest = np.argwhere(depth >= depth.max() - 1e-6)
    scale = np.ones(region.ndim) if spacing is None else np.asarray(spacing, float)
    offsets = (deepest - deepest.mean(axis=0)) * scale
    return tuple(int(p) for p in deepest[int(np.argmin((offsets ** 2).sum(axis=1)))])


@pytest.mark.parametrize("ndim", [2, 3])
def test_deepest_point_equals_whole_array_definition(ndim):
    rng = np.random.default_rng(ndim)
    for case in range(400):
        shape = tuple(int(s) for s in rng.integers(3, 24, ndim))
        region = ndimage.binary_dilation(rng.random(shape) < rng.uniform(0.003, 0.2),
                                         iterations=int(rng.integers(0, 3)))
        spacing = None if case % 2 else tuple(rng.uniform(0.3, 3.0, ndim))
        assert deepest_point(region, spacing) == _deepest_over_whole_array(region, spacing)


def test_deepest_point_of_a_region_on_the_border_and_of_an_empty_one():
    region = np.zeros((40, 40), bool)
    region[0:3, 10:30] = True                       # the array's edge counts as outside
    assert deepest_point(region) == (1, 19)
    empty = np.zeros((5, 7), bool)
    assert deepest_point(empty) == _deepest_over_whole_array(empty) == (2, 3)


def test_bounding_box():
    region = np.zeros((10, 12), bool)
    region[3, 4] = region[6, 9] = True
    assert bounding_box(region) == (slice(3, 7), slice(4, 10))
    assert bounding_box(region, margin=4) == (slice(0, 10), slice(0, 12))
    assert bounding_box(np.zeros((4, 5), bool)) == (slice(0, 4), slice(0, 5))


def test_pieces_in_box_are_the_whole_arrays_pieces_in_the_same_order():
    rng = np.random.default_rng(7)
    for _ in range(200):
        mask = rng.random((int(rng.integers(2, 30)), int(rng.integers(2, 30)))) < rng.uniform(0, 0.3)
        whole, whole_count = ndimage.label(mask, full_structure(2))
        pieces, count, box = pieces_in_box(mask)
        assert count == whole_count
        outside = whole.copy()
        outside[box] = 0
        assert np.array_equal(pieces, whole[box]) and not outside.any()
