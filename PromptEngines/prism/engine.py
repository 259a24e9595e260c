"""`prism`: 3D points, boxes, scribbles and a starting mask, iterated. Each prompt is one of
the paper's iterations: its new clicks (every 4th voxel of a scribble), the box (kept for
every later iteration) and the previous logits go to the prompt encoder; of the candidate
masks the one with the highest predicted Dice is kept; the corrective refinement corrects it
from every click so far; its logits are the next iteration's previous mask.

The model sees a cube (`config.image_size`^3 voxels 1 mm apart) placed around the first
spatial prompt (a box's centre, a click, a scribble's middle), never around ground truth;
the image is resampled into it and windowed (`intensity.py`), encoded once, and every result
is resampled back onto the volume's own grid where the cube covers it. A box larger than the
cube, or a later prompt outside it, is refused with a message that says so (reset starts a
new cube).

A correction (a click or scribble once there is a mask) changes the mask only near, on the
side of and as deep as the error it marks (`local_correction.py`), and only the voxels near
that change are written back: a correction never undoes good work elsewhere. Off
(`local_corrections=False`): the model's whole-cube output, as the paper."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from ..backbones.checkpoint import file_sha256
from ..engine import Engine, Update
from ..errors import PromptError
from .checkpoints import load_prism
from .cube import Cube
from .descriptor import PRISM
from .intensity import DEFAULT_WINDOW, window
from .local_correction import merge_locally

MODEL_MM = 1.0              # the paper resamples to 1 mm isotropic
MASK_LOGIT = 4.0            # a starting mask as previous logits: +/- this
MAX_SCRIBBLE_CLICKS = 1000  # voxels of a scribble given as clicks (the paper: up to 10000)
# A scribble gives every 4th of its voxels (in stroke order) as clicks: with every voxel the
# model over-reacts to the crowd of near-identical clicks (68 % of held-out sessions never
# dropped by more than 0.01; every 4th: 91 %, the same Dice after 11 iterations).
SCRIBBLE_STEP = 4


@dataclass(frozen=True)
class _Session:
    """What the iterations so far left (replaced, never changed in place: undo keeps it)."""
    cube: Cube
    image: torch.Tensor              # the windowed cube (1, 1, S, S, S)
    features: tuple                  # its encoding, computed once
    previous: torch.Tensor           # the last logits (1, 1, S, S, S)
    box: torch.Tensor | None         # (1, 6) in cube voxels, kept for every iteration
    clicks: tuple = ()               # every click so far: ((z, y, x), label) in cube voxels
    iterations: int = 0


class PrismEngine(Engine):
    descriptor = PRISM

    def __init__(self, weights=None, device=None, intensity: str = DEFAULT_WINDOW,
                 refine: bool = True, select: bool = True, local_corrections: bool = True):
        """`refine` / `select`: the corrective refinement and the confidence selector (off:
        the first candidate): on as the paper, off for its ablations. `local_corrections`:
        a correction changes the mask only near where it was made (`local_correction.py`);
        off: the model's whole-cube output, as the paper."""
        super().__init__(weights=weights, device=device)
        self.refine, self.select, self.local = refine, select, local_corrections
        path = self._weights_file(weights, "an official PRISM checkpoint (best.pth.tar)")
        self.model, self.checkpoint = load_prism(path, self.device)
        self.window, self.intensity = window(intensity), intensity
        self.weights_sha256 = file_sha256(path)

    @property
    def settings(self) -> dict:
        return {"intensity": self.intensity}

    # ------------------------------------------------------------------ state
    def _on_image(self) -> None:
        self._session: _Session | None = None

    def _save_state(self):
        return self._session

    def _restore_state(self, state) -> None:
        self._session = state

    @property
    def working_region(self) -> tuple[slice, slice, slice] | None:
        """The volume voxels the cube covers (where prompts may go now); None before the
        first spatial prompt."""
        return None if self._session is None else self._session.cube.region(self.image.shape)

    # ------------------------------------------------------------------ interaction
    def _interact(self, prompt):
        if prompt.kind == "mask":
            mask = (prompt.mask > 0).astype(np.uint8)
            if self._session is not None:
                self._session = replace(self._session, previous=self._as_logits(
                    self._session.cube, mask))
            yield self._final_update(mask, message="starting mask")
            return
        if prompt.kind == "box":
            self._check_box(prompt)
        session = self._session or self._open(prompt)
        clicks, box = self._prompt_in_cube(session, prompt)
        box = box if box is not None else session.box
        every = session.clicks + tuple(clicks)
        with torch.no_grad():
            prediction = self.model.predict(session.features, *self._tensors(clicks), box,
                                            session.previous, select=self.select)
            if self.refine and self.model.config.refine and every:
                prediction = self.model.refine(session.image, prediction,
                                               *self._tensors(every))
        logits = prediction.logits
        # A correction of a mask (not a first prompt, not a new box: it restates the object).
        local = self.local and box is session.box and bool((session.previous > 0).any())
        if local:
            logits = merge_locally(session.previous, logits, clicks, MODEL_MM)
        self._session = replace(session, previous=logits, box=box, clicks=every,
                                iterations=session.iterations + 1)
        region, patch = self._paste(session, logits, local)
        score = float(prediction.scores[0, prediction.chosen[0]])
        yield Update(region, patch, final=True, progress=1.0,
                     message=f"iteration {session.iterations + 1}: predicted Dice {score:.2f}")

    def _paste(self, session: _Session, logits: torch.Tensor, local: bool):
        """(region, patch) of the volume the cube covers; nothing outside it is read or
        copied. After a local correction only the voxels near what changed in the cube are
        written: the rest keep the volume's mask exactly (no resampling round trip)."""
        shape = self.image.shape
        region, patch = session.cube.paste(logits[0, 0].cpu().numpy(), shape)
        if local:
            changed = (session.previous[0, 0] > 0) != (logits[0, 0] > 0)
            near = ndimage.binary_dilation(changed.cpu().numpy())
            _, touched = session.cube.paste(np.where(near, 1.0, -1.0), shape)
            patch = np.where(touched > 0, patch, self._mask[region]).astype(np.uint8)
        return region, patch

    def _tensors(self, clicks):
        """Clicks as the model takes them: coords (1, N, 3) and labels (1, N)."""
        coords = torch.tensor([c for c, _ in clicks], dtype=torch.long, device=self.device)
        labels = torch.tensor([label for _, label in clicks], dtype=torch.long,
                              device=self.device)
        return coords.reshape(1, -1, 3), labels.reshape(1, -1)

    # ------------------------------------------------------------------ the cube
    def _open(self, prompt) -> _Session:
        """The cube around the first spatial prompt, encoded once."""
        size = self.model.config.image_size
        if prompt.kind == "box":
            centre = (np.asarray(prompt.low) + np.asarray(prompt.high)) / 2
        else:
            positions = np.asarray(prompt.positions(), float)
            centre = positions.mean(axis=0)
        cube = Cube.around(centre, self.spacing_zyx, size, MODEL_MM)
        image = torch.from_numpy(self.window.apply(cube.sample(self.image)))[None, None]
        image = image.to(self.device)
        with torch.no_grad():
            features = self.model.encode(image)
        # The mask so far (a starting mask, what other segments left) is the dense prompt.
        return _Session(cube, image, features, self._as_logits(cube, self._mask), None)

    def _check_box(self, box) -> None:
        size = self.model.config.image_size * MODEL_MM
        reach = (np.asarray(box.high) - np.asarray(box.low)) * self.spacing_zyx
        thin = [axis for axis, r, s in zip("zyx", reach, self.spacing_zyx) if r < s]
        if thin:
            raise PromptError(f"the box has no size along {', '.join(thin)}: prism takes a 3D "
                              "box around the object")
        if np.any(reach > size):
            raise PromptError(f"the box is {reach.max():.0f} mm across; prism sees a "
                              f"{size:.0f} mm cube: draw a smaller box (or segment the object "
                              "in parts)")

    def _as_logits(self, cube: Cube, mask: np.ndarray) -> torch.Tensor:
        """A mask as previous logits in the cube (zeros, "no mask yet", where it is empty)."""
        inside = cube.sample(mask) > 0.5
        if not inside.any():
            return torch.zeros((1, 1, *inside.shape), device=self.device)
        logits = np.where(inside, MASK_LOGIT, -MASK_LOGIT).astype(np.float32)
        return torch.from_numpy(logits)[None, None].to(self.device)

    def _prompt_in_cube(self, session: _Session, prompt):
        """(clicks [((z, y, x), label)], box (1, 6) or None) in cube voxels."""
        cube, size = session.cube, session.cube.size
        if prompt.kind == "box":
            a, b = cube.to_cube(prompt.low), cube.to_cube(prompt.high)
            low = np.clip(np.round(np.minimum(a, b)), 0, size - 1)
            high = np.clip(np.round(np.maximum(a, b)), 0, size - 1) + 1     # as the reference
            return [], torch.tensor([[*low, *high]], dtype=torch.long, device=self.device)
        points = [cube.to_cube(p) for p in prompt.positions()]
        for point in points:
            if not cube.contains(point):
                raise PromptError(f"the {prompt.kind} reaches outside prism's working cube "
                                  f"({size * MODEL_MM:.0f} mm around the first prompt); "
                                  "reset to start a new cube there")
        if prompt.kind == "scribble":
            points = _along(points)
        voxels = dict.fromkeys(tuple(int(v) for v in np.clip(np.round(p), 0, size - 1))
                               for p in points)          # each voxel once, in stroke order
        voxels = list(voxels)[::SCRIBBLE_STEP] if prompt.kind == "scribble" else list(voxels)
        return [(v, prompt.label) for v in voxels[:MAX_SCRIBBLE_CLICKS]], None


def _along(points) -> list[np.ndarray]:
    """A polyline's points about one cube voxel apart (a scribble's voxels)."""
    if len(points) == 1:
        return list(points)
    out = []
    for a, b in zip(points, points[1:]):
        steps = max(int(np.ceil(np.abs(b - a).max())), 1)
        out.extend(a + (b - a) * t for t in np.arange(steps) / steps)
    out.append(points[-1])
    return out
