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

import numpy as np
from scipy import ndimage

from ..backbones.checkpoint import file_sha256
from ..data.regions import bounding_box, full_structure
from ..engine import Engine, Update, union_region
from ..errors import PromptError
from ..prompts import Point, Text
from . import along_vessel
from .checkpoints import load_model
from .correction import Step, depth_near, run_step
from .descriptor import MULTIMODAL


class MultimodalEngine(Engine):
    descriptor = MULTIMODAL

    def __init__(self, weights=None, device=None):
        super().__init__(weights=weights, device=device)
        path = self._weights_file(weights, "official SAM-HQ ViT-b weights (sam_hq_vit_b.pth)")
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
        z = self._voxel(prompt.position)[0]
        command = prompt.command if isinstance(prompt, Text) else None
        if command in ("remove", "make thinner", "make a connection") and not self._mask.any():
            raise PromptError(f"nothing to {command.replace('make ', '')}: the mask is empty")
        # On a single 2D image only "remove" has more to do than the model's step: its
        # piece logic holds on one slice as on many (a false piece goes whole).
        if command is None or (self.image.shape[0] == 1 and command != "remove"):
            yield self._slice_update(z, step, final=True)
        elif command == "extend":
            yield from self._extend(prompt.position)
        elif command == "remove":
            yield from self._remove(z, step)
        elif command == "make a connection":
            yield from self._connect(z, step, prompt.position)
        else:
            yield from self._along(z, step, prompt.position)

    def _voxel(self, position) -> tuple[int, ...]:
        """The voxel holding a position (a point on the image's far edge is in its last
        voxel)."""
        return tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(position, self.image.shape))

    def _step_on(self, z: int, step: Step, within=None) -> np.ndarray:
        """Slice z's mask after the step (the slice's sequence grows by it); `within`: the
        slice's pixels that may change (None: any the step's own rule allows)."""
        sequence = self._sequences.setdefault(z, []) + [step]
        new, _ = run_step(self.model, self.image[z], self._mask[z], sequence, self.device)
        self._sequences[z] = sequence
        if within is not None:
            new = np.where(within, new, self._mask[z])
        return new.astype(np.uint8)

    def _slice_update(self, z: int, step: Step, final: bool, message: str = "",
                      within=None) -> Update:
        return _slice_written(z, self._step_on(z, step, within), final, message)

    def _mask_box(self, click, margin: int = 2) -> tuple[slice, ...]:
        """The box of the mask grown to hold the click: 3D work costs what the segmented
        vessels cost, not what the scan costs."""
        box = bounding_box(self._mask > 0, margin) if self._mask.any() else \
            tuple(slice(0, n) for n in self._mask.shape)
        voxel = self._voxel(click)
        return tuple(slice(min(b.start, v), max(b.stop, v + 1)) for b, v in zip(box, voxel))

    def _along(self, z: int, step: Step, click):
        """thinner / thicker on each slice the clicked vessel crosses near the click, kept
        along its axis and across its width (along_vessel.along_the_axis)."""
        box = self._mask_box(click)
        component = np.zeros(self._mask.shape, bool)
        local = _local(self._voxel(click), box)
        component[box] = along_vessel.clicked_component(self._mask[box], local, self.spacing_zyx)
        if not component.any():
            yield self._slice_update(z, step, final=True)
            return
        done, kept, reach = [], None, along_vessel.ALONG_MM
        for slice_z in along_vessel.nearby_slices(z, self.image.shape[0], self.spacing_zyx[0]):
            point = along_vessel.vessel_point_on(component, slice_z, step.point)
            if point is None or np.linalg.norm(np.subtract((slice_z, *point), click)
                                               * self.spacing_zyx) > reach:
                continue
            new = self._step_on(slice_z, Step(point, step.command, 1))
            if kept is None:    # the slice nearest the click comes first
                kept = self._across_the_vessel(component, slice_z, point, new, click)
            done.append(slice_z)
            yield _slice_written(slice_z, np.where(kept[slice_z], new, self._mask[slice_z]),
                                 final=False, message=f"slice {slice_z}")
        yield Update(tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.uint8),
                     final=True, progress=1.0, message=f"{len(done)} slices along the vessel")

    def _across_the_vessel(self, component, z: int, point, after, click) -> np.ndarray:
        """Where thinner / thicker may change the volume: within the vessel's half-width at
        the click (before or `after` the model's step on slice z, the nearest one, so that
        "thicker" reaches as far as the model widens it; plus two voxels) of its centreline,
        along it within ALONG_MM (a ball of ALONG_MM around the click where it has none)."""
        spacing_yx = self.spacing_zyx[1:]
        radius = max(depth_near(self._mask[z] > 0, point, spacing_yx),
                     depth_near(after > 0, point, spacing_yx)) + 2 * max(spacing_yx)
        return along_vessel.along_the_axis(component, click, self.spacing_zyx, radius)

    def _remove(self, z: int, step: Step):
        before = self._mask[z] > 0
        taken = along_vessel.piece_nearest(before & ~(self._step_on(z, step) > 0), step.point)
        clicked = along_vessel.piece_nearest(before, step.point, self.spacing_zyx[1:],
                                             within_mm=along_vessel.POINTED_MM)
        # Where the model keeps most of the piece the user pointed at and said to remove (a
        # leaked vein looks like a vessel on its slice), the user's word decides.
        if clicked is not None and (taken is None
                                    or (taken & clicked).sum() < 0.5 * clicked.sum()):
            taken = clicked
        if taken is None:
            yield _box_update(None, None, "nothing removed here")
            return
        box = self._mask_box((z, *step.point))
        seeds = np.zeros([b.stop - b.start for b in box], bool)
        seeds[z - box[0].start] = taken[box[1:]]
        removed = along_vessel.removed_piece(self._mask[box], seeds, self.spacing_zyx)
        patch = self._mask[box].copy()
        patch[removed] = 0
        yield _box_update(box, patch, f"removed {int(removed.sum())} voxels")

    def _connect(self, z: int, step: Step, click):
        box = self._mask_box(click)
        tube = along_vessel.bridge(self._mask[box], _local(self._voxel(click), box),
                                   self.spacing_zyx)
        if tube is None:
            raise PromptError("nothing to connect: the mask near the point is in one piece")
        # The model's step on the slice, near the point.
        near = along_vessel.disc(self.image.shape[1:], click[1:], along_vessel.ALONG_MM,
                                 self.spacing_zyx[1:])
        yield self._slice_update(z, step, final=False, within=near)
        patch = self._mask[box].copy()
        patch[tube] = 1
        yield _box_update(box, patch, "connected")

    def _extend(self, click):
        """tracer3d from the point, taking the mask as traced already; of what it traces
        beyond the mask, the piece that continues from the point is added (not rims it may
        draw along vessels already there)."""
        tracer = self._tracer_engine()
        tracer.set_image(self.image, self.spacing_zyx)
        voxel = self._voxel(click)
        box = tuple(slice(v, v + 1) for v in voxel)
        try:
            # Traced beyond the mask only: tracks stop where they reach what is there.
            for update in tracer.trace_beyond(click, self._mask > 0):   # its box, not the scan
                if all(s.stop > s.start for s in update.region):
                    box = union_region(box, update.region)
        except PromptError as refused:
            raise PromptError(f"nothing to extend from here: {refused}") from None
        new = (tracer.mask[box] > 0) & (self._mask[box] == 0)
        at = _local(voxel, box)
        added = along_vessel.continuation(new, at, self.spacing_zyx)
        if added is None:
            raise PromptError("nothing to extend from here: the tracer found no vessel beyond "
                              "the mask near the point")
        patch = self._mask[box].copy()
        patch[added] = 1
        yield _box_update(box, patch, f"extended by {int(added.sum())} voxels (tracer3d)")

    def _tracer_engine(self):
        if self._tracer is None:
            from ..registry import get_engine
            self._tracer = get_engine("tracer3d", device=self.device)
        return self._tracer


def _slice_written(z: int, new: np.ndarray, final: bool, message: str = "") -> Update:
    """The update writing slice z's new mask."""
    region = (slice(z, z + 1), slice(0, new.shape[0]), slice(0, new.shape[1]))
    return Update(region, new[None].astype(np.uint8), final=final,
                  progress=1.0 if final else None, message=message or f"slice {z}")


def _box_update(box, patch, message: str) -> Update:
    """The final update writing `patch` into `box` (None: nothing changes)."""
    if box is None:
        box, patch = tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.uint8)
    return Update(box, patch.astype(np.uint8), final=True, progress=1.0, message=message)


def _local(voxel, box) -> np.ndarray:
    """A voxel's index within a box."""
    return np.subtract(voxel, [b.start for b in box])
