"""`verse`: cardiac MRI stacks, slice by slice (slice k = index k of the volume's first
axis). A structure button (Mode 1) segments that structure on every slice in one batched
call; a click then corrects its own slice (Mode 2: the structure's queries, the clicks on
that slice so far and the slice's previous result); clicks without a structure segment
whatever they mark (Mode 3). Each slice's image features are computed once and kept, so a
click costs only the decoder."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..backbones.checkpoint import file_sha256
from ..engine import Engine, Update, changed_region
from ..errors import PromptError
from .checkpoints import load_verse
from .config import STRUCTURE_CLASSES
from .descriptor import VERSE
from .slices import mask_to_model, model_pixel, normalised, to_model, to_slice_grid

BATCH_SLICES = 16        # slices per batched call (memory stays bounded on long stacks)


@dataclass(frozen=True)
class _Session:
    """What the prompts so far left (replaced, never changed in place: undo keeps it)."""
    structure: str | None = None
    previous: dict = field(default_factory=dict)   # slice -> last probability (1, 1, S, S)
    clicks: dict = field(default_factory=dict)     # slice -> (((row, col), label), ...)


def structure_name(text: str) -> str:
    """A structure as the engine names it (case-insensitive), or one line listing them."""
    known = {name.lower(): name for name in VERSE.structures}
    name = known.get(str(text).strip().lower())
    if name is None:
        raise PromptError(f"unknown structure {text!r}; verse knows: "
                          f"{', '.join(VERSE.structures)}")
    return name


class VerseEngine(Engine):
    descriptor = VERSE

    def __init__(self, weights=None, device=None):
        super().__init__(weights=weights, device=device)
        path = self._weights_file(weights, "an official VerSe checkpoint "
                                           "(medsam_model_epoch_74.pth)")
        self.model, self.checkpoint = load_verse(path, self.device)
        self.weights_sha256 = file_sha256(path)
        self._features: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------------ state
    def set_image(self, image, spacing_zyx=(1.0, 1.0, 1.0)) -> None:
        self._features = {}                 # a new image (reset keeps the features)
        super().set_image(image, spacing_zyx)

    def _on_image(self) -> None:
        self._session = _Session()

    def _save_state(self):
        return self._session

    def _restore_state(self, state) -> None:
        self._session = state

    # ------------------------------------------------------------------ interaction
    def check(self, prompt) -> None:
        super().check(prompt)
        if prompt.kind == "auto":
            structure_name(prompt.target)           # refused before any work starts

    def _interact(self, prompt):
        if prompt.kind == "auto":
            yield from self._segment_structure(structure_name(prompt.target))
        else:
            yield self._click(prompt)

    def _start_from(self, prompt):
        """On each slice a starting mask changes, it is the previous result from now on, and
        the clicks made there before no longer apply."""
        update = next(super()._start_from(prompt))
        mask = prompt.mask > 0
        if self._excluded is not None:
            mask = mask & ~self._excluded
        previous, clicks = dict(self._session.previous), dict(self._session.clicks)
        for k in np.flatnonzero((mask != (self._mask > 0)).any(axis=(1, 2))):
            previous[int(k)] = mask_to_model(mask[k:k + 1], self._size).to(self.device)
            clicks.pop(int(k), None)
        self._session = replace(self._session, previous=previous, clicks=clicks)
        yield update

    def _segment_structure(self, name: str):
        """Mode 1 on every slice."""
        if self.model.config.architecture != "verse":
            raise PromptError(f"these weights are a {self.model.config.architecture} model, "
                              "which takes clicks only: no structure buttons")
        index = STRUCTURE_CLASSES[name]
        slices = range(self.image.shape[0])
        probabilities = []
        with torch.no_grad():
            for start in range(0, len(slices), BATCH_SLICES):
                chosen = list(slices[start:start + BATCH_SLICES])
                features = self._features_for(chosen)
                structure = torch.full((len(chosen),), index, device=self.device)
                logits = self.model.decode(features, structure)[-1]
                probabilities.append(self.model.full_size(logits).sigmoid())
        probability = torch.cat(probabilities)
        mask = (to_slice_grid(probability.cpu(), self.image.shape[1:]) > 0.5).numpy()
        if self._excluded is not None:
            mask &= ~self._excluded                 # other segments' voxels are never taken
        if not mask.any():
            raise PromptError(f"no {name} found on any slice of this stack (is it a "
                              "short-axis cardiac MRI stack?); the segment is kept as it was")
        self._session = _Session(name, {k: probability[k:k + 1] for k in slices}, {})
        found = int(mask.any(axis=(1, 2)).sum())
        yield self._final_update(mask.astype(np.uint8),
                                 message=f"{name} on {found} of {len(slices)} slices")

    def _click(self, point) -> Update:
        """Mode 2 (a structure was segmented) or 3 on the click's slice."""
        z, row, col = point.position
        k = int(np.clip(round(z), 0, self.image.shape[0] - 1))
        pixel = model_pixel(row, col, self.image.shape[1:], self._size)
        session = self._session
        clicks = session.clicks.get(k, ()) + ((pixel, point.label),)
        previous = session.previous.get(k)
        structure = None
        if session.structure is not None:
            structure = torch.tensor([STRUCTURE_CLASSES[session.structure]], device=self.device)
        points = torch.tensor([[p for p, _ in clicks]], device=self.device)
        labels = torch.tensor([[label for _, label in clicks]], device=self.device)
        with torch.no_grad():
            logits = self.model.decode(self._features_for([k]), structure, points, labels,
                                       previous)[-1]
            probability = self.model.full_size(logits).sigmoid()
        slice_mask = (to_slice_grid(probability.cpu(), self.image.shape[1:]) > 0.5).numpy()
        self._session = replace(session, previous={**session.previous, k: probability},
                                clicks={**session.clicks, k: clicks})
        mode = 2 if structure is not None else 3
        return self._slice_update(k, slice_mask[0],
                                  f"slice {k}: click {len(clicks)} (Mode {mode})")

    def _slice_update(self, k: int, new: np.ndarray, message: str) -> Update:
        """The update that makes slice k `new` (only its changed box)."""
        changed = changed_region(self._mask[k:k + 1], new[None])
        if changed is None:
            return Update((slice(0, 0),) * 3, np.zeros((0, 0, 0), np.uint8), final=True,
                          progress=1.0, message=message)
        rows, cols = changed[1:]
        return Update((slice(k, k + 1), rows, cols), new[None, rows, cols].astype(np.uint8),
                      final=True, progress=1.0, message=message)

    # ------------------------------------------------------------------ features
    @property
    def _size(self) -> int:
        return self.model.config.image_size

    def _features_for(self, slices: list[int]) -> list[torch.Tensor]:
        """UTNet features of these slices, kept once computed. Slices are encoded in fixed
        batches (0-15, 16-31, ...): a slice's features never depend on which prompt came
        first (a batch's arithmetic differs in the last bits from a single slice's)."""
        for start in sorted({k - k % BATCH_SLICES for k in slices if k not in self._features}):
            batch = list(range(start, min(start + BATCH_SLICES, self.image.shape[0])))
            images = to_model(normalised(self.image[batch]), self._size).to(self.device)
            with torch.no_grad():
                encoded = self.model.encode(images)
            for i, k in enumerate(batch):
                self._features[k] = [level[i:i + 1] for level in encoded]
        per_slice = [self._features[k] for k in slices]
        return [torch.cat(levels) for levels in zip(*per_slice)]
