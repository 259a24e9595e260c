"""Segmentation metrics on binary masks (numpy, any dimension). Distances are in mm.

Conventions: two empty masks agree perfectly (Dice = IoU = clDice = 1, HD95 = 0); one empty
mask against a non-empty one gives Dice 0 and HD95 = inf.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.regions import full_structure


def _binary(mask) -> np.ndarray:
    return np.asarray(mask).astype(bool)


def _check(pred, truth):
    pred, truth = _binary(pred), _binary(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    return pred, truth


def dice(pred, truth) -> float:
    """2|P∩T| / (|P|+|T|)."""
    pred, truth = _check(pred, truth)
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(pred, truth).sum() / total)


def iou(pred, truth) -> float:
    """|P∩T| / |P∪T|."""
    pred, truth = _check(pred, truth)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def skeleton(mask) -> np.ndarray:
    from skimage.morphology import skeletonize

    mask = _binary(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        return skeletonize(mask[0])[np.newaxis]
    return skeletonize(mask).astype(bool)


def cldice(pred, truth) -> float:
    """Centreline Dice (Shit et al., CVPR 2021): harmonic mean of topology precision
    |S(P)∩T|/|S(P)| and topology sensitivity |S(T)∩P|/|S(T)|."""
    pred, truth = _check(pred, truth)
    if not pred.any() and not truth.any():
        return 1.0
    if not pred.any() or not truth.any():
        return 0.0
    skeleton_pred, skeleton_truth = skeleton(pred), skeleton(truth)
    precision = (skeleton_pred & truth).sum() / max(skeleton_pred.sum(), 1)
    sensitivity = (skeleton_truth & pred).sum() / max(skeleton_truth.sum(), 1)
    if precision + sensitivity == 0:
        return 0.0
    return float(2 * precision * sensitivity / (precision + sensitivity))


def surface(mask) -> np.ndarray:
    """Voxels of the mask that touch the background (face connectivity)."""
    mask = _binary(mask)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(source, target, spacing=None) -> np.ndarray:
    """Distances (mm) from each surface voxel of `source` to the surface of `target`."""
    source_surface, target_surface = surface(source), surface(target)
    spacing = None if spacing is None else tuple(float(s) for s in spacing)
    to_target = ndimage.distance_transform_edt(~target_surface, sampling=spacing)
    return to_target[source_surface]


def hd95(pred, truth, spacing=None) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm: the larger of the two directed
    95th percentiles of surface distances (MONAI's compute_hausdorff_distance, percentile=95)."""
    pred, truth = _check(pred, truth)
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return float("inf")
    forward = np.percentile(surface_distances(pred, truth, spacing), 95)
    backward = np.percentile(surface_distances(truth, pred, spacing), 95)
    return float(max(forward, backward))


def components(mask) -> int:
    """Betti-0: the number of connected components (full connectivity: 26 in 3D, 8 in 2D)."""
    mask = _binary(mask)
    return int(ndimage.label(mask, structure=full_structure(mask.ndim))[1])


def betti0_error(pred, truth) -> int:
    """|β0(P) − β0(T)|: extra or missing connected pieces."""
    pred, truth = _check(pred, truth)
    return abs(components(pred) - components(truth))


def fraction_on(pred, region) -> float:
    """Share of the predicted voxels that lie in `region` (e.g. a distractor vessel)."""
    pred, region = _check(pred, region)
    count = pred.sum()
    return 0.0 if count == 0 else float((pred & region).sum() / count)


def noc(dice_curve, threshold: float, max_clicks: int | None = None) -> int:
    """Number of clicks to reach `threshold` Dice; `dice_curve[n-1]` is Dice after n clicks.
    Never reaching it counts as max_clicks (default: the curve's length)."""
    for clicks, value in enumerate(dice_curve, start=1):
        if value >= threshold:
            return clicks
    return len(dice_curve) if max_clicks is None else max_clicks


def summary(pred, truth, spacing=None) -> dict:
    """The standard report of one result: Dice, IoU, clDice, HD95 (mm), β0 error."""
    return {"dice": dice(pred, truth), "iou": iou(pred, truth), "cldice": cldice(pred, truth),
            "hd95_mm": hd95(pred, truth, spacing), "betti0_error": betti0_error(pred, truth)}
