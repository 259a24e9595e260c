"""One correction step on one slice, as the engine, the trainer's evaluation and the
benchmark all run it: the 256 x 256 crop around the step's point, the model conditioned on
the point, its text and the earlier steps of the sequence, with the current mask as the mask
prompt; the crop's new mask pasted back (nothing outside the crop changes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..data.regions import full_structure, window
from ..evaluation.metrics import skeleton
from ..prompts import TEXT_COMMANDS
from .along_vessel import piece_nearest
from .crops import crop_origin, cropped, mask_prompt

REACH_PX = 8          # a step's changes within this many pixels of its point, and what
                      # connects to them, are kept (near_the_point)


@dataclass(frozen=True)
class Step:
    point: tuple[float, float]        # (y, x) slice pixels
    command: int = -1                 # index into TEXT_COMMANDS; -1: a plain click
    label: int = 1                    # a plain click's: 1 add, 0 remove (a text step: 1)

    @classmethod
    def text(cls, point, command: str) -> "Step":
        return cls(tuple(point), TEXT_COMMANDS.index(command), 1)


def sequence_inputs(steps: list[Step], origin, size: int, device="cpu"):
    """Points (1, K, 2) in crop pixels, labels and commands (1, K) of the steps whose point
    lies in the crop (earlier steps elsewhere on the slice say nothing about this crop);
    the last step is always in it."""
    inside = [s for s in steps[:-1] if all(0 <= p - o < size for p, o in zip(s.point, origin))]
    kept = inside + [steps[-1]]
    points = torch.tensor([[[p - o for p, o in zip(s.point, origin)] for s in kept]],
                          dtype=torch.float32, device=device)
    labels = torch.tensor([[s.label for s in kept]], dtype=torch.long, device=device)
    commands = torch.tensor([[s.command for s in kept]], dtype=torch.long, device=device)
    return points, labels, commands


def crop_inputs(image2d, mask2d, point, size: int, device="cpu"):
    """(origin, valid pixels, image tensor (1,1,S,S), mask-prompt tensor (1,1,S,S))."""
    origin = crop_origin(point, size, image2d.shape)
    image, valid, (current,) = cropped(image2d, origin, size, mask2d)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None].to(device)
    return origin, valid, as_tensor(image), as_tensor(mask_prompt(current))


def paste(mask2d: np.ndarray, crop: np.ndarray, origin, valid: np.ndarray) -> np.ndarray:
    """mask2d with the crop's pixels inside the slice replaced."""
    out = np.array(mask2d, copy=True)
    (y0, x0), size = origin, crop.shape[0]
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, out.shape[0]), min(x0 + size, out.shape[1])
    region = crop[ys - y0:ye - y0, xs - x0:xe - x0] & valid[ys - y0:ye - y0, xs - x0:xe - x0]
    out[ys:ye, xs:xe] = region.astype(out.dtype)
    return out


# What each command may do to the mask (its meaning, whatever the model draws): these only
# take pixels away, the others only add them; a plain click may do either.
TAKES_AWAY = ("make thinner", "remove")
ADDS = ("make thicker", "make a connection", "extend")
# These change the clicked vessel's width: both its walls, the far one beyond REACH_PX of a
# point on the near one when the vessel is wide.
ACROSS_THE_VESSEL = ("make thinner", "make thicker")


def commanded(before: np.ndarray, after: np.ndarray, command: str | None) -> np.ndarray:
    """`after` without the changes the command cannot mean ("make thinner" adds nothing)."""
    if command in TAKES_AWAY:
        return before & after
    if command in ADDS:
        return before | after
    return after


def depth_near(mask2d: np.ndarray, point_yx, spacing_yx=(1.0, 1.0)) -> float:
    """The clicked vessel's half-width at a point (in the spacing's unit): the mask's deepest
    pixel within 3 pixels of it (a click need not hit the vessel's middle)."""
    depth = ndimage.distance_transform_edt(mask2d, sampling=spacing_yx)
    y, x = (int(round(c)) for c in point_yx)
    return float(depth[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4].max(initial=0.0))


def reach_of(before: np.ndarray, after: np.ndarray, point_yx, reach: int = REACH_PX,
             across: bool = False) -> np.ndarray:
    """The pixels a step's changes must touch to be kept: the (2 reach + 1)^2 window around
    the point; `across`: also the vessel's cross-sections there, both walls (pixels of the
    mask before or after whose nearest centreline pixel lies in the window: a wide vessel's
    far wall counts, its walls farther along the vessel do not)."""
    y, x = (int(round(c)) for c in point_yx)
    window = np.zeros(before.shape, bool)
    window[max(y - reach, 0):y + reach + 1, max(x - reach, 0):x + reach + 1] = True
    if not across:
        return window
    centreline = skeleton(before)
    if not centreline.any():
        return window
    nearest = ndimage.distance_transform_edt(~centreline, return_distances=False,
                                             return_indices=True)
    return window | ((before | after) & window[tuple(nearest)])


def near_the_point(before: np.ndarray, after: np.ndarray, point_yx,
                   reach: int = REACH_PX, command: str | None = None) -> np.ndarray:
    """`after` where the step changed the mask as its command means (commanded) within
    `reach` pixels of its point (thinner / thicker: across the clicked vessel, both walls) or
    connected to such a change (a branch added or removed whole, a rim along the vessel; "make
    a connection": the one added piece nearest the point, the bridge); `before` elsewhere.
    The model decides the whole crop; a step fixes the error it was asked about and leaves
    the rest of the mask as it was."""
    after = commanded(before, after, command)
    changed = after != before
    pieces, count = ndimage.label(changed, full_structure(2))
    if count == 0:
        return before.copy()
    if command == "make a connection":       # one bridge: the added piece at the point
        bridge = piece_nearest(changed, point_yx, within_mm=reach)     # (pixels here)
        return before.copy() if bridge is None else np.where(bridge, after, before)
    near = reach_of(before, after, point_yx, reach, command in ACROSS_THE_VESSEL)
    kept = np.isin(pieces, np.unique(pieces[near & (pieces > 0)]))
    return np.where(kept, after, before)


def run_step(model, image2d: np.ndarray, mask2d: np.ndarray, steps: list[Step],
             device="cpu") -> tuple[np.ndarray, float]:
    """The slice's mask after the last of `steps` (its changes near the point:
    near_the_point), and the model's predicted IoU."""
    origin, valid, image, prompt = crop_inputs(image2d, mask2d, steps[-1].point, model.crop,
                                               device)
    points, labels, commands = sequence_inputs(steps, origin, model.crop, device)
    with torch.no_grad():
        logits, iou = model.decode(model.encode(image), points, labels, commands, prompt)
    crop = (logits[0, 0] > 0).cpu().numpy()
    before = window(np.asarray(mask2d) > 0, origin, model.crop, False)
    local = points[0, -1].cpu().numpy()
    command = TEXT_COMMANDS[steps[-1].command] if steps[-1].command >= 0 else None
    return (paste(mask2d, near_the_point(before, crop, local, command=command), origin, valid),
            float(iou[0]))


def predict_command(model, image2d, mask2d, point, device="cpu") -> tuple[str, np.ndarray]:
    """The Text Prompt Predictor's command for a point on this mask, and its probabilities."""
    origin, _, image, prompt = crop_inputs(image2d, mask2d, point, model.crop, device)
    local = torch.tensor([[[p - o for p, o in zip(point, origin)]]], dtype=torch.float32,
                         device=device)
    with torch.no_grad():
        logits = model.predict_command(model.encode(image), local, prompt)
    probabilities = torch.softmax(logits[0], 0).cpu().numpy()
    return TEXT_COMMANDS[int(np.argmax(probabilities))], probabilities
