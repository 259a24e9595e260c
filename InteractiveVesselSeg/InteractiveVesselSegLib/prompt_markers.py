"""The prompts in effect, shown in the views: each as a markups node of its own (points
green when positive, red when negative, text commands yellow with the command as label,
boxes blue, scribbles and lassos in their polarity's colour).

What is shown is derived, never edited: after each job the panel passes the prompts of the
steps in effect since the last reset (`Annotation.prompts_in_effect`), so undo takes a
prompt away with its step, redo brings it back, reset clears them, and a replayed prompts
file shows its prompts. Prompts waiting for Run (manual mode) or being worked on are shown
faded. The nodes are display only: locked, hidden from editors, not saved with the scene
(the recorded prompts are).
"""
from __future__ import annotations

import numpy as np

from PromptEngines.prompts import has_place

POSITIVE, NEGATIVE = (0.2, 0.85, 0.3), (0.95, 0.25, 0.2)
TEXT_COLOUR, BOX_COLOUR = (0.95, 0.85, 0.2), (0.3, 0.6, 1.0)
WAITING_OPACITY = 0.4
NODE_CLASS = {"point": "vtkMRMLMarkupsFiducialNode", "text": "vtkMRMLMarkupsFiducialNode",
              "box": "vtkMRMLMarkupsROINode", "scribble": "vtkMRMLMarkupsCurveNode",
              "lasso": "vtkMRMLMarkupsClosedCurveNode"}


def colour(prompt) -> tuple[float, float, float]:
    if prompt.kind == "text":
        return TEXT_COLOUR
    if prompt.kind == "box":
        return BOX_COLOUR
    return POSITIVE if prompt.label else NEGATIVE


def caption(prompt) -> str:
    if prompt.kind == "text":
        return prompt.command
    if prompt.kind == "box":
        return "box"
    return ("+" if prompt.label else "−") + ("" if prompt.kind == "point" else " " + prompt.kind)


class PromptMarkers:
    def __init__(self, scene):
        self.scene = scene
        self._nodes: dict[tuple, object] = {}       # (key, waiting) -> markups node

    def show(self, in_effect, waiting=()) -> None:
        """`in_effect`: (key, RAS prompt) pairs, a key per step that stays the same while
        the step is in effect; `waiting`: RAS prompts not run yet."""
        wanted = {(key, False): prompt for key, prompt in in_effect}
        wanted.update({(id(prompt), True): prompt for prompt in waiting})
        for key in [k for k in self._nodes if k not in wanted]:
            self.scene.RemoveNode(self._nodes.pop(key))
        # Slicer's markups logic makes each new markups node the one clicks place into:
        # the prompts node stays that one.
        selection = self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        active = (selection.GetActivePlaceNodeID(), selection.GetActivePlaceNodeClassName()) \
            if selection is not None else None
        for key, prompt in wanted.items():
            if key not in self._nodes and prompt.kind in NODE_CLASS and has_place(prompt):
                self._nodes[key] = self._node(prompt, waiting=key[1])
        if active is not None and selection.GetActivePlaceNodeID() != active[0]:
            selection.SetReferenceActivePlaceNodeClassName(active[1])
            selection.SetActivePlaceNodeID(active[0])

    def clear(self) -> None:
        self.show(())

    def nodes(self) -> list:
        return list(self._nodes.values())

    def _node(self, prompt, waiting: bool):
        node = self.scene.AddNewNodeByClass(NODE_CLASS[prompt.kind],
                                            f"ivseg prompt: {caption(prompt)}")
        node.SetSaveWithScene(False)
        node.SetHideFromEditors(True)
        if prompt.kind == "box":
            low, high = np.asarray(prompt.low), np.asarray(prompt.high)
            node.SetXYZ(*((low + high) / 2))
            node.SetRadiusXYZ(*((high - low) / 2))
        else:
            for ras in prompt.positions():
                node.AddControlPointWorld(list(ras))
            if prompt.kind in ("point", "text"):
                node.SetNthControlPointLabel(0, caption(prompt))
        node.SetLocked(True)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*colour(prompt))
            display.SetColor(*colour(prompt))
            display.SetOpacity(WAITING_OPACITY if waiting else 1.0)
        return node
