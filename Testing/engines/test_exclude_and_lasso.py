"""Two prompts of the panel's gestures, engine side: the lasso (a closed curve on one slice,
filled) and the exclude step (other segments: never this structure), recorded and replayed
through prompts files; bad input refused with the mask kept."""
import numpy as np
import pytest

from PromptEngines.annotation import Annotation
from PromptEngines.data.lasso_area import lasso_area
from PromptEngines.data.segmentation_file import write_mask
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.errors import PromptError
from PromptEngines.prompts import ExcludeMask, Lasso, Point, PromptSequence, Reset, Undo
from PromptEngines.registry import get_engine


def ring(centre, radius, normal_axis=0, count=32):
    """Index points of a circle around `centre` in the plane across `normal_axis`."""
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    others = [a for a in range(3) if a != normal_axis]
    points = np.repeat(np.asarray(centre, float)[None], count, axis=0)
    points[:, others[0]] += radius * np.cos(angles)
    points[:, others[1]] += radius * np.sin(angles)
    return points


def test_a_lasso_fills_its_circle_on_its_slice_in_any_orientation():
    for axis in range(3):
        area = lasso_area(ring((10, 12, 14), 6.0, axis), (20, 24, 28))
        assert abs(area.sum() - np.pi * 36) < 0.12 * np.pi * 36
        assert np.unique(np.nonzero(area)[axis]).tolist() == [(10, 12, 14)[axis]]
    # An oblique plane: every voxel the plane passes through inside the circle, no other.
    normal = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    u, v = np.array([1.0, -1.0, 0.0]) / np.sqrt(2), np.array([0.0, 0.0, 1.0])
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    centre = np.array([15.0, 15.0, 15.0])
    points = centre + 7 * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    area = lasso_area(points, (30, 30, 30))
    voxels = np.argwhere(area) - centre
    assert np.abs(voxels @ normal).max() <= 0.5 * np.abs(normal).sum() + 1e-9
    assert np.linalg.norm(voxels - np.outer(voxels @ normal, normal), axis=1).max() <= 7.0
    assert area.sum() > np.pi * 49                 # the digital plane is at least one voxel thick
    with pytest.raises(PromptError, match="encloses no area"):
        lasso_area([(1, 1, 1), (2, 2, 2), (3, 3, 3)], (8, 8, 8))


def test_lasso_steps_fill_and_erase_with_regiongrow_and_replay(tmp_path):
    case = vessel_volume(1008, shape=(48, 72, 72))
    annotation = Annotation(case.volume, get_engine("regiongrow"))
    z, y, x = case.seed_index
    outline = [case.volume.index_to_ras(p) for p in ring((z, y, x), 5.0)]
    inner = [case.volume.index_to_ras(p) for p in ring((z, y, x), 2.0)]
    filled = annotation.apply(Lasso(outline, 1)).copy()
    expected = lasso_area([case.volume.ras_to_index(p) for p in outline], case.volume.shape)
    np.testing.assert_array_equal(filled > 0, expected)
    erased = annotation.apply(Lasso(inner, 0)).copy()
    assert 0 < erased.sum() < filled.sum() and not (erased & ~filled).any()
    grown = annotation.apply(Point(case.seed_ras)).copy()      # later prompts keep both
    hole = lasso_area([case.volume.ras_to_index(p) for p in inner], case.volume.shape)
    assert not grown[hole].any() and grown[expected & ~hole].all() and grown.sum() > filled.sum()
    path = tmp_path / "lasso.prompts.json"
    annotation.finish().save(path)
    again = Annotation(case.volume, get_engine("regiongrow"))
    np.testing.assert_array_equal(again.replay(PromptSequence.load(path), tmp_path), grown)
    # Bad lassos: off the volume, on a line: refused, the mask kept.
    for bad, message in (([(900.0, 0, 0), (901.0, 1, 0), (900.0, 2, 3)], "outside"),
                         ([case.seed_ras] * 3, "encloses no area")):
        with pytest.raises(PromptError, match=message):
            annotation.apply(Lasso(bad, 1))
        np.testing.assert_array_equal(annotation.mask, grown)


@pytest.mark.parametrize("name", ["regiongrow", "tracer3d"])
def test_excluded_voxels_are_never_taken_and_undo_lifts_the_exclusion(name, tmp_path):
    from PromptEngines.registry import descriptor

    if not descriptor(name).ready():
        pytest.skip(f"{name} has no weights here")
    case = vessel_volume(1008, shape=(48, 72, 72))
    annotation = Annotation(case.volume, get_engine(name))
    whole = annotation.apply(Point(case.seed_ras)).copy()
    z = case.seed_index[0]
    other = np.zeros_like(whole)
    other[z + 6:] = whole[z + 6:]                    # a part of the tree, finished before
    assert other.sum() > 200
    cut = annotation.apply(ExcludeMask(other, path="other.seg.nrrd")).copy()
    np.testing.assert_array_equal(cut, whole & (other == 0))   # taken out at once
    annotation.apply(Reset())
    again = annotation.apply(Point(case.seed_ras)).copy()
    assert not (again & other).any()
    overlap = (again > 0).sum() / max(((whole > 0) & (other == 0)).sum(), 1)
    assert overlap > 0.9                             # the rest of the tree is still traced
    # A click on the excluded part is refused with one clear line; the mask is kept.
    inside = tuple(np.argwhere(other)[len(np.argwhere(other)) // 2])
    with pytest.raises(PromptError, match="another segment"):
        annotation.apply(Point(case.volume.index_to_ras(inside)))
    np.testing.assert_array_equal(annotation.mask, again)
    # The exclude step is recorded with its file and replays bit for bit.
    write_mask(tmp_path / "other.seg.nrrd", other, case.volume.ijk_to_ras)
    path = tmp_path / "excluded.prompts.json"
    annotation.finish().save(path)
    assert [s.kind for s in PromptSequence.load(path).steps] == ["point", "exclude", "reset",
                                                                  "point"]
    replayed = Annotation(case.volume, get_engine(name)).replay(PromptSequence.load(path),
                                                                 tmp_path)
    np.testing.assert_array_equal(replayed, again)
    # Undo back past the exclude step: the exclusion is lifted with it.
    for _ in range(3):
        annotation.apply(Undo())
    assert annotation.engine.excluded is None
    np.testing.assert_array_equal(annotation.mask, whole)


def test_an_exclude_step_of_the_wrong_shape_is_refused():
    case = vessel_volume(1008, shape=(48, 72, 72))
    annotation = Annotation(case.volume, get_engine("regiongrow"))
    kept = annotation.apply(Point(case.seed_ras)).copy()
    with pytest.raises(PromptError, match="excluded region has shape"):
        annotation.apply(ExcludeMask(np.zeros((4, 4, 4), np.uint8), path="x.seg.nrrd"))
    np.testing.assert_array_equal(annotation.mask, kept)
    assert [s.kind for s in annotation.sequence.steps] == ["point"]
