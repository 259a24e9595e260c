"""One annotation of one volume: RAS prompts in, engine updates out, every step recorded in
a PromptSequence that replays to the same mask bit for bit.

The CLI and the Slicer module's session both drive engines through this class, so
conversion from RAS, validation and recording happen the same way everywhere. A step may
name another engine than the annotation's own (a text command of multimodal right after a
tracer3d trace): that engine is made once on the same volume, starts from the current mask,
and the record says which engine made the step; undo goes back through the steps whichever
engine made them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .data.segmentation_file import read_mask
from .data.volume import Volume, grid_mismatch
from .engine import Engine, Update
from .errors import PromptError, PromptFileError
from .prompts import (ExcludeMask, MaskPrompt, Prompt, PromptSequence, Redo, Reset, Undo,
                      VolumeIdentity, has_place)
from .threads import in_background

_END = object()


@dataclass
class _Made:
    """A step as it was made: its RAS prompt, the engine it named, the engine that made it
    and, if cancelled, how many updates it applied."""
    prompt: Prompt
    engine: str | None
    target: Engine
    stop_after: int | None = None


class Annotation:
    def __init__(self, volume: Volume, engine: Engine, segment: str = "vessel",
                 make_engine=None):
        """`make_engine(name)`: how another engine a step names is made (default: the
        registry's, on the annotation engine's device)."""
        self.volume = volume.validated()
        self.main = self.engine = engine     # the record's engine; the one holding the mask
        self._engines = {engine.name: engine}
        self._make_engine = make_engine or (lambda name: _registry_engine(name, engine.device))
        # The steps in effect (undo takes back the last, with the engine that made it) and
        # those undone since the last new step (redo makes the last again, as it was made).
        self._in_effect: list[_Made] = []
        self._undone: list[_Made] = []
        engine.set_image(volume.array, volume.spacing_zyx)
        # The record names the volume by a hash of its voxels: half a second at clinical
        # size, so it is computed beside the first prompt, not before it.
        self._identity = in_background(volume.identity)
        self._sequence = PromptSequence(engine=engine.name, weights_sha256=engine.weights_sha256,
                                        segment=segment, engine_settings=engine.settings)

    @property
    def identity(self) -> VolumeIdentity:
        return self._identity.result()

    @property
    def sequence(self) -> PromptSequence:
        """The record so far (with the volume's identity, waited for if still hashing)."""
        if self._sequence.volume is None:
            self._sequence.volume = self.identity
        return self._sequence

    @property
    def steps_recorded(self) -> int:
        """Steps recorded so far (without waiting for the volume's identity)."""
        return len(self._sequence.steps)

    @property
    def mask(self) -> np.ndarray:
        return self.engine.mask

    def to_index(self, prompt: Prompt) -> Prompt:
        """The prompt in the engine's voxel index frame; points must fall inside the volume."""
        for ras in prompt.positions():
            self.volume.voxel_of(ras)          # raises a PromptError naming the point
        return prompt.map_coordinates(self.volume.ras_to_index)

    def engine_named(self, name: str | None) -> Engine:
        """The annotation's engine of that name (None: its own), made on this volume the
        first time a step names it."""
        if name is None:
            return self.main
        if name not in self._engines:
            made = self._make_engine(name)
            made.set_image(self.volume.array, self.volume.spacing_zyx)
            self._engines[name] = made
        return self._engines[name]

    def _target(self, prompt: Prompt, engine: str | None) -> Engine:
        """Who does the step: undo goes to the engine of the last step in effect, reset to
        the one holding the mask, any other step to the engine it names."""
        if isinstance(prompt, Undo):
            return self._in_effect[-1].target if self._in_effect else self.engine
        if isinstance(prompt, Reset):
            return self.engine
        return self.engine_named(engine)

    def check(self, prompt: Prompt, engine: str | None = None) -> None:
        """Refuse a prompt the engine cannot take (outside the volume, wrong kind; a redo
        with nothing undone) without running anything."""
        if isinstance(prompt, Redo):
            again = self._redone()
            prompt, engine = again.prompt, again.engine
        self._target(prompt, engine).check(self.to_index(prompt))

    def _redone(self) -> "_Made":
        if not self._undone:
            raise PromptError("nothing to redo: no step was undone since the last new one")
        return self._undone[-1]

    def interact(self, prompt: Prompt, stop_after: int | None = None,
                 engine: str | None = None) -> Iterator[Update]:
        """Apply one RAS prompt (with `engine`: by that engine, starting from the current
        mask). The step is recorded once the engine has accepted it. If the caller stops
        early (cancel) or `stop_after` updates were applied, the record says how many, so
        that replay stops at the same place and gives the same mask."""
        record = prompt
        if isinstance(prompt, Redo):           # the undone step again, as it was made
            again = self._redone()
            prompt, engine = again.prompt, again.engine
            stop_after = again.stop_after if stop_after is None else stop_after
        target = self._target(prompt, engine)
        if target is not self.engine and not isinstance(prompt, Undo):
            # The other engine starts from the mask as it is (not a step of the record).
            for _ in target.interact(MaskPrompt(self.engine.mask.copy())):
                pass
            if self.engine.excluded is not None:          # and keeps off other segments
                for _ in target.interact(ExcludeMask(self.engine.excluded)):
                    pass
        updates = target.interact(self.to_index(prompt))
        item = next(updates, _END)             # validation errors surface here, unrecorded
        index = len(self._sequence.steps)
        named = None if engine is None or isinstance(record, Redo) else target.name
        self._sequence.append(record, engine=named)
        self._track(record, prompt, engine, target)
        applied = 0
        try:
            # The engine has applied an update to its mask by the time it yields it, so the
            # limit is checked before asking for the next one.
            while item is not _END:
                applied += 1
                yield item
                if stop_after is not None and applied >= stop_after:
                    break
                item = next(updates, _END)
        except GeneratorExit:
            raise
        except BaseException:
            # The engine restored its mask; the step did not happen.
            self._sequence.remove_step(index)
            self._untrack()
            item = _END
            raise
        finally:
            if item is not _END:
                self._sequence.stopped_after[index] = applied
                if not isinstance(prompt, Undo) and self._in_effect:
                    self._in_effect[-1].stop_after = applied
            updates.close()

    def _track(self, record: Prompt, prompt: Prompt, engine: str | None,
               target: Engine) -> None:
        """Book-keeping of a step taken: `record` as the file says it (Redo), `prompt` as
        the engine runs it."""
        self._history_before = (list(self._in_effect), list(self._undone))
        if isinstance(record, Undo):
            if self._in_effect:
                self._undone.append(self._in_effect.pop())
        elif isinstance(record, Redo):
            self._in_effect.append(self._undone.pop())
        else:
            self._in_effect.append(_Made(prompt, engine, target))
            self._undone.clear()                # a new step: what was undone is gone
        self.engine = target

    def _untrack(self) -> None:
        """The step failed: its book-keeping is taken back."""
        self._in_effect, self._undone = self._history_before

    def prompts_in_effect(self) -> list[tuple[int, Prompt]]:
        """The RAS prompts of the steps in effect since the last reset that have a place in
        the volume (what a viewer shows), each with a key that stays the same while its step
        is in effect (undo and redo move a step, they do not copy it)."""
        shown: list[tuple[int, Prompt]] = []
        for made in self._in_effect:
            if isinstance(made.prompt, Reset):
                shown = []
            elif has_place(made.prompt):
                shown.append((id(made), made.prompt))
        return shown

    def apply(self, prompt: Prompt, engine: str | None = None) -> np.ndarray:
        for _ in self.interact(prompt, engine=engine):
            pass
        return self.mask

    def finish(self) -> PromptSequence:
        self.sequence.record_result(self.mask)
        return self.sequence

    # ------------------------------------------------------------------ replay
    def replay(self, sequence: PromptSequence, base_dir: str | Path = ".",
               check_volume: bool = True) -> np.ndarray:
        """Apply every step of a recorded sequence (mask steps load their file)."""
        for _ in self.replay_steps(sequence, base_dir, check_volume):
            pass
        return self.mask

    def replay_steps(self, sequence: PromptSequence, base_dir: str | Path = ".",
                     check_volume: bool = True, resolve_mask=None) -> Iterator[Update]:
        """The updates of a replay, step after step (for a viewer that shows them).
        `resolve_mask(path)` may supply a mask step's mask from elsewhere than a file (the
        Slicer module keeps starting masks in the scene); None means "read the file"."""
        if check_volume and sequence.volume is not None:
            recorded = sequence.volume
            if tuple(recorded.shape) != self.volume.shape:
                raise PromptFileError(f"the prompts were recorded on a volume of shape "
                                      f"{tuple(recorded.shape)}, this one is {self.volume.shape}")
            if recorded.sha256 != self.identity.sha256:
                raise PromptFileError("the prompts were recorded on a different volume "
                                      "(voxel sha256 differs)")
        for index, step in enumerate(sequence.steps):
            if isinstance(step, MaskPrompt) and step.mask is None:    # or an exclude step
                mask = resolve_mask(step.path) if resolve_mask else None
                if mask is None:
                    mask = self.load_mask_prompt(Path(base_dir) / step.path).mask
                step = type(step)(mask=mask, path=step.path)
            yield from self.interact(step, stop_after=sequence.stopped_after.get(index),
                                     engine=sequence.step_engines.get(index))

    def load_mask_prompt(self, path: str | Path, record_as: str | None = None) -> MaskPrompt:
        """A starting mask from a segmentation file, which must share the volume's grid."""
        mask, geometry = read_mask(path)
        mismatch = grid_mismatch(mask.shape, geometry.ijk_to_ras, self.volume)
        if mismatch:
            raise PromptError(f"{Path(path).name} does not share the volume's grid ({mismatch})")
        return MaskPrompt(mask=mask, path=str(record_as or path))


def _registry_engine(name: str, device: str) -> Engine:
    from .registry import get_engine        # engines are imported on first use

    return get_engine(name, device=device)
