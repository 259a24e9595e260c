"""The tracker's logic with a threshold 'model' on clean CTA (uniform contrast, where a
threshold is a fair slice model): both directions from the click, every bifurcation, the
branch that turns back along z, in-plane runs, and no jump to the unconnected neighbour."""
import numpy as np
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.errors import PromptError
from PromptEngines.evaluation import metrics
from PromptEngines.tracer3d.normalise import normalised_volume
from PromptEngines.tracer3d.tracking import SliceTracer, TraceOptions
from oracle_slice_model import ThresholdSliceModel


def trace(case, options=TraceOptions(use_offset=False, use_refine=False), model=None):
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    tracer = SliceTracer(model or ThresholdSliceModel(), volume, options)
    mask = np.zeros(case.volume.shape, bool)
    results = []
    for result in tracer.trace(case.seed_index[1:], case.seed_index[0]):
        mask[result.z, result.rows, result.cols] |= result.mask
        results.append(result)
    return mask, results


def centreline_voxels(case, role):
    """Voxels on the centreline of the tree's branches with this role (inside the volume)."""
    spacing = np.asarray(case.volume.spacing_zyx)
    points = np.concatenate([b.points for b in case.branches if b.role == role])
    voxels = np.unique(np.round(points / spacing).astype(int), axis=0)
    inside = np.all((voxels >= 0) & (voxels < case.volume.shape), axis=1)
    return voxels[inside]


@pytest.mark.parametrize("seed", [1000, 1001, 1005])
def test_whole_tree_from_one_click_without_the_neighbour(seed):
    case = vessel_volume(seed, realism="clean")
    mask, results = trace(case)
    assert metrics.cldice(mask, case.label) > 0.95
    assert metrics.dice(mask, case.label) > 0.85
    assert metrics.components(mask) == 1
    assert metrics.fraction_on(mask, case.distractor) == 0.0
    # Both directions from the clicked slice.
    zs = {r.z for r in results}
    assert min(zs) < case.seed_index[0] < max(zs)


@pytest.mark.parametrize("seed", [1000, 1001, 1005])
def test_the_branch_that_turns_back_is_followed(seed):
    case = vessel_volume(seed, realism="clean")
    mask, _ = trace(case)
    from scipy import ndimage
    near = ndimage.binary_dilation(mask)          # within one voxel of the traced mask
    centreline = centreline_voxels(case, "turnback")
    assert len(centreline) > 10
    followed = near[tuple(centreline.T)].mean()
    assert followed > 0.95


def test_tile_grid_of_the_paper_configuration_traces_the_whole_tree():
    # SAM's tiles: 256 pixels on a 128-pixel grid. The tile nearest the point must hold it
    # well inside (a tile chosen by rounding down put it up to its very edge, and the
    # branches it cut off were lost).
    model = ThresholdSliceModel()
    model.crop, model.stride = 256, 128
    case = vessel_volume(1000, realism="clean", shape=(64, 256, 256))
    mask, _ = trace(case, model=model)
    assert metrics.cldice(mask, case.label) > 0.95
    assert metrics.dice(mask, case.label) > 0.85


@pytest.mark.parametrize("crop, stride", [(64, 16), (256, 128)])
def test_the_point_is_within_half_a_grid_step_of_its_tiles_centre(crop, stride):
    model = ThresholdSliceModel()
    model.crop, model.stride = crop, stride
    tracer = SliceTracer(model, np.zeros((3, 300, 200), np.float32))
    for point in np.random.default_rng(0).uniform(-5, 305, (500, 2)):
        local = point + tracer.pad - np.asarray(tracer._origin(point))
        assert np.all(np.abs(local - crop / 2) <= stride / 2)


def test_updates_come_slice_by_slice_in_order_of_discovery():
    case = vessel_volume(1002, realism="clean")
    _, results = trace(case)
    assert len(results) > 40
    assert results[0].z == case.seed_index[0]
    assert all(r.mask.any() for r in results)
    assert all(r.mask.shape == (r.rows.stop - r.rows.start, r.cols.stop - r.cols.start) for r in results)


def test_limits_stop_the_trace_and_keep_what_was_found():
    case = vessel_volume(1002, realism="clean")
    mask, results = trace(case, TraceOptions(use_offset=False, use_refine=False, max_slices=10))
    assert len(results) == 10 and 0 < mask.sum() < case.label.sum()


def test_click_beside_the_vessel_is_refused():
    case = vessel_volume(1002, realism="clean")
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    tracer = SliceTracer(ThresholdSliceModel(), volume, TraceOptions())
    background = np.argwhere(volume[case.seed_index[0]] < 0.1)[0]
    with pytest.raises(PromptError, match="no vessel at the seed"):
        next(tracer.trace(background, case.seed_index[0]))
