"""The real InteractiveVesselSegWidget, offscreen on PySide6 over a real MRML scene: every
button is clicked and does its job; errors show as one message; a screenshot is taken."""
import os
import time
from pathlib import Path

import numpy as np
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.evaluation import metrics
from PromptEngines.prompts import TEXT_COMMAND_HELP, TEXT_COMMANDS
from PromptEngines.registry import descriptor
import slicer_standin
from panel_setup import settle
import panel_engines  # noqa: F401  (registers the test engines)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def panel(built_panel):
    built = built_panel
    return (built.widget, built.scene, built.volume, built.segmentation, built.segment,
            built.points, built.application)


def segment_mask(widget):
    return widget.logic.session.writer.read()


def test_trace_point_undo_reset_buttons(panel, case):
    widget, scene, volume, segmentation, segment, points, application = panel
    ui = widget.ui
    ui.traceButton.click()
    settle(widget, application)
    traced = segment_mask(widget)
    assert metrics.dice(traced, case.label) > 0.75     # small clinical-realism volume
    assert "1 step recorded" in ui.statusLabel.text()
    # A negative point on the trunk cuts the tree; undo brings it back; reset clears.
    trunk = case.branches[0].points
    cut = np.round(trunk[len(trunk) // 2] / np.asarray(case.volume.spacing_zyx)).astype(int)
    ui.negativePointButton.click()                    # armed: the next click acts
    assert widget.logic.session.engine.name and len(widget.logic.recorded().steps) == 1
    points.AddControlPointWorld(list(case.volume.index_to_ras(cut)))
    settle(widget, application)
    assert segment_mask(widget).sum() < traced.sum()
    ui.undoButton.click()
    settle(widget, application)
    np.testing.assert_array_equal(segment_mask(widget), traced)
    ui.resetButton.click()
    settle(widget, application)
    assert segment_mask(widget).sum() == 0
    ui.positivePointButton.click()
    points.AddControlPointWorld(list(case.seed_ras))
    settle(widget, application)
    np.testing.assert_array_equal(segment_mask(widget), traced)
    kinds = [s.kind for s in widget.logic.recorded().steps]
    assert kinds == ["point", "point", "undo", "reset", "point"]


def test_tools_an_engine_cannot_take_are_disabled_with_the_reason(panel):
    widget = panel[0]
    ui = widget.ui
    ui.engineComboBox.setCurrentText("slow-painter")
    assert not ui.boxButton.isEnabled() and ui.boxButton.toolTip() == "slow-painter does not take box prompts"
    ui.engineComboBox.setCurrentText("regiongrow")
    assert ui.traceButton.isEnabled() and ui.boxButton.isEnabled()
    # Structure buttons are the engine's own words: regiongrow declares none. Text commands
    # it lends from the correction engine (multimodal), usable once that has its weights.
    assert widget.structure_buttons() == {} and ui.structuresCollapsibleButton.isHidden()
    assert list(widget.text_buttons()) == list(TEXT_COMMANDS)
    button = widget.text_buttons()["remove"]
    if descriptor("multimodal").ready():
        assert button.isEnabled() and button.toolTip().endswith("(multimodal) (key 5)")
    else:
        assert not button.isEnabled() and "multimodal has no trained weights" in button.toolTip()


def test_text_and_structure_buttons_reach_the_engine(panel, case):
    widget, *_, points, application = panel
    ui = widget.ui
    ui.engineComboBox.setCurrentText("all-tools")
    assert list(widget.text_buttons()) == list(TEXT_COMMANDS)        # as the engine declares
    assert list(widget.structure_buttons()) == ["LV", "Myo", "RV"]
    assert widget.text_buttons()["extend"].toolTip() == TEXT_COMMAND_HELP["extend"] + " (key 4)"
    assert not ui.textCollapsibleButton.isHidden()
    order = ["extend", "remove", "make thinner", "make thicker", "make a connection"]
    for index, command in enumerate(order):
        # The first acts at the point placed before (the seed), the others at the next click.
        assert widget.text_buttons()[command].isEnabled()
        widget.text_buttons()[command].click()
        if index:
            points.AddControlPointWorld(list(case.seed_ras))
        settle(widget, application)
    received = widget.logic.session.engine.received
    assert [p.command for p in received] == order
    np.testing.assert_allclose(received[0].position, case.seed_index, atol=1e-6)
    for name, button in widget.structure_buttons().items():    # each in a segment of its own
        assert button.isEnabled()
        button.click()
        settle(widget, application)
        assert [p.target for p in widget.logic.session.engine.received] == [name]


def test_export_and_import_replay(panel, tmp_path):
    widget, *_, application = panel
    widget.ui.traceButton.click()
    settle(widget, application)
    first = segment_mask(widget)
    slicer_standin.FileDialog.next_path = str(tmp_path / "session.prompts.json")
    widget.ui.exportButton.click()
    assert (tmp_path / "session.prompts.json").is_file()
    widget.ui.resetButton.click()
    settle(widget, application)
    widget.ui.importButton.click()
    settle(widget, application)
    np.testing.assert_array_equal(segment_mask(widget), first)


def test_errors_show_one_message_and_keep_the_segment(panel, case):
    widget, scene, volume, segmentation, segment, points, application = panel
    ui = widget.ui
    ui.traceButton.click()
    settle(widget, application)
    kept = segment_mask(widget)
    ui.positivePointButton.click()
    points.AddControlPointWorld([900.0, 900.0, 900.0])
    settle(widget, application)
    assert ui.statusLabel.text().startswith("Error: point RAS (900.0, 900.0, 900.0) is outside the volume")
    np.testing.assert_array_equal(segment_mask(widget), kept)
    ui.inputVolumeSelector.setCurrentNode(None)
    widget.onInputsChanged()
    ui.traceButton.click()
    points.AddControlPointWorld(list(case.seed_ras))
    assert ui.statusLabel.text() == "Error: select an input volume first"


def test_screenshot_of_the_panel_in_use(panel, tmp_path, case):
    widget, *_, application = panel
    from PromptEngines.registry import descriptor
    if descriptor("tracer3d").ready():
        widget.ui.engineComboBox.setCurrentText("tracer3d")
    widget.ui.traceButton.click()
    settle(widget, application)
    assert widget.ui.statusLabel.text() == "1 step recorded"
    assert widget.logic.session.engine.name == widget.ui.engineComboBox.currentText()
    widget.parent.show()
    application.processEvents()
    picture = widget.parent.grab()
    target = ROOT / "Resources" / "Screenshots" / "panel.png" if os.environ.get(
        "IVSEG_UPDATE_SCREENSHOTS") else tmp_path / "panel.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert picture.save(str(target))
    assert target.stat().st_size > 5000


def test_cancel_button_stops_within_a_slice_and_keeps_what_was_done(panel, case):
    widget, *_, application = panel
    widget.ui.engineComboBox.setCurrentText("slow-painter")
    written = []
    widget.ui.traceButton.click()
    widget.logic.session.on_update = lambda update: written.append(update.region[0].start)
    while len(written) < 3:
        application.processEvents()
        time.sleep(0.005)
    widget.ui.cancelButton.click()
    settle(widget, application)
    # Stopped early (how early, in slices, is measured by bench/panel_responsiveness.py).
    assert 3 <= len(written) < case.volume.shape[0]
    mask = segment_mask(widget)
    assert mask.any(axis=(1, 2)).sum() == len(written)            # what was done is kept
    recorded = widget.logic.recorded()
    assert recorded.stopped_after == {0: len(written)}            # and replays to the same


def test_engine_without_weights_and_2d_images_are_refused_in_the_panel(panel, tmp_path):
    widget, scene, volume, segmentation, segment, points, application = panel
    ui = widget.ui
    ui.weightsPathLineEdit.setText(str(tmp_path / "missing.pt"))
    ui.engineComboBox.setCurrentText("tracer3d")
    ui.traceButton.click()
    settle(widget, application)     # the engine is loaded on the worker: its error comes there
    assert ui.statusLabel.text() == f"Error: weights file not found: {tmp_path / 'missing.pt'}"
    assert segment_mask_or_empty(widget, segmentation, segment) == 0
    # A single 2D slice with the 3D tracer (default weights).
    import vtk
    from InteractiveVesselSegLib.mrml_volume import image_array
    flat = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "angiogram")
    image = vtk.vtkImageData()
    image.SetDimensions(64, 64, 1)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image_array(image)[...] = np.random.default_rng(0).random((1, 64, 64))
    flat.SetAndObserveImageData(image)
    ui.weightsPathLineEdit.setText("")
    ui.engineComboBox.setCurrentText("regiongrow")
    ui.engineComboBox.setCurrentText("tracer3d")
    ui.inputVolumeSelector.setCurrentNode(flat)
    widget.onInputsChanged()
    ui.traceButton.click()
    points.AddControlPointWorld([0.0, 0.0, 0.0])
    settle(widget, application)
    assert ui.statusLabel.text() == ("Error: engine 'tracer3d' needs a 3D volume; this image is "
                                     "a single 2D slice")


def segment_mask_or_empty(widget, segmentation, segment):
    labelmap = segmentation.GetBinaryLabelmapInternalRepresentation(segment)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0
    from InteractiveVesselSegLib.mrml_volume import image_array
    return int(image_array(labelmap).sum())


def test_worker_exception_shows_one_message_and_restores_the_segment(panel, case):
    widget, *_, points, application = panel
    widget.ui.traceButton.click()
    settle(widget, application)
    kept = segment_mask(widget)
    widget.ui.engineComboBox.setCurrentText("failing-painter")
    widget.ui.traceButton.click()
    points.AddControlPointWorld(list(case.seed_ras))
    settle(widget, application)
    assert widget.ui.statusLabel.text() == "Error: model crashed on slice 2"
    np.testing.assert_array_equal(segment_mask(widget), kept)   # the user's segment, intact
    assert [s.kind for s in widget.logic.session.sequence.steps] == ["mask"]   # not recorded


def test_progress_bar_follows_the_trace(panel):
    widget, *_, application = panel
    seen = []
    widget.ui.engineComboBox.setCurrentText("tracer3d")
    widget.ui.traceButton.click()
    while widget.timer.isActive():
        application.processEvents()
        seen.append(widget.ui.progressBar.value())
        time.sleep(0.002)
    assert max(seen) > 0 and seen == sorted(seen)


def test_engine_weights_and_device_are_remembered_and_reset(panel, tmp_path):
    """Chosen once, they come back in the next panel (Slicer's settings, as after a restart);
    a device chosen alone takes effect; "Reset to defaults" puts back the first-use ones."""
    widget, scene, volume, segmentation, segment, points, application = panel
    ui = widget.ui
    ui.engineComboBox.setCurrentText("regiongrow")
    ui.deviceComboBox.setCurrentText("cpu")                  # applied without an engine change
    assert widget.logic.device == "cpu" and widget.logic.engine_name == "regiongrow"
    ui.weightsPathLineEdit.setCurrentPath(str(tmp_path / "mine.pt"))
    widget.pathTimer.timeout.emit()                          # typing has stopped
    assert widget.logic.weights == str(tmp_path / "mine.pt")
    from InteractiveVesselSeg import InteractiveVesselSegWidget
    again = InteractiveVesselSegWidget()
    again.setup()
    again.ensure_logic()
    assert again.ui.engineComboBox.currentText() == "regiongrow"
    assert again.ui.deviceComboBox.currentText() == "cpu"
    assert again.ui.weightsPathLineEdit.currentPath == str(tmp_path / "mine.pt")
    assert (again.logic.engine_name, again.logic.device) == ("regiongrow", "cpu")
    again.ui.resetSettingsButton.click()
    assert again.ui.engineComboBox.currentText() == again.logic.default_engine()
    assert again.ui.deviceComboBox.currentText() == "auto" and again.ui.weightsPathLineEdit.currentPath == ""
    assert again.logic.weights is None and again.logic.device is None
    again.cleanup()
    third = InteractiveVesselSegWidget()
    third.setup()
    third.ensure_logic()
    assert third.ui.deviceComboBox.currentText() == "auto"
    third.cleanup()


@pytest.mark.skipif(not (descriptor("multimodal").ready() and descriptor("tracer3d").ready()),
                    reason="no embedded multimodal / tracer3d weights")
def test_a_trace_then_remove_on_a_leak_and_extend_on_a_missed_branch(panel, case):
    """The signature workflow: one click traces; the trace is made wrong as traces go wrong
    (painted with another tool: a branch missed, the neighbouring vessel leaked into through
    a thin bridge); a click on the leak + "remove", a click on the branch + "extend" (the
    embedded multimodal, a step of the same session) give the tree back."""
    import slicer
    from corrections_case import leak_and_missed_branch

    widget, scene, volume, segmentation, segment, points, application = panel
    ui = widget.ui
    ui.engineComboBox.setCurrentText("tracer3d")
    ui.traceButton.click()
    settle(widget, application)
    wrong = leak_and_missed_branch(segment_mask(widget), case.distractor,
                                   case.volume.spacing_zyx)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(widget.logic.session.writer._oriented(
        wrong.mask.astype(np.uint8)), segmentation, segment, logic.MODE_REPLACE)
    assert widget.text_buttons()["remove"].isEnabled()
    widget.text_buttons()["remove"].click()
    points.AddControlPointWorld(list(case.volume.index_to_ras(wrong.leak_point)))
    settle(widget, application)
    removed = segment_mask(widget) > 0
    kept = wrong.mask & ~wrong.leak
    assert removed[wrong.leak].mean() < 0.05 and removed[kept].mean() > 0.99
    widget.text_buttons()["extend"].click()
    points.AddControlPointWorld(list(case.volume.index_to_ras(wrong.branch_point)))
    settle(widget, application)
    extended = segment_mask(widget) > 0
    assert extended[wrong.branch].mean() > 0.5 and (extended >= removed).all()
    assert metrics.fraction_on(extended, case.distractor) < 0.02
    recorded = widget.logic.recorded()
    assert [s.kind for s in recorded.steps] == ["point", "mask", "text", "text"]
    assert [recorded.engine_of(i) for i in range(4)] == ["tracer3d", "tracer3d", "multimodal",
                                                          "multimodal"]


def test_an_armed_tool_acts_at_each_click_and_esc_disarms_it(panel, case):
    """A tool button arms its tool (Slicer's persistent place mode on the prompts node); each
    point then placed in a view (the event a click in a slice view fires, in RAS) runs the
    engine once, with no other button; Esc leaves place mode, and a point placed then waits
    for the next tool button, which acts at it."""
    import slicer

    widget, scene, *_, points, application = panel
    ui = widget.ui
    ui.engineComboBox.setCurrentText("all-tools")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    ui.positivePointButton.click()                         # acts at the seed placed before
    settle(widget, application)
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert interaction.GetPlaceModePersistence() == 1
    assert scene.GetNodeByID("vtkMRMLSelectionNodeSingleton").GetActivePlaceNodeID() == \
        points.GetID()
    clicks = [case.seed_index, (10, 20, 30), (20, 40, 30)]
    for voxel in clicks[1:]:
        points.AddControlPointWorld(list(case.volume.index_to_ras(voxel)))
        settle(widget, application)
    received = widget.logic.session.engine.received
    assert [p.kind for p in received] == ["point"] * 3 and all(p.label == 1 for p in received)
    for prompt, voxel in zip(received, clicks):
        np.testing.assert_allclose(prompt.position, voxel, atol=1e-4)
    widget.enter()
    widget.shortcuts["Esc"].activated.emit()
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform
    points.AddControlPointWorld(list(case.volume.index_to_ras((5, 5, 5))))
    settle(widget, application)
    assert len(received) == 3                              # disarmed: nothing ran
    widget.shortcuts["N"].activated.emit()                 # − point, at the waiting click
    settle(widget, application)
    assert len(received) == 4 and received[-1].label == 0
    np.testing.assert_allclose(received[-1].position, (5, 5, 5), atol=1e-4)
    before_undo = segment_mask(widget).copy()
    widget.shortcuts["Ctrl+Z"].activated.emit()
    settle(widget, application)
    assert widget.logic.recorded().steps[-1].kind == "undo"
    assert not np.array_equal(segment_mask(widget), before_undo)
    widget.shortcuts["Ctrl+Y"].activated.emit()
    settle(widget, application)
    assert widget.logic.recorded().steps[-1].kind == "redo"
    np.testing.assert_array_equal(segment_mask(widget), before_undo)
    assert len(received) == 5                              # the − point made again
    assert ui.traceButton.toolTip().endswith("(key T)") and "Esc" in widget.shortcuts
    widget.exit()
    assert widget.shortcuts == {}
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform


def test_keys_arm_tools_and_text_commands_and_esc_cancels_a_running_trace(panel, case):
    widget, scene, *_, points, application = panel
    ui = widget.ui
    ui.engineComboBox.setCurrentText("all-tools")
    widget.enter()
    widget.shortcuts["T"].activated.emit()                # trace, at the seed placed before
    settle(widget, application)
    widget.shortcuts["2"].activated.emit()                # the second text command: armed
    points.AddControlPointWorld(list(case.volume.index_to_ras((12, 30, 30))))
    settle(widget, application)
    received = widget.logic.session.engine.received
    assert [p.kind for p in received] == ["point", "text"]
    assert received[1].command == list(widget.text_buttons())[1]
    np.testing.assert_allclose(received[1].position, (12, 30, 30), atol=1e-4)
    ui.engineComboBox.setCurrentText("slow-painter")
    widget.shortcuts["T"].activated.emit()
    points.AddControlPointWorld(list(case.volume.index_to_ras((12, 30, 30))))
    written = []
    widget.logic.session.on_update = lambda update: written.append(update.region[0].start)
    while len(written) < 3:
        application.processEvents()
        time.sleep(0.005)
    widget.shortcuts["Esc"].activated.emit()              # cancels; what was painted stays
    settle(widget, application)
    assert 3 <= len(written) < case.volume.shape[0]
    painted = set(np.nonzero(segment_mask(widget).any(axis=(1, 2)))[0])
    assert painted == set(range(len(written))) | {case.seed_index[0], 12}   # + the marks
    widget.exit()


def test_sample_data_offers_the_synthetic_cta_and_loads_it_on_the_spot(panel, monkeypatch):
    """Registered with Slicer's Sample Data (its customDownloader makes the volume: nothing
    is downloaded), and loading it adds the generator's volume with its geometry."""
    import sys
    import types

    from InteractiveVesselSeg import registerSampleData
    from InteractiveVesselSegLib import sample_data
    from InteractiveVesselSegLib.mrml_volume import volume_from_node

    registered_sources = []
    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kw: registered_sources.append(kw))
    monkeypatch.setitem(sys.modules, "SampleData", fake)
    registerSampleData()
    (source,) = registered_sources
    assert source["category"] == "InteractiveVesselSeg"
    assert source["nodeNames"] == "CTA vessel tree (synthetic)"
    assert os.path.isfile(source["thumbnailFileName"])
    node = source["customDownloader"](types.SimpleNamespace(**source))
    loaded = volume_from_node(node)
    expected = vessel_volume(sample_data.SEED, sample_data.SHAPE).volume
    assert np.array_equal(loaded.array, expected.array)
    np.testing.assert_allclose(loaded.ijk_to_ras, expected.ijk_to_ras, atol=1e-6)
    assert node.GetName() == "CTA vessel tree (synthetic)"


def test_manual_mode_collects_three_clicks_and_one_run_makes_three_steps(panel, case):
    widget, scene, *_, points, application = panel
    ui = widget.ui
    ui.manualCheckBox.setChecked(True)
    ui.positivePointButton.click()                          # the seed placed before: kept
    on_vessel = np.argwhere(case.label)
    for voxel in on_vessel[[len(on_vessel) // 3, 2 * len(on_vessel) // 3]]:
        points.AddControlPointWorld(list(case.volume.index_to_ras(voxel)))
    recorded = widget.logic.recorded()
    assert not widget.timer.isActive() and (recorded is None or not recorded.steps)
    assert len(widget.logic.waiting) == 3
    assert ui.statusLabel.text() == "3 prompts waiting: Run applies them"
    ui.runButton.click()
    settle(widget, application)
    assert ui.statusLabel.text() == "3 steps recorded"
    steps = widget.logic.recorded().steps
    assert [s.kind for s in steps] == ["point"] * 3 and widget.logic.waiting == []
    ui.manualCheckBox.setChecked(False)
    ui.runButton.click()
    assert ui.statusLabel.text().startswith("Error: no prompts waiting")
    points.AddControlPointWorld(list(case.volume.index_to_ras(on_vessel[-1])))   # live again
    settle(widget, application)
    assert len(widget.logic.recorded().steps) == 4
