"""The click in a slice view is the action: a tool button arms its tool, and while it is
armed each point the user places in any view acts at once.

Placing is Slicer's own: the prompts markups node becomes the active place node and the
views stay in persistent place mode, so a click in the Red, Yellow, Green or 3D view (any
orientation, oblique reformats included) adds a control point at that RAS position and fires
the node's PointPositionDefinedEvent, which hands the point to the armed tool. Pressing a
tool's button right after placing a point (with no tool armed) acts at that point too; a
point is never used twice. Esc (or `disarm`) leaves place mode.
"""
from __future__ import annotations

import slicer

INTERACTION_NODE = "vtkMRMLInteractionNodeSingleton"
SELECTION_NODE = "vtkMRMLSelectionNodeSingleton"


class ArmedTools:
    def __init__(self, act):
        """`act(tool, ras)`: run the tool at a point (world RAS); the widget's gesture map."""
        self.act = act
        self.tool = None              # the armed tool (a name the widget maps), or None
        self._node = None
        self._observer = None
        self._pending = False         # the node's last point is placed and not used yet

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
            if self.tool is not None:
                self._place_mode(True)

    def _last_point(self):
        ras = [0.0, 0.0, 0.0]
        self._node.GetNthControlPointPositionWorld(self._node.GetNumberOfControlPoints() - 1, ras)
        return ras

    def _on_point(self, *_):
        self._pending = True
        if self.tool is not None:
            self._use(self.tool)

    def _use(self, tool) -> None:
        self._pending = False
        self.act(tool, self._last_point())

    # ------------------------------------------------------------------ arming
    def press(self, tool) -> bool:
        """A tool's button: armed from now on; acts at once at a point placed and not used
        yet. Returns whether it acted."""
        self.tool = tool
        self._place_mode(True)
        if self._pending and self._node is not None and self._node.GetNumberOfControlPoints():
            self._use(tool)
            return True
        return False

    def disarm(self) -> None:
        self.tool = None
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
