"""The module's widget on a scene with a synthetic CTA, for panel tests and the
responsiveness benchmark."""
from __future__ import annotations

import time
from types import SimpleNamespace

import slicer_standin
from slicer_scene import new_scene


def build_panel(case, engine: str = "regiongrow"):
    scene = new_scene()
    application = slicer_standin.install(scene)
    from InteractiveVesselSeg import InteractiveVesselSegWidget
    from InteractiveVesselSegLib.mrml_volume import add_volume_node

    volume = add_volume_node(scene, case.volume, "CTA")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segment = segmentation.GetSegmentation().AddEmptySegment("vessel", "vessel")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "prompts")
    points.AddControlPointWorld(list(case.seed_ras))

    widget = InteractiveVesselSegWidget()
    widget.setup()
    widget.parent.resize(420, 900)
    widget.ensure_logic()
    ui = widget.ui
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.segmentSelector.setCurrentNode(segmentation)
    ui.segmentSelector.setCurrentSegmentID(segment)
    ui.promptPointsSelector.setCurrentNode(points)
    widget.onInputsChanged()
    ui.engineComboBox.setCurrentText(engine)
    return SimpleNamespace(widget=widget, scene=scene, volume=volume, segmentation=segmentation,
                           segment=segment, points=points, application=application)


def settle(widget, application, timeout=120):
    """Run the event loop until the panel's update timer stops (the job is done)."""
    deadline = time.monotonic() + timeout
    while widget.timer.isActive():
        application.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise TimeoutError("the engine did not finish")
    application.processEvents()
