"""The structure buttons in the real widget offscreen, with verse on a short-axis stack (an
untrained tiny model, weights given explicitly: arbitrary but deterministic answers): LV,
Myo and RV each fill a segment of their own, in their colour, and the segment selector
follows; a click then corrects its slice live, undo gives the segment back bit for bit, and
the recorded prompts replay to the same mask bit for bit. The option is a checkbox,
remembered like the other settings; off, a structure goes into the current segment."""
from types import SimpleNamespace

import numpy as np
import pytest

from InteractiveVesselSegLib.mrml_volume import image_array, volume_from_node
from InteractiveVesselSegLib.structure_segments import STRUCTURE_COLOURS
from PromptEngines.annotation import Annotation
from PromptEngines.data.synthetic.cardiac import cardiac_volume
from PromptEngines.prompts import PromptSequence
from PromptEngines.verse.engine import VerseEngine
import slicer_standin
from panel_setup import build_panel, settle
from verse_weights import biased_weights

FIRST_CLICK, SECOND_CLICK = (1, 30, 34), (2, 20, 20)       # (z, y, x) voxels


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return biased_weights(tmp_path_factory.mktemp("verse"), 0.0)


@pytest.fixture
def heart(untrained):
    """The panel on a cine stack, verse chosen with the untrained weights; a point placed
    at the first click, not used yet."""
    volume = cardiac_volume(1000, slices=4, size=64).volume
    built = build_panel(SimpleNamespace(volume=volume, seed_ras=volume.index_to_ras(FIRST_CLICK)))
    built.widget.ui.weightsPathLineEdit.setText(str(untrained))
    built.widget.ui.engineComboBox.setCurrentText("verse")
    built.weights = untrained
    yield built
    built.widget.cleanup()


def segment_names(segmentation):
    found = segmentation.GetSegmentation()
    return [found.GetNthSegment(i).GetName() for i in range(found.GetNumberOfSegments())]


def segment_mask(widget, segment_id=None):
    return widget.logic.session.writer.read(segment_id)


def stored_labelmap(built, segment_id):
    """The segment's labelmap as Slicer stores it (label values included): a copy."""
    labelmap = built.segmentation.GetBinaryLabelmapInternalRepresentation(segment_id)
    return image_array(labelmap).copy()


def click(built, voxel):
    """A point placed in a slice view with a point tool armed."""
    volume = volume_from_node(built.volume)
    built.points.AddControlPointWorld(list(volume.index_to_ras(voxel)))
    settle(built.widget, built.application)


def test_each_structure_in_its_own_segment_then_click_undo_and_replay(heart, tmp_path):
    widget, ui, application = heart.widget, heart.widget.ui, heart.application
    assert list(widget.structure_buttons()) == ["LV", "Myo", "RV"]
    assert ui.structureSegmentsCheckBox.isChecked()
    assert not ui.structuresCollapsibleButton.isHidden()
    masks = {}
    for name, button in widget.structure_buttons().items():
        button.click()
        settle(widget, application)
        segment_id = ui.segmentSelector.currentSegmentID()          # the selector follows
        segment = heart.segmentation.GetSegmentation().GetSegment(segment_id)
        assert segment.GetName() == name and widget.logic.segment_id == segment_id
        assert segment.GetColor() == pytest.approx([c / 255 for c in STRUCTURE_COLOURS[name]])
        masks[segment_id] = segment_mask(widget)
        assert masks[segment_id].any() and ui.statusLabel.text() == "1 step recorded"
    assert segment_names(heart.segmentation) == ["vessel", "LV", "Myo", "RV"]
    for segment_id, mask in masks.items():                    # each kept its own structure
        np.testing.assert_array_equal(segment_mask(widget, segment_id), mask)
    lv, _, rv = masks
    assert not np.array_equal(masks[lv], masks[rv])
    # A + point in RV's segment: its slice only, in the segment when the update is shown.
    before = stored_labelmap(heart, rv)
    seen, shown = [], widget.onUpdate
    widget.onUpdate = lambda update: (seen.append((update, segment_mask(widget))), shown(update))
    ui.positivePointButton.click()                  # acts at the point placed before
    settle(widget, application)
    ((update, live),) = seen
    assert update.message == "slice 1: click 1 (Mode 2)"
    clicked = segment_mask(widget)
    np.testing.assert_array_equal(live, clicked)
    assert set(np.argwhere(clicked != masks[rv])[:, 0]) == {FIRST_CLICK[0]}
    ui.undoButton.click()
    settle(widget, application)
    np.testing.assert_array_equal(stored_labelmap(heart, rv), before)
    click(heart, SECOND_CLICK)                      # the + point is still armed
    final = segment_mask(widget)
    recorded = widget.logic.recorded()
    assert [(s.kind, getattr(s, "target", None)) for s in recorded.steps] == \
        [("auto", "RV"), ("point", None), ("undo", None), ("point", None)]
    assert recorded.result_sha256 == widget.logic.session.sequence.result_sha256
    # Replayed: through the panel (export, reset, import), and by a fresh engine.
    path = tmp_path / "rv.prompts.json"
    slicer_standin.FileDialog.next_path = str(path)
    ui.exportButton.click()
    ui.resetButton.click()
    settle(widget, application)
    assert not segment_mask(widget).any()
    ui.importButton.click()
    settle(widget, application)
    np.testing.assert_array_equal(segment_mask(widget), final)
    again = Annotation(volume_from_node(heart.volume), VerseEngine(weights=heart.weights),
                       segment="RV")
    np.testing.assert_array_equal(again.replay(PromptSequence.load(path), tmp_path), final)


def test_the_option_off_fills_the_current_segment_and_is_remembered(heart):
    widget, ui, application = heart.widget, heart.widget.ui, heart.application
    ui.structureSegmentsCheckBox.setChecked(False)
    assert widget.logic.structures_to_own_segments is False
    widget.structure_buttons()["Myo"].click()
    settle(widget, application)
    assert ui.segmentSelector.currentSegmentID() == heart.segment
    assert segment_names(heart.segmentation) == ["vessel"] and segment_mask(widget).any()
    from InteractiveVesselSeg import InteractiveVesselSegWidget
    again = InteractiveVesselSegWidget()              # as after a restart
    try:
        again.setup()
        again.ensure_logic()
        assert not again.ui.structureSegmentsCheckBox.isChecked()
        assert again.logic.structures_to_own_segments is False
        again.ui.resetSettingsButton.click()
        assert again.ui.structureSegmentsCheckBox.isChecked()
        assert again.logic.structures_to_own_segments is True
    finally:
        again.cleanup()
