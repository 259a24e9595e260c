"""Corrections stay where, and as deep as, the user corrects (after FocalClick's progressive
merge): a click or scribble after the first prediction takes the model's new mask only
- near the prompt: within `NEAR_MM` + `DEPTH_GAIN` x depth of its voxels,
- on the prompt's side: a positive prompt only adds, a negative one only removes,
- as deep as the error it marks: a positive click `depth` mm outside the previous mask (at
  least 1 mm: the first layer outside) adds voxels at most `DEPTH_GAIN` x `depth` - 1 mm
  outside it; a negative one removes voxels at most that far inside. A click on the
  boundary changes one layer,
and keeps the previous mask elsewhere, so a correction cannot undo good work far away. A
click on a boundary moves that boundary within a few mm; one deep in a missed lobe or a
leak reaches the whole of it. PRISM's own output over the whole cube is one engine switch
away (`local_corrections=False`), as the paper runs it.

`NEAR_MM` was chosen on the held-out benchmark between 1, 3 and 5 mm (3: a boundary click
moves 5 mm of boundary)."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

NEAR_MM = 3.0        # how far a boundary click's change reaches along the boundary
DEPTH_GAIN = 2.0     # how much further and deeper per mm the click lies inside its error


def merge_locally(previous: torch.Tensor, new: torch.Tensor, clicks, mm: float) -> torch.Tensor:
    """Logits (1, 1, S, S, S): `new` where the clicks ((z, y, x), label) allow a change,
    `previous` elsewhere. With no previous mask (nothing to keep) `new` as it is."""
    before = previous[0, 0].cpu().numpy() > 0
    if not clicks or not before.any():
        return new
    after = new[0, 0].cpu().numpy() > 0
    # Distance of every voxel to the previous mask (outside it) and to its background.
    depth = {1: ndimage.distance_transform_edt(~before) * mm,
             0: ndimage.distance_transform_edt(before) * mm}
    allowed = np.zeros(before.shape, bool)
    for label, changed in ((1, after & ~before), (0, before & ~after)):
        voxels = [voxel for voxel, kind in clicks if kind == label]
        if not voxels:
            continue
        deepest = max(max(float(depth[label][v]) for v in voxels), mm)   # a layer at least
        marks = np.ones(before.shape, bool)
        marks[tuple(np.asarray(voxels).T)] = False
        near = ndimage.distance_transform_edt(marks) * mm <= NEAR_MM + DEPTH_GAIN * deepest
        # A boundary click (1 mm deep) changes one layer; a deeper one proportionally more.
        layers_mm = DEPTH_GAIN * deepest - (DEPTH_GAIN - 1) * mm
        allowed |= changed & near & (depth[label] <= layers_mm)
    return torch.where(torch.from_numpy(allowed)[None, None].to(new.device), new, previous)
