"""One annotation session: a volume node, a segment, an engine. The logic's working core.

Prompts arrive in world RAS (from markups or slice-view clicks). Engine work runs on the
persistent worker; `pump()` (called by a timer on the main thread, or a loop in tests)
writes each update's region into the segment as it comes. The prompt sequence is recorded
on the segmentation node after every step. If the segment already holds a mask when the
session starts, or something else (Segment Editor) edited it between two prompts, the
engine takes it up first (recorded as a mask step), so nothing is lost.

Only MRML work is done on the main thread when the session is made (reading the segment,
giving it a layer of its own); the engine is loaded and given the volume on the worker
right away, so a session made when the inputs are chosen is ready before the first click.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import time
from pathlib import Path
from typing import Callable

import numpy as np

from PromptEngines.annotation import Annotation
from PromptEngines.data.segmentation_file import write_mask
from PromptEngines.engine import Update, union_region
from PromptEngines.prompts import (ExcludeMask, MaskPrompt, Prompt, PromptSequence, Redo, Reset,
                                   Undo)
from PromptEngines.recording_files import segmentation_path_for
from PromptEngines.registry import get_engine

from . import recorder
from .mrml_volume import volume_from_node
from .prompt_markers import PromptMarkers
from .segment_writer import SegmentWriter
from .worker import InferenceWorker, JobDone


class SegmentationSession:
    def __init__(self, volume_node, segmentation_node, segment_id: str, engine_name: str,
                 weights=None, device=None, worker: InferenceWorker | None = None,
                 settings: dict | None = None):
        self.volume_node, self.segmentation_node = volume_node, segmentation_node
        self.segment_id = segment_id
        volume = volume_from_node(volume_node)
        self.writer = SegmentWriter(segmentation_node, segment_id, volume_node)
        segment_name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        self.worker = worker or InferenceWorker()
        self._owns_worker = worker is None
        start, self.writer.initial = self.writer.initial, None    # not kept: a whole volume
        start_step = self._mask_step(start, 0) if start.any() else None

        def prepare() -> Annotation:                  # on the worker
            annotation = Annotation(volume, get_engine(engine_name, weights, device,
                                                       **(settings or {})), segment_name)
            if start_step is not None:
                annotation.apply(start_step)
            return annotation

        self._prepared = self.worker.call(prepare)
        self.on_update: Callable[[Update], None] | None = None
        self.last_error: BaseException | None = None
        self._written = None          # region written during the current job
        self.exclude_others = False   # the other segments are "not this" for the engine
        self.markers = PromptMarkers(segmentation_node.GetScene())
        self._in_effect: list = []    # the prompts in effect when the last job ended
        self._running: list = []      # the prompts of the current job

    @property
    def ready(self) -> bool:
        """The engine is loaded and has the volume (or failed to: `annotation` raises)."""
        return self._prepared.done()

    @property
    def annotation(self) -> Annotation:
        """Waits for the worker to prepare it; raises what went wrong there (a volume the
        engine refuses, weights that do not load)."""
        return self._prepared.result()

    @property
    def engine(self):
        return self.annotation.engine

    # ------------------------------------------------------------------ prompts
    def submit(self, prompt: Prompt, engine: str | None = None) -> None:
        """Start applying a RAS prompt on the worker (`engine`: another engine than the
        session's does it, from the segment as it is); a prompt the engine cannot take
        raises here, at once, and nothing is submitted (while the engine is still being
        prepared, the worker checks it and `pump` raises)."""
        self.submit_all([(prompt, engine)])

    def check(self, prompt: Prompt, engine: str | None = None) -> None:
        """Refuse at once a prompt the session's engine cannot take (once it is ready; one
        for another engine is checked by that engine, on the worker)."""
        if self.ready and engine is None:
            self.annotation.check(prompt)

    def submit_all(self, prompts: list) -> None:
        """(prompt, engine) pairs applied one after the other in one job, each its own
        recorded step (manual mode's Run)."""
        for prompt, engine in prompts:
            self.check(prompt, engine)
        prelude = self._prelude()
        self._running = [prompt for prompt, _ in prompts]
        self.show_prompts()
        self.worker.submit(lambda: self._steps(prelude, itertools.chain.from_iterable(
            self.annotation.interact(prompt, engine=engine) for prompt, engine in prompts)))

    def _prelude(self) -> list[MaskPrompt]:
        """The steps to take before the next prompt: what other tools did to the segment
        (a mask step), then a change of the region excluded (the other segments)."""
        edits = self._edits()
        exclusion = self._exclusion(self.annotation.steps_recorded + (edits is not None))
        return [step for step in (edits, exclusion) if step is not None]

    def _exclusion(self, step: int) -> ExcludeMask | None:
        """An exclude step when the other segments (with `exclude_others`) are not what the
        engine excludes now: they changed, or the option was turned on or off."""
        current = self.annotation.engine.excluded
        others = self.writer.others() if self.exclude_others else None
        if others is not None and not others.any():
            others = None
        if others is None and current is None or (
                others is not None and current is not None and np.array_equal(others > 0, current)):
            return None
        mask = others if others is not None else np.zeros(self.writer.shape, np.uint8)
        return ExcludeMask(mask=mask, path=recorder.save_start_mask(
            self.segmentation_node, self.segment_id, mask, step))

    def _edits(self) -> MaskPrompt | None:
        """What another tool did to the segment since our last write, as a mask step to take
        up before the next prompt (None when the segment is as the engine left it). Asked only
        when the worker can take the prompt: edits taken up must reach the engine."""
        self.worker.require_idle()
        mask = self.writer.take_edits()
        if mask is None or np.array_equal(mask, self.annotation.mask):
            return None
        return self._mask_step(mask, self.annotation.steps_recorded)

    def _mask_step(self, mask, step: int) -> MaskPrompt:
        """A mask step whose mask is kept on the segmentation node (saved with the scene)."""
        return MaskPrompt(mask=mask, path=recorder.save_start_mask(
            self.segmentation_node, self.segment_id, mask, step))

    def _steps(self, prelude: list[MaskPrompt], updates):
        for step in prelude:
            yield from self.annotation.interact(step)
        yield from updates

    def submit_sequence(self, sequence: PromptSequence, base_dir=".") -> None:
        """Replay a recorded sequence on the worker (volume identity checked first)."""
        edits = self._edits()
        prelude = [edits] if edits is not None else []
        self.worker.submit(lambda: self._steps(prelude, self.annotation.replay_steps(
            sequence, base_dir, resolve_mask=self.resolve_mask)))

    def resolve_mask(self, path: str):
        return recorder.load_start_mask(self.segmentation_node, path)

    def undo(self) -> None:
        self.submit(Undo())

    def redo(self) -> None:
        self.submit(Redo())

    def reset(self) -> None:
        self.submit(Reset())

    def cancel(self) -> None:
        self.worker.cancel()

    @property
    def busy(self) -> bool:
        return self.worker.busy

    def pump(self, timeout: float = 0.0) -> bool:
        """Write the updates that are ready; True once the current job has finished. A job's
        error is raised here after the updates before it were written."""
        finished = False
        for item in self.worker.poll(timeout):
            if isinstance(item, JobDone):
                finished = True
                self._job_ended()
                written, self._written = self._written, None
                if item.error is not None:
                    # The engine has put its mask back; so does the segment, where we wrote.
                    if written is not None:
                        self.writer.write(written, self.engine.mask[written])
                    # Steps of the job before the failing one happened (manual mode's Run).
                    if self.annotation is not None:
                        recorder.save(self.segmentation_node, self.segment_id,
                                      self.annotation.finish())
                    self.last_error = item.error
                    raise item.error
                recorder.save(self.segmentation_node, self.segment_id, self.annotation.finish())
                continue
            self.writer.write(item.region, item.patch)
            if item.patch.size:
                self._written = union_region(self._written, item.region)
            if self.on_update is not None:
                self.on_update(item)
        return finished

    def _job_ended(self) -> None:
        """The steps in effect are known again: the views show their prompts."""
        self._running = []
        if self.ready and self._prepared.exception() is None:
            self._in_effect = self.annotation.prompts_in_effect()
        self.show_prompts()

    def show_prompts(self, waiting=()) -> None:
        """Show the prompts in effect, and faded those of the current job and `waiting`
        (manual mode's prompts before Run)."""
        self.markers.show(self._in_effect, [*self._running, *waiting])

    def wait(self, timeout: float = 600.0) -> None:
        """Pump until the current job ends (headless use and tests)."""
        deadline = time.monotonic() + timeout
        while not self.pump(timeout=0.05):
            if time.monotonic() > deadline:
                raise TimeoutError("the engine did not finish in time")

    def run(self, prompt: Prompt) -> np.ndarray:
        self.submit(prompt)
        self.wait()
        return self.engine.mask

    # ------------------------------------------------------------------ recording
    @property
    def sequence(self) -> PromptSequence:
        return self.annotation.sequence

    def export_prompts(self, path: str | Path) -> None:
        """The recorded sequence as a file `ivseg segment` replays: a starting mask kept in
        the scene is written beside it as a .seg.nrrd, and so is the accepted result
        (NAME.seg.nrrd), which makes the folder a training case (`ivseg train --sessions`)."""
        path = Path(path)
        sequence = self.annotation.finish()
        steps = list(sequence.steps)
        for index, step in enumerate(steps):
            if isinstance(step, MaskPrompt) and step.path and step.path.startswith(recorder.START_SCHEME):
                name = path.name.replace(".prompts.json", "") + f".start{index}.seg.nrrd"
                write_mask(path.with_name(name), step.mask, self.annotation.volume.ijk_to_ras)
                steps[index] = type(step)(mask=step.mask, path=name)
        replace(sequence, steps=steps).save(path)
        write_mask(segmentation_path_for(path), self.annotation.mask, self.annotation.volume.ijk_to_ras,
                   sequence.segment)

    def close(self) -> None:
        """Stop a running job (what it did stays), end the worker, take the prompts off the
        views."""
        self.worker.cancel()
        self.markers.clear()
        if self._owns_worker:
            self.worker.shutdown()
