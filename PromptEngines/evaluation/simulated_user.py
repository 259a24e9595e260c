"""A simulated user: the prompts an annotator would give to fix a prediction.

Every function takes the current prediction and the truth (binary arrays of one shape, (z, y,
x) with z = 1 for 2D images) and returns prompts in voxel index space. Error components use
full connectivity; "centre" means the voxel deepest inside (largest distance to the
component's outside, in mm), as in the RITM / VerSe / PRISM click protocols.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..data.regions import deepest_point, full_structure as _structure, inner_distance
from ..prompts import TEXT_COMMANDS
from .metrics import skeleton


@dataclass(frozen=True)
class Click:
    position: tuple[int, ...]     # voxel index (z, y, x)
    label: int                    # 1: add (false negative), 0: remove (false positive)


def error_components(pred, truth):
    """(labels, sizes, is_false_negative) over all FN and FP components."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    fn_labels, fn_count = ndimage.label(truth & ~pred, _structure(pred.ndim))
    fp_labels, fp_count = ndimage.label(pred & ~truth, _structure(pred.ndim))
    labels = fn_labels + np.where(fp_labels > 0, fp_labels + fn_count, 0)
    sizes = np.bincount(labels.ravel(), minlength=fn_count + fp_count + 1)[1:]
    is_fn = np.arange(1, fn_count + fp_count + 1) <= fn_count
    return labels, sizes, is_fn


def largest_error(pred, truth) -> tuple[np.ndarray, bool] | None:
    """Mask of the largest error component and whether it is a false negative."""
    labels, sizes, is_fn = error_components(pred, truth)
    if sizes.size == 0:
        return None
    index = int(np.argmax(sizes))       # ties: the first, i.e. false negatives first
    return labels == index + 1, bool(is_fn[index])


def centre_click(pred, truth, spacing=None) -> Click | None:
    """Click at the centre of the largest error component; None when there is no error."""
    found = largest_error(pred, truth)
    if found is None:
        return None
    region, is_fn = found
    return Click(deepest_point(region, spacing), int(is_fn))


def interior_click(pred, truth, rng, spacing=None) -> Click | None:
    """VerSe's protocol: a random voxel of the largest error whose depth exceeds a third of
    the component's maximum depth."""
    found = largest_error(pred, truth)
    if found is None:
        return None
    region, is_fn = found
    depth = inner_distance(region, spacing)
    candidates = np.argwhere(depth > depth.max() / 3.0)
    return Click(tuple(int(p) for p in candidates[rng.integers(len(candidates))]), int(is_fn))


def random_clicks(pred, truth, rng, count: int = 1) -> list[Click]:
    """PRISM's protocol: clicks drawn uniformly from FN ∪ FP, labelled by which they hit."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    wrong = np.argwhere(pred != truth)
    if len(wrong) == 0:
        return []
    picks = wrong[rng.choice(len(wrong), size=min(count, len(wrong)), replace=False)]
    return [Click(tuple(int(p) for p in pick), int(truth[tuple(pick)])) for pick in picks]


def jittered_box(truth, rng, jitter: float = 0.1) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The truth's bounding box (voxel corners), each face moved by up to `jitter` of the
    box size in either direction, clipped to the image."""
    present = np.argwhere(np.asarray(truth, bool))
    if len(present) == 0:
        raise ValueError("no box around an empty mask")
    low, high = present.min(axis=0) - 0.5, present.max(axis=0) + 0.5
    size = high - low
    low = low + rng.uniform(-jitter, jitter, low.size) * size
    high = high + rng.uniform(-jitter, jitter, high.size) * size
    limit = np.asarray(np.shape(truth)) - 0.5
    low, high = np.clip(low, -0.5, limit), np.clip(high, -0.5, limit)
    return tuple(float(v) for v in np.minimum(low, high)), tuple(float(v) for v in np.maximum(low, high))


def error_scribble(pred, truth, rng, keep: float = 0.6) -> tuple[list[tuple[int, ...]], int] | None:
    """PRISM-style scribble on the largest error: its skeleton, broken by a blurred random
    mask, jittered by a smooth displacement and randomly thickened, kept inside the error."""
    found = largest_error(pred, truth)
    if found is None:
        return None
    region, is_fn = found
    line = skeleton(region) & region
    if not line.any():
        line = region.copy()
    noise = ndimage.gaussian_filter(rng.normal(size=region.shape), 2.0)
    broken = line & (noise > np.quantile(noise[line], 1.0 - keep))
    if not broken.any():
        broken = line
    points = np.argwhere(broken).astype(float)
    points += ndimage.gaussian_filter(rng.normal(size=points.shape), (1.5, 0)) * 1.5
    points = np.round(points).astype(int)
    points = np.clip(points, 0, np.asarray(region.shape) - 1)
    drawn = np.zeros_like(region)
    drawn[tuple(points.T)] = True
    if rng.random() < 0.5:
        drawn = ndimage.binary_dilation(drawn, _structure(region.ndim))
    drawn &= region
    if not drawn.any():
        drawn = broken
    return [tuple(int(p) for p in point) for point in np.argwhere(drawn)], int(is_fn)


def text_command(pred, truth, spacing=None) -> tuple[str, Click] | None:
    """The text command that fixes the largest error of a vessel mask, and where to click.

    A false negative that touches two or more predicted pieces is a gap ("make a
    connection"); one lying mostly against the prediction's wall is a rim ("make thicker");
    otherwise it is missing vessel ("extend"). A false positive lying mostly against the
    true wall is a rim ("make thinner"); otherwise it is spurious ("remove")."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    found = largest_error(pred, truth)
    if found is None:
        return None
    region, is_fn = found
    click = Click(deepest_point(region, spacing), int(is_fn))
    other = pred if is_fn else truth
    structure = _structure(region.ndim)
    if is_fn:
        pieces, _ = ndimage.label(pred, structure)
        touching = np.unique(pieces[ndimage.binary_dilation(region, structure) & (pieces > 0)])
        if touching.size >= 2:
            return "make a connection", click
    against_wall = _fraction_adjacent(region, other, structure)
    if is_fn:
        command = "make thicker" if against_wall >= RIM_FRACTION else "extend"
    else:
        command = "make thinner" if against_wall >= RIM_FRACTION else "remove"
    assert command in TEXT_COMMANDS
    return command, click


# Share of an error component's voxels that touch the other mask above which the error is a
# rim along the vessel wall rather than a piece of its own (rims 1-3 voxels thick reach ~0.5+).
RIM_FRACTION = 0.4


def _fraction_adjacent(region, other, structure) -> float:
    touching = region & ndimage.binary_dilation(other, structure)
    return float(touching.sum() / max(region.sum(), 1))
