"""The engine protocol, shared by every method (the registry that builds engines by name is
`registry.py`; what an engine is, for shared code, is its `descriptor.py`).

An engine is an interactive session: `set_image` once, then `interact(prompt)` any number of
times. `interact` is a generator of `Update`s (the changed region and its new voxels), so a
viewer can show a trace slice by slice; the last update is final. The base class owns the
mask, the undo history and the guarantee that a failed interaction leaves the mask as it was.
Prompts reach engines in voxel index space (z, y, x floats).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from .descriptor import EngineDescriptor
from .errors import EngineError, PromptError
from .prompts import ExcludeMask, MaskPrompt, Prompt, Reset, Undo

Region = tuple[slice, slice, slice]


@dataclass
class Update:
    """New voxels for `region` of the mask (uint8 patch of the region's shape)."""
    region: Region
    patch: np.ndarray
    final: bool = False
    progress: float | None = None   # 0..1 when the engine can tell
    message: str = ""

    @property
    def bounds(self) -> tuple[tuple[int, int], ...]:
        return tuple((s.start, s.stop) for s in self.region)


def full_region(shape) -> Region:
    return tuple(slice(0, n) for n in shape)


def changed_region(before: np.ndarray, after: np.ndarray) -> Region | None:
    """Smallest box holding every voxel that differs, or None if nothing changed."""
    diff = before != after
    if not diff.any():
        return None
    region = []
    for axis in range(diff.ndim):
        present = np.flatnonzero(diff.any(axis=tuple(a for a in range(diff.ndim) if a != axis)))
        region.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(region)


def union_region(a: Region | None, b: Region | None) -> Region | None:
    if a is None or b is None:
        return a or b
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def _size(region: Region) -> int:
    return int(np.prod([s.stop - s.start for s in region]))


def _all_finite(image: np.ndarray, slab: int = 16) -> bool:
    """No NaN or infinity (integers have none); checked a slab at a time, so a clinical
    volume needs no whole-volume temporary."""
    if not np.issubdtype(image.dtype, np.floating):
        return True
    return all(np.isfinite(image[z:z + slab]).all() for z in range(0, image.shape[0], slab))


class _MaskBefore:
    """What the mask held before an interaction, kept slice by slice in the box that updates
    have touched there (grown as they touch more), so a click on a clinical volume copies
    what its vessel covers, not the mask or its whole slices."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.boxes: dict[int, tuple[slice, slice, np.ndarray]] = {}

    def keep(self, region: Region) -> None:
        rows, cols = region[1:]
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return
        for z in range(region[0].start, region[0].stop):
            kept = self.boxes.get(z)
            if kept is None:
                self.boxes[z] = (rows, cols, self.mask[z, rows, cols].copy())
                continue
            old_rows, old_cols, old = kept
            grown = (slice(min(rows.start, old_rows.start), max(rows.stop, old_rows.stop)),
                     slice(min(cols.start, old_cols.start), max(cols.stop, old_cols.stop)))
            if grown == (old_rows, old_cols):
                continue
            # Outside the old box nothing was touched yet: the mask still holds it.
            values = self.mask[z][grown].copy()
            values[old_rows.start - grown[0].start:old_rows.stop - grown[0].start,
                   old_cols.start - grown[1].start:old_cols.stop - grown[1].start] = old
            self.boxes[z] = (*grown, values)

    def restore(self) -> None:
        for z, (rows, cols, old) in self.boxes.items():
            self.mask[z, rows, cols] = old

    def of(self, region: Region) -> np.ndarray:
        """The region as it was."""
        old = self.mask[region].copy()
        for z in range(region[0].start, region[0].stop):
            if z not in self.boxes:
                continue
            rows, cols, kept = self.boxes[z]
            top, left = max(rows.start, region[1].start), max(cols.start, region[2].start)
            bottom, right = min(rows.stop, region[1].stop), min(cols.stop, region[2].stop)
            if top < bottom and left < right:
                old[z - region[0].start, top - region[1].start:bottom - region[1].start,
                    left - region[2].start:right - region[2].start] = \
                    kept[top - rows.start:bottom - rows.start, left - cols.start:right - cols.start]
        return old


def resolve_device(device=None) -> str:
    """CUDA when available unless told otherwise. A device asked for by name must exist:
    one clear error, never a silent fall back to another device."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(device)
    try:
        parsed = torch.device(name)
    except RuntimeError:
        raise EngineError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"device {name!r} asked for, but this machine has no usable CUDA "
                              f"GPU (torch {torch.__version__}); use --device cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EngineError(f"device {name!r} asked for, but this machine has "
                              f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise EngineError(f"device {name!r} asked for, but MPS is not available here")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise EngineError(f"device {name!r} is not one the engines run on (cpu, cuda, mps)")
    return name


class Engine:
    """Base class: subclasses name their `descriptor` and implement `_interact` (and
    optionally the state hooks)."""

    descriptor: ClassVar[EngineDescriptor]

    def __init__(self, weights=None, device=None):
        if weights is not None and not self.descriptor.takes_weights:
            raise EngineError(f"engine {self.name!r} takes no weights file")
        # An engine without a model (regiongrow) runs in numpy and never loads torch.
        self.device = resolve_device(device) if self.descriptor.takes_weights else "cpu"
        self.weights_sha256: str | None = None
        self.image: np.ndarray | None = None
        self.spacing_zyx = (1.0, 1.0, 1.0)
        self._mask: np.ndarray | None = None
        # Voxels that are never this structure (other segments, an exclude step), or None.
        self._excluded: np.ndarray | None = None
        self._history: list[tuple[Region, np.ndarray, tuple]] = []

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def capabilities(self) -> frozenset[str]:
        return self.descriptor.capabilities

    @property
    def settings(self) -> dict:
        """The user's choices this engine was made with (recorded with the prompts)."""
        return {}

    # ------------------------------------------------------------------ protocol
    def set_image(self, image: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> None:
        image = np.asarray(image)
        if image.ndim != 3:
            raise PromptError(f"engines take a 3D (z, y, x) image, got {image.ndim}D; "
                              "a 2D image is a single-slice volume")
        if self.descriptor.needs_3d and image.shape[0] < 2:
            raise EngineError(f"engine {self.name!r} needs a 3D volume; this image is a "
                              "single 2D slice")
        if image.size == 0 or not _all_finite(image):
            raise PromptError("the image is empty or contains NaN/infinite voxels")
        spacing = tuple(float(s) for s in spacing_zyx)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise PromptError(f"spacing must be three positive numbers, got {spacing_zyx!r}")
        self.image = image
        self.spacing_zyx = spacing
        self._mask = np.zeros(image.shape, np.uint8)
        self._excluded = None
        self._history.clear()
        self._on_image()

    @property
    def mask(self) -> np.ndarray:
        self._require_image()
        return self._mask

    @property
    def excluded(self) -> np.ndarray | None:
        """Voxels this engine never puts in its mask (an exclude step), or None."""
        return self._excluded

    def accepts(self, kind: str) -> bool:
        """Undo, reset, a starting mask and an excluded region are taken by every engine."""
        return kind in self.capabilities or kind in ("undo", "reset", "mask", "exclude")

    def interact(self, prompt: Prompt) -> Iterator[Update]:
        """Apply one prompt, yielding updates as they are ready.

        Stopping early (closing the generator) keeps what is done and remains undoable; an
        exception restores the mask and the engine state to what they were before."""
        self._require_image()
        if isinstance(prompt, Undo):
            update = self.undo()
            if update is not None:
                yield update
            return
        if isinstance(prompt, Reset):
            yield self.reset()
            return
        self.check(prompt)
        before = _MaskBefore(self._mask)
        state = (self._save_state(), self._excluded)
        touched: Region = tuple(slice(0, 0) for _ in range(3))
        if isinstance(prompt, ExcludeMask):
            work = self._exclude(prompt)
        elif isinstance(prompt, MaskPrompt) and "mask" not in self.capabilities:
            work = self._start_from(prompt)
        else:
            work = self._interact(prompt)
        try:
            for update in work:
                if self._excluded is not None and _size(update.region):
                    # Finished work elsewhere is never taken, whatever the engine proposes.
                    update = replace(update, patch=np.where(self._excluded[update.region], 0,
                                                            update.patch).astype(np.uint8))
                before.keep(update.region)
                self._mask[update.region] = update.patch
                if _size(update.region):       # a progress-only update touches nothing
                    touched = (union_region(touched, update.region) if _size(touched)
                               else update.region)
                yield update
        except GeneratorExit:
            pass                       # cancelled by the caller: keep what was done
        except BaseException:
            before.restore()
            self._restore(state)
            raise
        # Every finished or cancelled interaction is one undo step, even one that changed
        # nothing, so that "undo" always means "take back the last prompt".
        self._history.append((touched, before.of(touched), state))

    def check(self, prompt: Prompt) -> None:
        """The cheap checks `interact` starts with (kind accepted, inside the image), for
        callers that validate on one thread and work on another."""
        self._require_image()
        if isinstance(prompt, (Undo, Reset)):
            return
        if not self.accepts(prompt.kind):
            raise PromptError(f"engine {self.name!r} does not take {prompt.kind} prompts "
                              f"(it takes: {', '.join(sorted(self.capabilities))})")
        prompt.check_inside(self.image.shape)
        if self._excluded is not None and prompt.kind == "point" and prompt.label == 1:
            voxel = tuple(int(np.clip(round(c), 0, n - 1))
                          for c, n in zip(prompt.position, self.image.shape))
            if self._excluded[voxel]:
                raise PromptError("the click is on another segment, which this one may not "
                                  "take (other segments are excluded)")

    def run(self, prompt: Prompt) -> np.ndarray:
        """Apply a prompt to completion and return the mask."""
        for _ in self.interact(prompt):
            pass
        return self.mask

    def undo(self) -> Update | None:
        self._require_image()
        if not self._history:
            return None
        region, old, state = self._history.pop()
        self._mask[region] = old
        self._restore(state)
        return Update(region, old.copy(), final=True, message="undo")

    def reset(self) -> Update:
        self._require_image()
        region = full_region(self._mask.shape)
        self._history.append((region, self._mask.copy(), (self._save_state(), self._excluded)))
        self._mask[...] = 0
        self._on_image()
        return Update(region, self._mask.copy(), final=True, message="reset")

    def _start_from(self, prompt: MaskPrompt) -> Iterator[Update]:
        """A starting mask for engines with no use of their own for it: it becomes the
        current mask, which their prompts then add to (nothing the user had is lost)."""
        yield self._final_update((prompt.mask > 0).astype(np.uint8), message="starting mask")

    def _exclude(self, prompt: ExcludeMask) -> Iterator[Update]:
        """From now on the region is never in the mask; what the mask holds there goes."""
        excluded = np.asarray(prompt.mask) > 0
        self._excluded = excluded if excluded.any() else None
        yield self._final_update(np.where(excluded, 0, self._mask).astype(np.uint8),
                                 message="other segments excluded")

    def _restore(self, state: tuple) -> None:
        engine_state, self._excluded = state
        self._restore_state(engine_state)

    # ------------------------------------------------------------------ for subclasses
    def _interact(self, prompt: Prompt) -> Iterator[Update]:
        raise NotImplementedError

    def _on_image(self) -> None:
        """Reset per-image engine state (called by set_image and reset)."""

    def _save_state(self) -> object:
        """Engine state (besides the mask) that undo must restore, e.g. accumulated clicks."""
        return None

    def _restore_state(self, state: object) -> None:
        pass

    def _final_update(self, new_mask: np.ndarray, message: str = "") -> Update:
        """The update that turns the current mask into `new_mask` (only the changed box)."""
        region = changed_region(self._mask, new_mask) or tuple(slice(0, 0) for _ in range(3))
        return Update(region, new_mask[region].astype(np.uint8), final=True, progress=1.0,
                      message=message)

    def _weights_file(self, weights, official: str) -> Path | None:
        """The weights file to load: the one given, else the engine's embedded weights (None
        for an engine without any); when those are missing, one line saying how to get some
        (`official`: the paper's file)."""
        path = Path(weights) if weights is not None else self.descriptor.weights_path
        if weights is None and not self.descriptor.ready():
            raise EngineError(f"{self.name} has no weights: {path} is missing; train them "
                              f"with `ivseg train --engine {self.name}`, or give {official}")
        return path

    # ------------------------------------------------------------------ checks
    def _require_image(self) -> None:
        if self.image is None:
            raise EngineError(f"engine {self.name!r} has no image: call set_image first")
