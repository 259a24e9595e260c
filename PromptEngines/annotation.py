"""One annotation of one volume by one engine: RAS prompts in, engine updates out, every
step recorded in a PromptSequence that replays to the same mask bit for bit.

The CLI and the Slicer module's session both drive engines through this class, so
conversion from RAS, validation and recording happen the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .data.segmentation_file import read_mask
from .data.volume import Volume, grid_mismatch
from .engine import Engine, Update
from .errors import PromptError, PromptFileError
from .prompts import MaskPrompt, Prompt, PromptSequence, VolumeIdentity
from .threads import in_background

_END = object()


class Annotation:
    def __init__(self, volume: Volume, engine: Engine, segment: str = "vessel"):
        self.volume = volume.validated()
        self.engine = engine
        engine.set_image(volume.array, volume.spacing_zyx)
        # The record names the volume by a hash of its voxels: half a second at clinical
        # size, so it is computed beside the first prompt, not before it.
        self._identity = in_background(volume.identity)
        self._sequence = PromptSequence(engine=engine.name, weights_sha256=engine.weights_sha256,
                                        segment=segment)

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

    def check(self, prompt: Prompt) -> None:
        """Refuse a prompt the engine cannot take (outside the volume, wrong kind) without
        running anything."""
        self.engine.check(self.to_index(prompt))

    def interact(self, prompt: Prompt, stop_after: int | None = None) -> Iterator[Update]:
        """Apply one RAS prompt. The step is recorded once the engine has accepted it. If the
        caller stops early (cancel) or `stop_after` updates were applied, the record says how
        many, so that replay stops at the same place and gives the same mask."""
        updates = self.engine.interact(self.to_index(prompt))
        item = next(updates, _END)             # validation errors surface here, unrecorded
        index = len(self._sequence.steps)
        self._sequence.append(prompt)
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
            del self._sequence.steps[index]
            item = _END
            raise
        finally:
            if item is not _END:
                self._sequence.stopped_after[index] = applied
            updates.close()

    def apply(self, prompt: Prompt) -> np.ndarray:
        for _ in self.interact(prompt):
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
            if isinstance(step, MaskPrompt) and step.mask is None:
                mask = resolve_mask(step.path) if resolve_mask else None
                step = (MaskPrompt(mask=mask, path=step.path) if mask is not None else
                        self.load_mask_prompt(Path(base_dir) / step.path, record_as=step.path))
            yield from self.interact(step, stop_after=sequence.stopped_after.get(index))

    def load_mask_prompt(self, path: str | Path, record_as: str | None = None) -> MaskPrompt:
        """A starting mask from a segmentation file, which must share the volume's grid."""
        mask, geometry = read_mask(path)
        mismatch = grid_mismatch(mask.shape, geometry.ijk_to_ras, self.volume)
        if mismatch:
            raise PromptError(f"{Path(path).name} does not share the volume's grid ({mismatch})")
        return MaskPrompt(mask=mask, path=str(record_as or path))
