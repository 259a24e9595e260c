"""Synthetic 2D angiography/fundus-like correction cases, deterministic by seed.

`vessel_correction_case`: a 2D vessel image with an imperfect initial mask (missing branch,
gap, false-positive blobs, too thin, too thick), labelled with the text command that fixes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..regions import deepest_point, largest_component
from ..volume import Volume, geometry_matrix
from .tubes import Branch, grow_branch, occupancy, point_at, signed_depth, smooth_field, turned

# Error kind of an initial 2D mask -> the text command that fixes it.
CORRECTION_COMMANDS = {"too_thick": "make thinner", "too_thin": "make thicker",
                       "gap": "make a connection", "missing_branch": "extend",
                       "false_positive": "remove"}


@dataclass
class CorrectionCase:
    image: Volume                 # single-slice volume (1, H, W)
    truth: np.ndarray             # uint8 (1, H, W)
    initial: np.ndarray           # uint8 (1, H, W): the imperfect mask to correct
    error: str                    # key of CORRECTION_COMMANDS
    command: str                  # the text command that fixes it
    point_index: tuple[int, int, int]   # (0, y, x): centre of the error, where a user clicks


def vessel_tree_2d(rng, size) -> list[Branch]:
    extent = np.array([size - 1.0, size - 1.0])
    start = np.array([size * rng.uniform(0.4, 0.6), 2.0])
    trunk = grow_branch(start, [rng.normal(0, 0.2), 1.0], size * 0.95, 4.5, 2.5, rng, extent,
                        tortuosity=0.04)
    trunk.role = "trunk"
    branches = [trunk]
    queue = [(0, 0)]
    while queue:
        parent, depth = queue.pop(0)
        for fraction in (0.3, 0.65) if depth < 2 else ():
            position, direction, radius = point_at(branches[parent], fraction)
            angle = rng.uniform(35, 60) * (1 if len(branches) % 2 else -1)
            # In 2D "perpendicular" is one of two sides; `turned` picks one at random.
            child = grow_branch(position, turned(direction, abs(angle), rng),
                                rng.uniform(35, 70) / (depth + 1), max(radius * 0.75, 1.6),
                                max(radius * 0.55, 1.2), rng, extent, tortuosity=0.05)
            if child.length < 12:
                continue
            child.parent = parent
            branches[parent].children.append(len(branches))
            branches.append(child)
            queue.append((len(branches) - 1, depth + 1))
    return branches


def _as_slice(array2d) -> np.ndarray:
    return np.ascontiguousarray(array2d[np.newaxis])


def vessel_correction_case(seed: int = 0, error: str = "missing_branch",
                           size: int = 192) -> CorrectionCase:
    if error not in CORRECTION_COMMANDS:
        raise ValueError(f"unknown error kind {error!r}; known: {', '.join(CORRECTION_COMMANDS)}")
    rng = np.random.default_rng(seed)
    shape, spacing = (size, size), (1.0, 1.0)
    branches = vessel_tree_2d(rng, size)
    truth = signed_depth(shape, spacing, branches) >= 0
    initial = _imperfect_mask(error, rng, branches, truth, shape, spacing)

    # Angiography / fundus-like picture: uneven bright background with mild vignetting (every
    # true vessel stays visible), darker vessels, noise.
    yy, xx = np.indices(shape)
    radius = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    background = (0.55 + smooth_field(shape, rng, 12, 0.12)) * (1.0 - 0.2 * radius ** 2)
    vessel = occupancy(signed_depth(shape, spacing, branches), 1.0)
    picture = background * (1.0 - 0.55 * vessel) + rng.normal(0, 0.03, shape)
    picture = ndimage.gaussian_filter(picture, 0.5)

    y, x = deepest_point(largest_component(truth != initial))
    volume = Volume(_as_slice(picture.astype(np.float32)), geometry_matrix((1.0, 1.0, 1.0)))
    return CorrectionCase(volume, _as_slice(truth.astype(np.uint8)),
                          _as_slice(initial.astype(np.uint8)), error, CORRECTION_COMMANDS[error],
                          (0, int(y), int(x)))


def _imperfect_mask(error, rng, branches, truth, shape, spacing) -> np.ndarray:
    if error == "missing_branch":
        # A whole side branch (with its own branches) off the trunk, the longest one.
        subtrees = [_subtree(branches, i) for i in branches[0].children]
        drop = set(max(subtrees, key=lambda tree: sum(branches[i].length for i in tree)))
        kept = [b for i, b in enumerate(branches) if i not in drop]
        return signed_depth(shape, spacing, kept) >= 0
    if error == "gap":
        # Cut the trunk across, between its first bifurcation and the next one.
        position, direction, radius = point_at(branches[0], rng.uniform(0.42, 0.55))
        yy, xx = np.indices(shape)
        offset = np.stack([yy - position[0], xx - position[1]], axis=-1)
        along = np.abs(offset @ direction)
        return truth & ~(along <= rng.uniform(4.0, 6.0))
    if error in ("too_thin", "too_thick"):
        target = max(range(len(branches)), key=lambda i: branches[i].radii.mean() * (i > 0))
        subtree = _subtree(branches, target)
        factor = 0.45 if error == "too_thin" else 1.8
        return signed_depth(shape, spacing, branches, {i: factor for i in subtree}) >= 0
    # false_positive: blobs where a low threshold would find "vessel-like" noise.
    near = ndimage.binary_dilation(truth, iterations=6)
    yy, xx = np.indices(shape)
    in_view = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < 0.4 * shape[0]
    allowed = ~near & in_view
    noise = smooth_field(shape, rng, 4.0)
    blobs = allowed & (noise > np.quantile(noise[allowed], 0.97))
    labels, count = ndimage.label(blobs)
    sizes = ndimage.sum(blobs, labels, range(1, count + 1))
    keep = [1 + i for i in np.argsort(sizes)[::-1][:3] if sizes[i] >= 20]
    if not keep:
        raise RuntimeError("no room for false-positive blobs in this case")
    return truth | np.isin(labels, keep)


def _subtree(branches, root) -> list[int]:
    found, stack = [], [root]
    while stack:
        index = stack.pop()
        found.append(index)
        stack.extend(branches[index].children)
    return found
