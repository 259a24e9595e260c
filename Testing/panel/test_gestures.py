"""Drags in the slice views (box, scribble, lasso), the prompts shown in the views tied to
their steps, and finished work kept safe (other segments excluded, a segment locked): the
real widget offscreen, mouse events sent to the slice views as Qt sends a drag there."""
from pathlib import Path

import numpy as np
import pytest
import vtk
from PySide6 import QtCore, QtGui, QtWidgets

from PromptEngines.data.lasso_area import lasso_area
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.evaluation import metrics
from panel_setup import build_panel, settle
import panel_engines  # noqa: F401  (registers the test engines)


@pytest.fixture
def panel(built_panel):
    return built_panel


def slice_view(name, centre_ras, normal=None, transverse=None):
    """The stand-in layout's slice view `name`, its plane through `centre_ras` (and turned to
    `normal` / `transverse` when given: an oblique reformat)."""
    import slicer

    widget = slicer.app.layoutManager().sliceWidget(name)
    node = widget.mrmlSliceNode()
    if normal is not None:
        node.SetSliceToRASByNTP(*normal, *transverse, *centre_ras, 0)
    node.JumpSliceByCentering(*centre_ras)
    node.UpdateMatrices()
    return widget


def pixel(widget, ras):
    """Where `ras` (on the view's plane) is in the view, in Qt's logical pixels."""
    inverse = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(widget.mrmlSliceNode().GetXYToRAS(), inverse)
    x, y = inverse.MultiplyPoint([*ras, 1.0])[:2]
    view = widget.sliceView()
    ratio = view.devicePixelRatioF()
    return QtCore.QPointF(x / ratio, view.height() - y / ratio)


def ras_on_plane(widget, ras):
    """`ras` moved onto the view's plane (what a click there can reach)."""
    node = widget.mrmlSliceNode()
    matrix = node.GetSliceToRAS()
    normal = np.array([matrix.GetElement(i, 2) for i in range(3)])
    origin = np.array([matrix.GetElement(i, 3) for i in range(3)])
    return np.asarray(ras, float) - np.dot(np.asarray(ras, float) - origin, normal) * normal


def drag(widget, ras_points, application):
    """A left-button drag through `ras_points` in the view, as Qt delivers it."""
    view = widget.sliceView()
    left, none = QtCore.Qt.LeftButton, QtCore.Qt.NoButton
    kinds = ([QtCore.QEvent.MouseButtonPress] + [QtCore.QEvent.MouseMove] * (len(ras_points) - 2)
             + [QtCore.QEvent.MouseButtonRelease])
    for kind, ras in zip(kinds, ras_points):
        where = pixel(widget, ras)
        button = none if kind == QtCore.QEvent.MouseMove else left
        held = none if kind == QtCore.QEvent.MouseButtonRelease else left
        event = QtGui.QMouseEvent(kind, where, view.mapToGlobal(where), button, held,
                                  QtCore.Qt.NoModifier)
        QtWidgets.QApplication.sendEvent(view, event)
    application.processEvents()


def circle(widget, centre_ras, radius_mm, count=24):
    """RAS points of a circle on the view's plane."""
    matrix = widget.mrmlSliceNode().GetSliceToRAS()
    u, v = (np.array([matrix.GetElement(i, axis) for i in range(3)]) for axis in (0, 1))
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return [list(centre_ras + radius_mm * (np.cos(a) * u + np.sin(a) * v)) for a in angles]


def marker_kinds(widget):
    return sorted(node.GetClassName() for node in widget.logic.session.markers.nodes())


def test_box_scribble_and_lasso_are_drags_that_act_on_release(panel, case):
    """Each tool armed once; each drag in a view (axial, sagittal, an oblique reformat) runs
    the engine once with the stroke in RAS, with no other button; the prompts stay shown,
    tied to their steps: undo takes the last away, redo brings it back, reset clears."""
    widget, application = panel.widget, panel.application
    ui = widget.ui
    ui.engineComboBox.setCurrentText("all-tools")
    seed = np.asarray(case.seed_ras, float)
    red = slice_view("Red", seed)
    yellow = slice_view("Yellow", seed)
    oblique = slice_view("Green", seed, normal=(0.0, 0.8, 0.6), transverse=(1.0, 0.0, 0.0))
    ui.boxButton.click()
    corners = [ras_on_plane(red, seed + offset) for offset in ((-6, -5, 0), (-2, 0, 0), (7, 4, 0))]
    drag(red, corners, application)
    settle(widget, application)
    received = widget.logic.session.engine.received
    (box,) = received
    assert box.kind == "box"
    expected = [widget.logic.session.annotation.volume.ras_to_index(c) for c in corners]
    np.testing.assert_allclose(np.minimum(box.low, box.high), box.low)   # a proper box
    low = np.min([expected[0], expected[-1]], axis=0)
    assert np.all(np.asarray(box.low) <= low + 1e-3)            # holds both dragged corners
    stroke = [ras_on_plane(yellow, seed + (0, dy, dz)) for dy, dz in ((-4, -4), (0, 0), (4, 5))]
    ui.scribbleButton.click()
    drag(yellow, stroke, application)
    settle(widget, application)
    assert [p.kind for p in received] == ["box", "scribble"] and received[1].label == 1
    assert len(received[1].points) == 3
    ui.scribblePositiveCheckBox.setChecked(False)
    ui.lassoButton.click()
    ring = circle(oblique, ras_on_plane(oblique, seed), 5.0)
    drag(oblique, ring + [ring[0]], application)
    settle(widget, application)
    lasso = received[2]
    assert lasso.kind == "lasso" and lasso.label == 0 and len(lasso.points) >= 10
    # The stroke lies on the oblique plane: the lasso's area is a thin slab across it.
    area = lasso_area(lasso.points, case.volume.shape)
    assert 40 < area.sum() < 600
    assert len(received) == 3                                   # once per gesture
    assert marker_kinds(widget) == ["vtkMRMLMarkupsClosedCurveNode", "vtkMRMLMarkupsCurveNode",
                                    "vtkMRMLMarkupsROINode"]
    ui.undoButton.click()
    settle(widget, application)
    assert marker_kinds(widget) == ["vtkMRMLMarkupsCurveNode", "vtkMRMLMarkupsROINode"]
    ui.redoButton.click()
    settle(widget, application)
    assert len(marker_kinds(widget)) == 3
    ui.resetButton.click()
    settle(widget, application)
    assert marker_kinds(widget) == []
    ui.undoButton.click()                                       # undo of the reset
    settle(widget, application)
    assert len(marker_kinds(widget)) == 3


def test_clicked_points_are_shown_in_their_colours_and_leave_the_place_node(panel, case):
    widget, application, points = panel.widget, panel.application, panel.points
    ui = widget.ui
    ui.engineComboBox.setCurrentText("all-tools")
    ui.positivePointButton.click()                              # at the seed placed before
    settle(widget, application)
    ui.negativePointButton.click()
    points.AddControlPointWorld(list(case.volume.index_to_ras((20, 30, 30))))
    settle(widget, application)
    assert points.GetNumberOfControlPoints() == 0               # shown by the markers now
    nodes = widget.logic.session.markers.nodes()
    colours = sorted(tuple(round(c, 2) for c in n.GetDisplayNode().GetColor()) for n in nodes)
    assert colours == [(0.2, 0.85, 0.3), (0.95, 0.25, 0.2)]     # green +, red −
    shown = sorted(n.GetNthControlPointLabel(0) for n in nodes)
    assert shown == ["+", "−"]
    position = [0.0, 0.0, 0.0]
    red = [n for n in nodes if n.GetNthControlPointLabel(0) == "−"][0]
    red.GetNthControlPointPositionWorld(0, position)
    np.testing.assert_allclose(position, case.volume.index_to_ras((20, 30, 30)), atol=1e-4)
    ui.manualCheckBox.setChecked(True)                          # waiting prompts: faded
    markers = widget.logic.session.markers
    ui.positivePointButton.click()
    points.AddControlPointWorld(list(case.volume.index_to_ras((22, 30, 30))))
    application.processEvents()
    opacities = sorted(n.GetDisplayNode().GetOpacity() for n in markers.nodes())
    assert opacities == [0.4, 1.0, 1.0]
    ui.runButton.click()
    settle(widget, application)
    opacities = sorted(n.GetDisplayNode().GetOpacity() for n in markers.nodes())
    assert opacities == [1.0, 1.0, 1.0]


def test_a_lasso_fills_or_erases_inside_on_its_slice_with_regiongrow(panel, case):
    widget, application = panel.widget, panel.application
    ui = widget.ui
    ui.engineComboBox.setCurrentText("regiongrow")
    seed = np.asarray(case.seed_ras, float)
    red = slice_view("Red", seed)
    ui.lassoButton.click()
    ring = circle(red, ras_on_plane(red, seed), 4.0)
    drag(red, ring + [ring[0]], application)
    settle(widget, application)
    filled = widget.logic.session.writer.read() > 0
    (lasso,) = widget.logic.recorded().steps
    volume = widget.logic.session.annotation.volume
    expected = lasso_area([volume.ras_to_index(p) for p in lasso.points], case.volume.shape)
    np.testing.assert_array_equal(filled, expected)             # inside, on its slice only
    # The volume is oblique: the axial view's plane crosses its slices; every voxel filled
    # is within a voxel of that plane and within the circle.
    ras = np.array([volume.index_to_ras(v) for v in np.argwhere(filled)])
    assert filled.sum() > 60 and np.abs(ras[:, 2] - ras_on_plane(red, seed)[2]).max() < 1.6
    assert np.linalg.norm(ras[:, :2] - ras_on_plane(red, seed)[:2], axis=1).max() < 4.0 + 1.2
    ui.scribblePositiveCheckBox.setChecked(False)
    small = circle(red, ras_on_plane(red, seed), 2.0)
    drag(red, small + [small[0]], application)
    settle(widget, application)
    erased = widget.logic.session.writer.read() > 0
    assert 0 < erased.sum() < filled.sum() and not (erased & ~filled).any()
    assert [s.kind for s in widget.logic.recorded().steps] == ["lasso", "lasso"]


def test_other_segments_are_never_taken_and_a_locked_segment_never_changes(panel, case, tmp_path):
    """A trace next to finished work: with "other segments are not this" the tracer's tree
    leaves the other segment's voxels to it (that segment untouched, recorded as an exclude
    step that replays); a locked segment refuses every prompt and keeps its mask."""
    import slicer

    from InteractiveVesselSegLib.segment_writer import SegmentWriter
    from PromptEngines.registry import descriptor

    widget, application = panel.widget, panel.application
    ui = widget.ui
    if not descriptor("tracer3d").ready():
        pytest.skip("tracer3d weights are not here")
    ui.engineComboBox.setCurrentText("tracer3d")
    ui.traceButton.click()
    settle(widget, application)
    whole = widget.logic.session.writer.read() > 0
    # Finished work: a branch of the tree, segmented before as its own segment.
    branch = np.zeros(case.volume.shape, np.uint8)
    z = case.seed_index[0]
    branch[z + 8:] = whole[z + 8:]
    assert branch.sum() > 200
    other = panel.segmentation.GetSegmentation().AddEmptySegment("finished", "finished")
    other_writer = SegmentWriter(panel.segmentation, other, panel.volume)
    other_writer.write_all(branch)
    ui.resetButton.click()
    settle(widget, application)
    ui.excludeOthersCheckBox.setChecked(True)
    ui.traceButton.click()
    panel.points.AddControlPointWorld(list(case.seed_ras))
    settle(widget, application)
    traced = widget.logic.session.writer.read() > 0
    assert not (traced & (branch > 0)).any()                        # none of its voxels
    np.testing.assert_array_equal(other_writer.read(), branch)      # and it is untouched
    assert metrics.dice(traced, whole & (branch == 0)) > 0.95      # the rest is traced
    kinds = [s.kind for s in widget.logic.recorded().steps]
    assert kinds == ["point", "reset", "exclude", "point"]
    slicer_standin_dialog = __import__("slicer_standin").FileDialog
    slicer_standin_dialog.next_path = str(tmp_path / "excluded.prompts.json")
    ui.exportButton.click()
    ui.resetButton.click()
    settle(widget, application)
    ui.importButton.click()                                         # replays bit for bit
    settle(widget, application)
    np.testing.assert_array_equal(widget.logic.session.writer.read() > 0, traced)
    # Locked: every prompt, undo and reset is refused with one message; nothing changes.
    ui.lockCheckBox.setChecked(True)
    kept = widget.logic.session.writer.read()
    steps = len(widget.logic.recorded().steps)
    for press in (ui.resetButton.click, ui.undoButton.click):
        press()
        settle(widget, application)
        assert ui.statusLabel.text() == "Error: the segment is locked: unlock it to change it"
    ui.traceButton.click()
    panel.points.AddControlPointWorld(list(case.seed_ras))
    settle(widget, application)
    np.testing.assert_array_equal(widget.logic.session.writer.read(), kept)
    assert len(widget.logic.recorded().steps) == steps
    segment = panel.segmentation.GetSegmentation().GetSegment(panel.segment)
    value = vtk.reference("")
    assert segment.GetTag("InteractiveVesselSeg.Locked", value) and str(value) == "1"
    ui.lockCheckBox.setChecked(False)
    ui.resetButton.click()
    settle(widget, application)
    assert widget.logic.session.writer.read().sum() == 0
    assert slicer is not None


def test_screenshot_of_each_tool_in_use(tmp_path):
    """Every tool armed and used once in the real panel (a trace with tracer3d, then points,
    box, scribble and lasso with regiongrow, each from an empty segment): the segment
    changes each time, the prompt is shown, and the picture is written."""
    import os
    from dataclasses import replace

    from PromptEngines.data.volume import Volume, geometry_matrix
    from PromptEngines.registry import descriptor
    from tool_screenshots import marker_outlines, tools_figure

    thin = vessel_volume(1008, shape=(48, 72, 72))
    # Axis-aligned, so the axial view's plane is one slice of the picture.
    case = replace(thin, volume=Volume(thin.volume.array, geometry_matrix(
        thin.volume.spacing_zyx, (-20.0, 15.0, -30.0))))
    built = build_panel(case)
    widget, application, ui = built.widget, built.application, built.widget.ui
    volume, z = case.volume, case.seed_index[0]
    seed = np.asarray(case.seed_ras, float)
    red = slice_view("Red", seed)
    shots = []

    def shot(title):
        settle(widget, application)
        mask = widget.logic.session.writer.read()
        assert mask[z].any(), title
        outlines = marker_outlines(widget.logic.session.markers, widget.logic.session.annotation
                                   .volume, z)
        assert outlines, title
        shots.append((title, volume.array[z], mask[z], outlines))

    def fresh(engine):
        ui.engineComboBox.setCurrentText(engine)
        ui.resetButton.click()
        settle(widget, application)

    if descriptor("tracer3d").ready():
        fresh("tracer3d")
        ui.traceButton.click()                       # at the seed build_panel placed
        shot("Trace (T): one click, the whole tree")
    fresh("regiongrow")
    ui.positivePointButton.click()
    built.points.AddControlPointWorld(list(seed))
    shot("+ point (P)")
    on_slice = np.argwhere(case.label[z])                   # a vessel pixel away from the click
    far = on_slice[np.argmax(np.linalg.norm(on_slice - case.seed_index[1:], axis=1))]
    ui.negativePointButton.click()
    built.points.AddControlPointWorld(list(case.volume.index_to_ras((z, *far))))
    shot("− point (N): not this")
    fresh("regiongrow")
    ui.boxButton.click()
    drag(red, [ras_on_plane(red, seed + d) for d in ((-7, -7, 0), (0, 0, 0), (7, 7, 0))],
         application)
    shot("Box (B): drag a box")
    fresh("regiongrow")
    ui.scribbleButton.click()
    drag(red, [ras_on_plane(red, seed + d) for d in ((-1, -1, 0), (0, 0, 0), (1, 2, 0))],
         application)
    shot("Scribble (S): drag along the structure")
    fresh("regiongrow")
    ui.lassoButton.click()
    ring = circle(red, ras_on_plane(red, seed), 6.0)
    drag(red, ring + [ring[0]], application)
    shot("Lasso (L): drag around, filled on its slice")
    widget.parent.show()
    application.processEvents()
    panel_png = tmp_path / "panel.png"
    assert widget.parent.grab().save(str(panel_png))
    target = (Path(__file__).resolve().parents[2] / "Resources" / "Screenshots" / "tools.png"
              if os.environ.get("IVSEG_UPDATE_SCREENSHOTS") else tmp_path / "tools.png")
    tools_figure(panel_png, shots, target)
    assert target.stat().st_size > 50_000 and len(shots) >= 5
    widget.cleanup()


def test_a_cuda_device_on_a_machine_without_one_is_one_line_in_the_panel(panel, case):
    """No traceback and no silent fall back to the CPU: the first prompt says why, the
    segment is kept; choosing auto again works."""
    import torch

    widget, application = panel.widget, panel.application
    ui = widget.ui
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ui.engineComboBox.setCurrentText("regiongrow")
    ui.traceButton.click()                                      # at the seed placed before
    settle(widget, application)
    kept = widget.logic.session.writer.read()
    assert kept.sum() > 0
    ui.engineComboBox.setCurrentText("tracer3d")
    ui.deviceComboBox.setCurrentText("cuda")
    ui.traceButton.click()
    panel.points.AddControlPointWorld(list(case.seed_ras))
    settle(widget, application)
    said = ui.statusLabel.text()
    assert said.startswith("Error: device 'cuda' asked for, but this machine has no usable CUDA")
    assert "\n" not in said and "Traceback" not in said
    np.testing.assert_array_equal(panel.widget.logic.session.writer.read(), kept)
    ui.deviceComboBox.setCurrentText("auto")
    panel.points.AddControlPointWorld(list(case.seed_ras))     # Trace still armed
    settle(widget, application)
    assert ui.statusLabel.text().endswith("recorded")


def test_keys_arm_the_drag_tools_and_esc_disarms_them(panel):
    widget = panel.widget
    widget.ui.engineComboBox.setCurrentText("all-tools")
    widget.enter()
    for key, tool in (("B", "box"), ("S", "scribble"), ("L", "lasso")):
        widget.shortcuts[key].activated.emit()
        assert widget.armed.tool == tool and widget.armed.drags.active
        assert getattr(widget.ui, tool + "Button").toolTip().endswith(f"(key {key})")
    widget.shortcuts["Esc"].activated.emit()
    assert widget.armed.tool is None and not widget.armed.drags.active
    widget.exit()


def test_prism_in_the_panel_each_gesture_is_a_live_iteration_and_undo_is_exact(panel, case,
                                                                              tmp_path):
    """prism (randomly initialised tiny weights: the plumbing, not the quality): a box dragged
    in a view (given a depth), + and − clicks and a scribble, each one engine iteration with
    no button press; undo gives each previous mask back exactly; the exported prompts replay
    to the same mask through `ivseg segment`."""
    import torch

    from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
    from PromptEngines.cli import main
    from PromptEngines.data.segmentation_file import read_mask
    from PromptEngines.data.volume import write_volume
    from PromptEngines.prism.config import TINY
    from PromptEngines.prism.model import Prism
    from PromptEngines.prompts import PromptSequence

    torch.manual_seed(0)
    weights = tmp_path / "prism_random.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "prism", "config": TINY.to_json(),
                "model": Prism(TINY).state_dict()}, weights)
    widget, application, points = panel.widget, panel.application, panel.points
    ui = widget.ui
    ui.weightsPathLineEdit.setCurrentPath(str(weights))
    ui.engineComboBox.setCurrentText("prism")
    widget.onEngineSettingsChanged()
    assert ui.boxButton.isEnabled() and ui.scribbleButton.isEnabled()
    assert not ui.lassoButton.isEnabled()                    # prism takes no lasso
    assert ui.intensityComboBox.isVisibleTo(widget.parent)   # the scan's modality window
    ui.intensityComboBox.setCurrentText("CT angiography")
    assert widget.logic.session.engine.settings == {"intensity": "CT angiography"}
    seed = np.asarray(case.seed_ras, float)
    red = slice_view("Red", seed)
    masks = [widget.logic.session.writer.read().copy()]
    ui.boxButton.click()
    drag(red, [ras_on_plane(red, seed + d) for d in ((-8, -8, 0), (0, 0, 0), (8, 8, 0))],
         application)
    settle(widget, application)
    masks.append(widget.logic.session.writer.read().copy())
    ui.positivePointButton.click()                           # at the seed placed before
    settle(widget, application)
    masks.append(widget.logic.session.writer.read().copy())
    ui.negativePointButton.click()
    points.AddControlPointWorld(list(seed + (3.0, 0.0, 0.0)))
    settle(widget, application)
    masks.append(widget.logic.session.writer.read().copy())
    ui.scribbleButton.click()
    drag(red, [ras_on_plane(red, seed + d) for d in ((-2, 0, 0), (0, 1, 0), (2, 2, 0))],
         application)
    settle(widget, application)
    masks.append(widget.logic.session.writer.read().copy())
    np.testing.assert_array_equal(masks[-1], widget.logic.session.engine.mask)
    recorded = widget.logic.recorded()
    assert [s.kind for s in recorded.steps] == ["box", "point", "point", "scribble"]
    box = recorded.steps[0]
    assert min(np.asarray(box.high) - np.asarray(box.low)) > 5     # a 3D box, not a flat one
    assert "iteration 4" in ui.statusLabel.text() or "recorded" in ui.statusLabel.text()
    slicer_dialog = __import__("slicer_standin").FileDialog
    slicer_dialog.next_path = str(tmp_path / "prism.prompts.json")
    ui.exportButton.click()
    exported = PromptSequence.load(tmp_path / "prism.prompts.json")
    assert exported.engine_settings == {"intensity": "CT angiography"}
    for expected in reversed(masks[:-1]):
        ui.undoButton.click()
        settle(widget, application)
        np.testing.assert_array_equal(widget.logic.session.writer.read(), expected)
    write_volume(case.volume, tmp_path / "cta.nrrd")
    out = tmp_path / "again.seg.nrrd"
    assert main(["segment", str(tmp_path / "cta.nrrd"), "--engine", "prism", "--weights",
                 str(weights), "--prompts", str(tmp_path / "prism.prompts.json"), "--out",
                 str(out), "--check"]) == 0
    again, _ = read_mask(out)
    np.testing.assert_array_equal(again > 0, masks[-1] > 0)
    ui.engineComboBox.setCurrentText("regiongrow")
    assert not ui.intensityComboBox.isVisibleTo(widget.parent)
