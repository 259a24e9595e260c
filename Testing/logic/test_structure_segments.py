"""Structure buttons put each structure in a segment of its own (the logic, headless on
slicer-core, verse's tiny model biased to answer "everywhere"): the segment of the
structure's name is found (case-insensitive) or made in the structure's standard colour and
becomes the current one; other segments keep their voxels; with the option off the structure
goes into the current segment, as before."""
import numpy as np
import pytest

from InteractiveVesselSegLib import recorder
from InteractiveVesselSegLib.logic import VesselSegLogic
from InteractiveVesselSegLib.mrml_volume import add_volume_node, image_array
from InteractiveVesselSegLib.structure_segments import STRUCTURE_COLOURS
from PromptEngines.data.synthetic.cardiac import cardiac_volume
from PromptEngines.errors import IVSegError
from slicer_scene import new_scene
from verse_weights import biased_weights

VOXELS = 4 * 64 * 64                     # the whole stack: what "everywhere" fills


@pytest.fixture(scope="module")
def everywhere(tmp_path_factory):
    return biased_weights(tmp_path_factory.mktemp("verse"), 50.0)


@pytest.fixture
def cine(everywhere):
    """A short-axis stack, a segmentation whose current segment is "vessel", verse chosen."""
    scene = new_scene()
    volume = add_volume_node(scene, cardiac_volume(1000, slices=4, size=64).volume, "cine")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "heart")
    vessel = segmentation.GetSegmentation().AddEmptySegment("vessel", "vessel")
    logic = VesselSegLogic()
    logic.set_engine("verse", str(everywhere))
    logic.set_inputs(volume, segmentation, vessel)
    yield logic, segmentation, vessel
    logic.close()


def press(logic, structure):
    logic.segment_structure(structure)
    logic.session.wait()


def segments(segmentation) -> dict[str, str]:
    """Segment name -> ID, in the segmentation's order."""
    found = segmentation.GetSegmentation()
    return {found.GetNthSegment(i).GetName(): found.GetNthSegmentID(i)
            for i in range(found.GetNumberOfSegments())}


def colour(segmentation, segment_id):
    return segmentation.GetSegmentation().GetSegment(segment_id).GetColor()


def labelmap(segmentation, segment_id):
    """The segment's layer as stored (label values included): a copy."""
    return image_array(segmentation.GetBinaryLabelmapInternalRepresentation(segment_id)).copy()


def voxels(logic, segment_id) -> int:
    return int(logic.session.writer.read(segment_id).sum())


def steps(sequence):
    return [(step.kind, getattr(step, "target", None)) for step in sequence.steps]


def test_each_structure_fills_a_segment_of_its_own_in_its_colour(cine):
    logic, segmentation, vessel = cine
    press(logic, "LV")
    lv = logic.segment_id
    assert list(segments(segmentation)) == ["vessel", "LV"] and segments(segmentation)["LV"] == lv
    assert colour(segmentation, lv) == pytest.approx([c / 255 for c in STRUCTURE_COLOURS["LV"]])
    assert voxels(logic, lv) == VOXELS and voxels(logic, vessel) == 0
    lv_layer = labelmap(segmentation, lv)
    logic.segment_structure("RV")
    with pytest.raises(IVSegError, match="still working"):      # RV's job is not done yet
        logic.segment_structure("Myo")
    logic.session.wait()
    rv = logic.segment_id
    assert list(segments(segmentation)) == ["vessel", "LV", "RV"] and rv != lv
    assert colour(segmentation, rv) == pytest.approx([c / 255 for c in STRUCTURE_COLOURS["RV"]])
    assert voxels(logic, rv) == VOXELS and voxels(logic, vessel) == 0
    np.testing.assert_array_equal(labelmap(segmentation, lv), lv_layer)    # LV untouched
    for segment_id, structure in ((lv, "LV"), (rv, "RV")):     # each filled by its own Auto
        assert steps(recorder.load(segmentation, segment_id)) == [("auto", structure)]


def test_a_structure_finds_its_segment_again_by_name_whatever_the_case(cine):
    logic, segmentation, vessel = cine
    users = segmentation.GetSegmentation().AddEmptySegment("mine", "lv", (0.1, 0.2, 0.3))
    press(logic, "LV")
    assert logic.segment_id == users and list(segments(segmentation)) == ["vessel", "lv"]
    assert colour(segmentation, users) == pytest.approx([0.1, 0.2, 0.3])     # the user's own
    press(logic, "RV")
    press(logic, "LV")
    assert logic.segment_id == users and list(segments(segmentation)) == ["vessel", "lv", "RV"]
    assert voxels(logic, users) == VOXELS
    # The session that came back to it took up the segment as it was, then did LV again.
    assert steps(logic.recorded()) == [("mask", None), ("auto", "LV")]


def test_with_the_option_off_the_structure_goes_into_the_current_segment(cine):
    logic, segmentation, vessel = cine
    logic.structures_to_own_segments = False
    press(logic, "Myo")
    assert logic.segment_id == vessel and list(segments(segmentation)) == ["vessel"]
    assert voxels(logic, vessel) == VOXELS
    assert steps(logic.recorded()) == [("auto", "Myo")]
    # On again: the new segment joins the filled one's labelmap layer (as Slicer adds
    # segments), yet starts empty: no mask step takes the other's voxels up as its own.
    logic.structures_to_own_segments = True
    press(logic, "LV")
    assert steps(logic.recorded()) == [("auto", "LV")]
    assert voxels(logic, vessel) == VOXELS


def test_without_a_volume_no_segment_is_made(cine):
    logic, segmentation, vessel = cine
    logic.set_inputs(None, segmentation, vessel)
    with pytest.raises(IVSegError, match="select an input volume first"):
        logic.segment_structure("LV")
    assert list(segments(segmentation)) == ["vessel"] and logic.segment_id == vessel


def test_in_manual_mode_waiting_prompts_are_never_dropped_by_a_structure(cine):
    """Manual mode keeps prompts until Run: a structure button that would leave the segment
    refuses (saying why) instead of dropping them; the structure's own segment takes it."""
    logic, segmentation, vessel = cine
    logic.manual = True
    centre = cardiac_volume(1000, slices=4, size=64).volume.index_to_ras((2.0, 32.0, 32.0))
    logic.add_point(tuple(centre), positive=True)
    with pytest.raises(IVSegError, match=r"1 prompt\(s\) wait for this segment: Run them"):
        logic.segment_structure("LV")
    assert len(logic.waiting) == 1 and logic.segment_id == vessel
    assert list(segments(segmentation)) == ["vessel"]
    logic.run_waiting()
    logic.session.wait()
    logic.segment_structure("LV")                    # nothing waits now: LV's own segment
    assert logic.segment_id == segments(segmentation)["LV"] and len(logic.waiting) == 1
    logic.segment_structure("LV")                    # the same segment: kept, no refusal
    assert len(logic.waiting) == 2
