"""InteractiveVesselSegLogic's body: one method per panel action, usable headless.

The widget calls these and shows what they return or raise; it holds no state of its own
beyond widgets. Coordinates are world RAS, as markups and slice views give them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from PromptEngines.errors import IVSegError
from PromptEngines.prompts import (TEXT_COMMAND_HELP, Auto, Box, Lasso, Point, PromptSequence,
                                   Scribble, Text)
from PromptEngines.registry import available_engines, default_tracer, descriptor

from . import recorder
from .session import SegmentationSession
from .structure_segments import find_segment, structure_segment

TOOLS = ("point", "box", "scribble", "lasso", "text", "auto")
LOCK_TAG = "InteractiveVesselSeg.Locked"    # on the segment: saved with the scene


TEXT_ENGINE = "multimodal"      # the correction engine behind the text buttons


class VesselSegLogic:
    def __init__(self):
        self.session: SegmentationSession | None = None
        self.engine_name = self.default_engine()
        self.weights: str | None = None
        self.device: str | None = None
        self.settings: dict = {}             # the engine's own choices (prism's intensity)
        self._inputs = (None, None, None)
        self.manual = False                  # keep prompts until run_waiting (manual mode)
        self.waiting: list = []              # (prompt, engine) kept in manual mode
        self._exclude_others = False         # other segments are "not this" for the engine
        self.structures_to_own_segments = True   # a structure goes to the segment of its name

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def engines() -> list[str]:
        return available_engines()

    @staticmethod
    def default_engine() -> str:
        """The engine a first use starts with: the tracer whose weights are here."""
        return default_tracer()

    def engine_tools(self, name: str | None = None) -> dict[str, str | None]:
        """For each tool, None if the engine takes it, else the reason it is disabled."""
        engine = descriptor(name or self.engine_name)
        return {tool: None if tool in engine.capabilities else
                f"{engine.name} does not take {tool} prompts" for tool in TOOLS}

    def engine_vocabulary(self, name: str | None = None) -> dict[str, dict[str, str]]:
        """The text commands and the engine's structures, each with its tooltip: the panel
        makes one button for each. An engine without text commands of its own lends them
        from the correction engine (a text command right after a trace)."""
        engine = descriptor(name or self.engine_name)
        texts = self._text_engine(engine.name)
        commands = {} if texts is None else {
            c: TEXT_COMMAND_HELP[c] + ("" if texts.name == engine.name else f" ({texts.name})")
            for c in texts.text_commands}
        return {"text": commands,
                "auto": {s: f"{s} on the whole volume ({engine.name})" for s in engine.structures}}

    def text_unavailable(self, name: str | None = None) -> str | None:
        """Why the text buttons cannot act now (None: they can)."""
        texts = self._text_engine(name or self.engine_name)
        if texts is None or texts.name == (name or self.engine_name) or texts.ready():
            return None
        return (f"{texts.name} has no trained weights here ({texts.weights_path.name}); "
                f"train them with `ivseg train --engine {texts.name}`")

    @staticmethod
    def _text_engine(name: str):
        """The engine that does text commands for `name`: itself if it declares some, else
        the correction engine if registered."""
        engine = descriptor(name)
        if engine.text_commands:
            return engine
        return descriptor(TEXT_ENGINE) if TEXT_ENGINE in available_engines() else None

    @staticmethod
    def engine_settings(name: str) -> dict[str, tuple]:
        """The engine's own choices, each with its options (the first is the default)."""
        return dict(descriptor(name).settings)

    def set_engine(self, name: str, weights: str | None = None, device: str | None = None,
                   settings: dict | None = None):
        self.engine_name, self.weights, self.device = name, weights, device
        known = self.engine_settings(name)
        self.settings = {k: v for k, v in (settings or {}).items() if k in known}
        self.close()
        self.prepare()

    def set_inputs(self, volume_node, segmentation_node, segment_id) -> None:
        if (volume_node, segmentation_node, segment_id) != self._inputs:
            self.close()
        self._inputs = (volume_node, segmentation_node, segment_id)
        self.prepare()

    @property
    def segment_id(self) -> str | None:
        """The current segment (a structure button may choose another): the panel shows it."""
        return self._inputs[2]

    def prepare(self) -> None:
        """Once a volume, a segment and an engine are chosen, make the session at once: the
        engine loads and takes the volume on the worker while the user finds the vessel, so
        the first click waits for none of it. A volume or engine that fails here says so on
        the first prompt."""
        if self.session is None and all(self._inputs):
            try:
                self.current_session()
            except IVSegError:
                pass                    # said again, where the user acts, by the first prompt

    def current_session(self) -> SegmentationSession:
        volume_node, segmentation_node, segment_id = self._inputs
        if volume_node is None:
            raise IVSegError("select an input volume first")
        if segmentation_node is None or not segment_id:
            raise IVSegError("select a segmentation and a segment first")
        if self.session is None:
            self.session = SegmentationSession(volume_node, segmentation_node, segment_id,
                                               self.engine_name, self.weights, self.device,
                                               settings=self.settings)
            self.session.exclude_others = self._exclude_others
        return self.session

    # ------------------------------------------------------------------ finished work
    @property
    def exclude_others(self) -> bool:
        """The segmentation's other segments are "not this": the engine never puts their
        voxels in the segment (taken up, and recorded, at the next prompt)."""
        return self._exclude_others

    @exclude_others.setter
    def exclude_others(self, on: bool) -> None:
        self._exclude_others = bool(on)
        if self.session is not None:
            self.session.exclude_others = self._exclude_others

    def _segment(self):
        _, segmentation_node, segment_id = self._inputs
        if segmentation_node is None or not segment_id:
            return None
        return segmentation_node.GetSegmentation().GetSegment(segment_id)

    @property
    def locked(self) -> bool:
        """The segment may not be changed by any prompt (a tag on the segment, so it is
        saved with the scene)."""
        import vtk

        segment, value = self._segment(), vtk.reference("")
        return segment is not None and segment.GetTag(LOCK_TAG, value) and str(value) == "1"

    @locked.setter
    def locked(self, on: bool) -> None:
        segment = self._segment()
        if segment is None:
            raise IVSegError("select a segmentation and a segment first")
        segment.SetTag(LOCK_TAG, "1" if on else "0")

    def set_locked(self, on: bool) -> None:
        self.locked = on

    def _require_unlocked(self) -> None:
        if self.locked:
            raise IVSegError("the segment is locked: unlock it to change it")

    # ------------------------------------------------------------------ tools
    # Each returns True when it started a job, False when manual mode keeps the prompt.
    def _submit(self, prompt, engine: str | None = None) -> bool:
        self._require_unlocked()
        session = self.current_session()
        if not self.manual:
            session.submit(prompt, engine)
            return True
        session.check(prompt, engine)                 # refused now, not at Run
        self.waiting.append((prompt, engine))
        session.show_prompts([waiting for waiting, _ in self.waiting])
        return False

    def run_waiting(self) -> bool:
        """Manual mode's Run: the prompts kept, in order, each its own recorded step."""
        if not self.waiting:
            raise IVSegError("no prompts waiting: click in a view with a tool armed first")
        self._require_unlocked()
        waiting, self.waiting = self.waiting, []
        self.current_session().submit_all(waiting)
        return True

    def trace(self, ras) -> bool:
        return self._submit(Point(ras, 1))

    def add_point(self, ras, positive: bool = True) -> bool:
        return self._submit(Point(ras, 1 if positive else 0))

    def add_box(self, ras_a, ras_b) -> bool:
        """A box from two corners. One dragged on a slice is flat across it: it gets a depth
        there of its smaller side, centred on the slice (a 3D box, as 3D engines take)."""
        a, b = np.asarray(ras_a, float), np.asarray(ras_b, float)
        extent = np.abs(b - a)
        flat = extent < 1e-3
        if flat.sum() == 1:
            depth = extent[~flat].min() / 2
            a, b = np.where(flat, a - depth, a), np.where(flat, b + depth, b)
        return self._submit(Box(tuple(a), tuple(b)))

    def add_scribble(self, ras_points, positive: bool = True) -> bool:
        return self._submit(Scribble(ras_points, 1 if positive else 0))

    def add_lasso(self, ras_points, positive: bool = True) -> bool:
        """A closed curve drawn on one slice: inside it is (or is not) the structure."""
        return self._submit(Lasso(ras_points, 1 if positive else 0))

    def text_command(self, command: str, ras=None) -> bool:
        """A text command at a point, by the chosen engine if it takes text, else by the
        correction engine, starting from the segment as it is."""
        own = command in descriptor(self.engine_name).text_commands
        return self._submit(Text(command, ras), engine=None if own else TEXT_ENGINE)

    def segment_structure(self, name: str) -> bool:
        """The structure on the whole volume: in a segment of its own, made current, with
        `structures_to_own_segments`; else in the current segment."""
        if self.structures_to_own_segments:
            self._choose_structure_segment(name)
        return self._submit(Auto(name))

    def _choose_structure_segment(self, name: str) -> None:
        """The segment named after the structure (made in its colour if there is none) is
        the current segment from now on: a session of its own."""
        volume_node, segmentation_node, _ = self._inputs
        if volume_node is None:
            raise IVSegError("select an input volume first")
        if segmentation_node is None:
            raise IVSegError("select a segmentation first")
        found = find_segment(segmentation_node, name)
        if found is not None and found == self.segment_id:
            return                          # already the structure's segment
        if self.busy:                   # leaving the segment would stop the job at work
            raise IVSegError("the engine is still working; wait or cancel first")
        if self.waiting:                # leaving the segment would drop them
            raise IVSegError(f"{len(self.waiting)} prompt(s) wait for this segment: Run them "
                             "first (a structure goes to a segment of its own)")
        self.set_inputs(volume_node, segmentation_node,
                        found or structure_segment(segmentation_node, name))

    def undo(self) -> None:
        self._require_unlocked()
        self.current_session().undo()

    def redo(self) -> None:
        self._require_unlocked()
        self.current_session().redo()

    def reset(self) -> None:
        self._require_unlocked()
        self.current_session().reset()

    def cancel(self) -> None:
        if self.session is not None:
            self.session.cancel()

    def pump(self) -> bool:
        """Write what the engine produced; True when it is idle. Raises its error, once."""
        return True if self.session is None else self.session.pump()

    @property
    def busy(self) -> bool:
        return self.session is not None and self.session.busy

    # ------------------------------------------------------------------ recording
    def export_prompts(self, path: str | Path) -> None:
        self.current_session().export_prompts(path)

    def import_prompts(self, path: str | Path) -> int:
        """Replay a prompts file on the current inputs, step by step, on the worker."""
        self._require_unlocked()
        sequence = PromptSequence.load(path)
        session = self.current_session()
        session.submit_sequence(sequence, Path(path).parent)
        return len(sequence.steps)

    def recorded(self) -> PromptSequence | None:
        _, segmentation_node, segment_id = self._inputs
        return recorder.load(segmentation_node, segment_id) if segmentation_node else None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None
        self.waiting = []                    # they were meant for that session


__all__ = ["VesselSegLogic", "TOOLS"]
