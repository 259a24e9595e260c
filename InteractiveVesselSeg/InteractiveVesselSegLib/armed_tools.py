"""The click in a slice view is the action: a tool button arms its tool, and while it is
armed each point the user places, or each stroke the user drags, in a view acts at once.

Point tools (trace, + / − point, text commands) place with Slicer's own machinery: the
prompts markups node becomes the active place node and the views stay in persistent place
mode, so a click in the Red, Yellow, Green or 3D view (any orientation, oblique reformats
included) adds a control point at that RAS position and fires the node's
PointPositionDefinedEvent, which hands the point to the armed tool; the point then leaves
the node (the prompt markers show it, tied to its step). Pressing a tool's button right
after placing a point (with no tool armed) acts at that point too; a point is never used
twice. Drag tools (box, scribble, lasso) take left-button drags in the slice views
(`slice_drags`), previewed while drawn; the engine starts on release. Esc (or `disarm`)
leaves place mode and drops a stroke being drawn.
"""
from __future__ import annotations

import numpy as np
import qt
import slicer

from .slice_drags import SliceDrags

INTERACTION_NODE = "vtkMRMLInteractionNodeSingleton"
SELECTION_NODE = "vtkMRMLSelectionNodeSingleton"
DRAG_TOOLS = ("box", "scribble", "lasso")
PREVIEW_CLASS = {"box": "vtkMRMLMarkupsROINode", "scribble": "vtkMRMLMarkupsCurveNode",
                 "lasso": "vtkMRMLMarkupsClosedCurveNode"}


def tool_name(tool) -> str:
    """A tool is a name ("trace", "box") or (name, argument): ("text", command),
    ("scribble", positive)."""
    return tool[0] if isinstance(tool, tuple) else tool


class ArmedTools:
    def __init__(self, act):
        """`act(tool, where)`: run the tool at a point (world RAS), or along a dragged
        stroke (a list of RAS points) for a drag tool; the widget's gesture map."""
        self.act = act
        self.tool = None              # the armed tool, or None
        self._node = None
        self._observer = None
        self._pending = False         # the node's last point is placed and not used yet
        self.drags = SliceDrags(self._on_stroke, self._on_drawing)
        self._preview = None          # the stroke being drawn, as a markups node

    # ------------------------------------------------------------------ the prompts node
    def watch(self, node) -> None:
        """Take points from this markups node; a point it already holds counts as just
        placed (placed before the panel opened, it is the one the user means)."""
        if node is self._node:
            return
        if self._node is not None and self._observer is not None:
            self._node.RemoveObserver(self._observer)
        self._node, self._observer = node, None
        self._pending = node is not None and node.GetNumberOfControlPoints() > 0
        if node is not None:
            self._observer = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                              self._on_point)
            if self.tool is not None and not self.dragging:
                self._place_mode(True)

    def _last_point(self):
        ras = [0.0, 0.0, 0.0]
        self._node.GetNthControlPointPositionWorld(self._node.GetNumberOfControlPoints() - 1, ras)
        return ras

    def _on_point(self, *_):
        self._pending = True
        if self.tool is not None and not self.dragging:
            self._use(self.tool)

    def _use(self, tool) -> None:
        self._pending = False
        ras = self._last_point()
        # The used point leaves the node once Slicer has finished placing it: the prompt
        # markers show it from now on, with its step.
        node = self._node
        qt.QTimer.singleShot(0, lambda: node.RemoveAllControlPoints())
        self.act(tool, ras)

    # ------------------------------------------------------------------ arming
    @property
    def dragging(self) -> bool:
        """The armed tool is drawn by dragging (box, scribble, lasso)."""
        return self.tool is not None and tool_name(self.tool) in DRAG_TOOLS

    def press(self, tool) -> bool:
        """A tool's button: armed from now on; a point tool acts at once at a point placed
        and not used yet. Returns whether it acted."""
        self.tool = tool
        if self.dragging:
            self._place_mode(False)
            self.drags.start()
            return False
        self.drags.stop()
        self._place_mode(True)
        if self._pending and self._node is not None and self._node.GetNumberOfControlPoints():
            self._use(tool)
            return True
        return False

    def disarm(self) -> None:
        self.tool = None
        self.drags.stop()
        self._clear_preview()
        self._place_mode(False)

    def close(self) -> None:
        self.disarm()
        self.watch(None)

    def _place_mode(self, on: bool) -> None:
        """Slicer's persistent place mode on the prompts node (off: view transform)."""
        scene = slicer.mrmlScene
        interaction = scene.GetNodeByID(INTERACTION_NODE) if scene is not None else None
        if interaction is None:
            return
        if on and self._node is not None:
            selection = scene.GetNodeByID(SELECTION_NODE)
            if selection is not None:
                selection.SetReferenceActivePlaceNodeClassName(self._node.GetClassName())
                selection.SetActivePlaceNodeID(self._node.GetID())
            interaction.SetPlaceModePersistence(1)
            interaction.SetCurrentInteractionMode(interaction.Place)
        elif not on:
            interaction.SetPlaceModePersistence(0)
            interaction.SetCurrentInteractionMode(interaction.ViewTransform)

    # ------------------------------------------------------------------ drags
    def _on_drawing(self, points) -> None:
        """The stroke so far, shown as the tool's markups node."""
        kind = tool_name(self.tool) if self.dragging else None
        if kind is None:
            return
        if self._preview is None:
            self._preview = slicer.mrmlScene.AddNewNodeByClass(PREVIEW_CLASS[kind], "drawing")
            self._preview.SetSaveWithScene(False)
            self._preview.SetHideFromEditors(True)
        if kind == "box":
            corners = np.asarray([points[0], points[-1]])
            self._preview.SetXYZ(*corners.mean(axis=0))
            self._preview.SetRadiusXYZ(*(np.abs(corners[1] - corners[0]) / 2))
        else:
            self._preview.AddControlPointWorld(list(points[-1]))

    def _clear_preview(self) -> None:
        if self._preview is not None:
            slicer.mrmlScene.RemoveNode(self._preview)
            self._preview = None

    def _on_stroke(self, points) -> None:
        self._clear_preview()
        if self.dragging:
            self.act(self.tool, points)
