"""`multimodal`: correct a vessel mask with a point and a text command (or a plain click).

Each step is decided by the model on the 256 x 256 crop of the clicked slice around the
point, conditioned on the earlier steps of that slice's sequence (the Prompt Sequence
Module) and on the current mask. On a 2D image that is the whole step. On a 3D volume the
commands act on the vessel (along_vessel.py): thinner/thicker on every slice it crosses
within a few millimetres, remove back to where the piece joins the rest, a connection as a
tube between the two nearest pieces, and extend handed to tracer3d from the point (what it
traces that is connected to the point is added; what was there stays).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..backbones.checkpoint import file_sha256
from ..data.regions import full_structure
from ..engine import Engine, Update
from ..errors import EngineError, PromptError
from ..prompts import Point, Text
from . import along_vessel
from .checkpoints import DEFAULT_WEIGHTS, load_model
from .correction import Step, run_step
from .descriptor import MULTIMODAL


class MultimodalEngine(Engine):
    descriptor = MULTIMODAL

    def __init__(self, weights=None, device=None):
        super().__init__(weights=weights, device=device)
        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if weights is None and not self.descriptor.ready():
            raise EngineError(f"multimodal has no weights: {path} is missing; train them with "
                              "`ivseg train --engine multimodal`")
        self.model, self.checkpoint = load_model(path, self.device)
        self.weights_path, self.weights_sha256 = str(path), file_sha256(path)
        self._sequences: dict[int, list[Step]] = {}
        self._tracer = None

    # ------------------------------------------------------------------ state
    def _on_image(self) -> None:
        self._sequences = {}

    def _save_state(self):
        return {z: list(steps) for z, steps in self._sequences.items()}

    def _restore_state(self, state) -> None:
        self._sequences = {z: list(steps) for z, steps in state.items()}

    # ------------------------------------------------------------------ steps
    def _interact(self, prompt):
        if isinstance(prompt, Text):
            if prompt.position is None:
                raise PromptError(f"the text command {prompt.command!r} needs a point: click "
                                  "where it applies")
            step = Step.text(prompt.position[1:], prompt.command)
        elif isinstance(prompt, Point):
            step = Step(tuple(prompt.position[1:]), -1, prompt.label)
        else:
            raise PromptError(f"multimodal does not take {prompt.kind} prompts")
        z = int(round(prompt.position[0]))
        command = prompt.command if isinstance(prompt, Text) else None
        if command in ("remove", "make thinner", "make a connection") and not self._mask.any():
            raise PromptError(f"nothing to {command.replace('make ', '')}: the mask is empty")
        if self.image.shape[0] == 1 or command is None:
            yield self._slice_update(z, step, final=True)
        elif command == "extend":
            yield from self._extend(prompt.position)
        elif command == "remove":
            yield self._remove(z, step)
        elif command == "make a connection":
            yield self._connect(z, step, prompt.position)
        else:
            yield from self._along(z, step, prompt.position)

    def _step_on(self, z: int, step: Step) -> np.ndarray:
        """Slice z's mask after the step (the slice's sequence grows by it)."""
        sequence = self._sequences.setdefault(z, []) + [step]
        new, _ = run_step(self.model, self.image[z], self._mask[z], sequence, self.device)
        self._sequences[z] = sequence
        return new.astype(np.uint8)

    def _slice_update(self, z: int, step: Step, final: bool, message: str = "") -> Update:
        new = self._step_on(z, step)
        region = (slice(z, z + 1), slice(0, new.shape[0]), slice(0, new.shape[1]))
        return Update(region, new[None], final=final, progress=1.0 if final else None,
                      message=message or f"slice {z}")

    def _along(self, z: int, step: Step, click):
        """thinner / thicker on each slice the clicked vessel crosses near the click."""
        component = along_vessel.clicked_component(self._mask, click, self.spacing_zyx)
        if not component.any():
            yield self._slice_update(z, step, final=True)
            return
        done = []
        for slice_z in along_vessel.nearby_slices(z, self.image.shape[0], self.spacing_zyx[0]):
            point = along_vessel.vessel_point_on(self._mask, component, slice_z, step.point)
            if point is None:
                continue
            done.append(slice_z)
            yield self._slice_update(slice_z, Step(point, step.command, 1), final=False,
                                     message=f"slice {slice_z}")
        yield Update(tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.uint8),
                     final=True, progress=1.0, message=f"{len(done)} slices along the vessel")

    def _remove(self, z: int, step: Step) -> Update:
        before = self._mask[z] > 0
        after = self._step_on(z, step) > 0
        seeds = np.zeros(self._mask.shape, bool)
        seeds[z] = before & ~after
        if not seeds.any():
            return self._final_update(self._mask, message="nothing removed here")
        removed = along_vessel.removed_piece(self._mask, seeds, self.spacing_zyx)
        new = self._mask.copy()
        new[removed] = 0
        return self._final_update(new, message=f"removed {int(removed.sum())} voxels")

    def _connect(self, z: int, step: Step, click) -> Update:
        tube = along_vessel.bridge(self._mask, click, self.spacing_zyx)
        if tube is None:
            raise PromptError("nothing to connect: the mask near the point is in one piece")
        new = self._mask.copy()
        new[z] = self._step_on(z, step)
        new[tube] = 1
        return self._final_update(new, message="connected")

    def _extend(self, click):
        """tracer3d from the point; what it traces that is connected to the point is added."""
        tracer = self._tracer_engine()
        tracer.set_image(self.image, self.spacing_zyx)
        traced = tracer.run(Point(tuple(click))) > 0
        pieces, _ = ndimage.label(traced | (self._mask > 0), full_structure(3))
        voxel = tuple(int(round(c)) for c in click)
        if pieces[voxel] == 0:
            raise PromptError("nothing to extend from here: no vessel was traced at the point")
        added = (pieces == pieces[voxel]) & traced & (self._mask == 0)
        new = self._mask.copy()
        new[added] = 1
        yield self._final_update(new, message=f"extended by {int(added.sum())} voxels (tracer3d)")

    def _tracer_engine(self):
        if self._tracer is None:
            from ..registry import get_engine
            self._tracer = get_engine("tracer3d", device=self.device)
        return self._tracer
