"""Imperfect vessel masks built from a ground-truth mask, for training and benchmarking the
multimodal correction method (Lim & Lee, MICCAI 2025, "synthetic training data from GT masks").

Each defect is one error a user fixes with one step (a point plus a text command):

    too_thick       the vessel rebuilt locally with larger radii          -> "make thinner"
    too_thin        the vessel rebuilt locally with smaller radii         -> "make thicker"
    gap             a short stretch cut out next to a bifurcation         -> "make a connection"
    missing_branch  a terminal branch (end point to junction) taken away  -> "extend"
    false_positive  a spurious piece a lowered threshold would add        -> "remove"

Everything works from the mask alone (any binary vessel mask, 2D (H, W) or 3D (D, H, W));
only false positives read the image. Radii are in voxels: give isotropic arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from ..data.regions import deepest_point, full_structure, largest_component
from ..evaluation import metrics

DEFECT_KINDS = ("too_thick", "too_thin", "gap", "missing_branch", "false_positive")
# Defect kind -> the text command that fixes it (one each of TEXT_COMMANDS).
DEFECT_COMMANDS = {"too_thick": "make thinner", "too_thin": "make thicker",
                   "gap": "make a connection", "missing_branch": "extend",
                   "false_positive": "remove"}

# Sizes (voxels) and counts tuned so that imperfect_mask's defaults give fundus-like 192 x 192
# masks a mean IoU of ~0.68 against the truth (0.66 over seeds 0-9, 0.68 over 0-39), where the
# paper's automatic starting masks are (nnU-Net: 68.2 mIoU).
LOCAL_EXTENT = (10.0, 14.0)       # radius of the neighbourhood a thinner/thicker defect spans
THICK_FACTOR = (2.0, 2.6)        # radius scale of a too-thick stretch
THIN_FACTOR = (0.2, 0.45)        # radius scale of a too-thin stretch
GAP_LENGTH = (5, 10)             # skeleton voxels cut out for a gap
MIN_BRANCH = 8                   # shortest terminal branch worth removing (skeleton voxels)
SPURIOUS_SIZE = (80, 400)        # smallest and largest false-positive piece
SKELETON_PER_DEFECT = 45         # at most one defect per this much centreline in a mask
KNOT_STEP = 4                    # skeleton voxels between radius spline knots
SCORE_SMOOTHING = 1.5            # sigma of the image score: a weak model's blur
BACKGROUND_SCALE = 6.0           # sigma of the background the score is taken against
THRESHOLD_FRACTIONS = (0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05)   # of the truth's median score


@dataclass
class Defect:
    kind: str               # one of DEFECT_KINDS
    command: str            # the text command that fixes it
    mask: np.ndarray        # bool: the truth with this one defect
    region: np.ndarray      # bool: where `mask` and the truth differ because of it
    point: tuple[int, ...]  # where a user clicks: deepest voxel of region's largest piece
    note: str = ""          # how it was made where that matters (false positives' source)


# ---------------------------------------------------------------- input checks

def _binary(array, name: str, allow_empty: bool = False) -> np.ndarray:
    """The array as bool, or a ValueError saying what is wrong with it."""
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D (H, W) or 3D (D, H, W) mask, got shape "
                         f"{array.shape}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN values; a mask must be binary (0/1)")
    values = np.unique(array)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must be binary (0/1 or bool), found values "
                         f"{values[~np.isin(values, (0, 1))][:5].tolist()}")
    if not allow_empty and not values.any():
        raise ValueError(f"{name} is empty: no vessel voxels to build a defect from")
    return array.astype(bool)


def _image(image, shape) -> np.ndarray | None:
    if image is None:
        return None
    image = np.asarray(image, float)
    if image.shape != shape:
        raise ValueError(f"image shape {image.shape} does not match the truth's {shape}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    return image


# ---------------------------------------------------------------- skeleton and radii

def _neighbour_offsets(ndim: int) -> np.ndarray:
    return np.array([o for o in product((-1, 0, 1), repeat=ndim) if any(o)])


def _neighbour_count(skeleton: np.ndarray) -> np.ndarray:
    """Skeleton neighbours of each skeleton voxel (full connectivity)."""
    counts = ndimage.convolve(skeleton.astype(np.int16), np.ones((3,) * skeleton.ndim, np.int16),
                              mode="constant")
    return np.where(skeleton, counts - 1, 0)


def _ordered(piece: np.ndarray) -> np.ndarray:
    """The voxels (n, ndim) of a one-voxel-thin path, in order from one end (a cycle: from
    any voxel). Each voxel has at most two neighbours in the path."""
    cells = {tuple(c) for c in np.argwhere(piece)}
    offsets = _neighbour_offsets(piece.ndim)

    def next_to(cell):
        return [n for n in map(tuple, offsets + cell) if n in cells]

    ends = [c for c in sorted(cells) if len(next_to(c)) <= 1]
    path = [ends[0] if ends else min(cells)]
    seen = {path[0]}
    while True:
        step = [c for c in next_to(path[-1]) if c not in seen]
        if not step:
            return np.array(path)
        path.append(step[0])
        seen.add(step[0])


def _segments(skeleton: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The skeleton split at its junctions (voxels with >= 3 skeleton neighbours): each
    segment's voxels in path order, and the junction voxels."""
    junctions = _neighbour_count(skeleton) >= 3
    pieces, count = ndimage.label(skeleton & ~junctions, full_structure(skeleton.ndim))
    boxes = ndimage.find_objects(pieces)
    segments = []
    for index, box in enumerate(boxes, start=1):
        corner = np.array([b.start for b in box])
        segments.append(_ordered(pieces[box] == index) + corner)
    return segments, junctions


def _smoothed(values: np.ndarray) -> np.ndarray:
    """Radii along one segment as a cubic Hermite spline (PCHIP: monotone between knots, no
    overshoot) through local medians every KNOT_STEP voxels: the skeleton's distance values
    jump by a voxel from step to step; a vessel's radius does not."""
    if len(values) < 3:
        return values
    knots = np.unique(np.r_[np.arange(0, len(values), KNOT_STEP), len(values) - 1])
    half = KNOT_STEP // 2
    medians = [np.median(values[max(k - half, 0):k + half + 1]) for k in knots]
    return PchipInterpolator(knots, medians)(np.arange(len(values)))


def skeleton_radii(truth) -> tuple[np.ndarray, np.ndarray]:
    """The truth's skeleton and the vessel radius (voxels) at each skeleton voxel (0 off it):
    the distance to the nearest background voxel (the largest open disc there that stays
    inside the truth), smoothed along each segment (`_smoothed`)."""
    skeleton, radius, _, _ = _centrelines(_binary(truth, "truth"))
    return skeleton, radius


def _centrelines(truth: np.ndarray):
    """skeleton_radii's skeleton and radii, with its segments and junctions."""
    skeleton = metrics.skeleton(truth)
    segments, junctions = _segments(skeleton)
    raw = np.where(skeleton, ndimage.distance_transform_edt(truth), 0.0)
    radius = raw.copy()
    for segment in segments:
        radius[tuple(segment.T)] = _smoothed(raw[tuple(segment.T)])
    return skeleton, np.maximum(radius, 0.0), segments, junctions


def rebuild(skeleton, radius, shape) -> np.ndarray:
    """The union of open discs (balls in 3D) of `radius` centred on the skeleton voxels:
    voxels nearer a skeleton voxel than its radius. With skeleton_radii's radii before
    smoothing, each disc is the largest one inside the truth."""
    skeleton, radius = np.asarray(skeleton, bool), np.asarray(radius, float)
    if skeleton.shape != tuple(shape) or radius.shape != tuple(shape):
        raise ValueError(f"skeleton {skeleton.shape} and radius {radius.shape} must have the "
                         f"mask's shape {tuple(shape)}")
    mask = np.zeros(shape, bool)
    for centre in np.argwhere(skeleton & (radius > 0)):
        r = float(radius[tuple(centre)])
        reach = int(np.ceil(r)) - 1
        low, high = np.maximum(centre - reach, 0), np.minimum(centre + reach + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        grid = np.ogrid[box]
        distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        mask[box] |= distance2 < r * r
    return mask


# ---------------------------------------------------------------- shared analysis

@dataclass
class _Anatomy:
    """What every defect needs from one truth, computed once."""
    truth: np.ndarray
    skeleton: np.ndarray
    radius: np.ndarray
    segments: list[np.ndarray]
    junctions: np.ndarray
    nearest: np.ndarray     # flat index of each voxel's nearest skeleton voxel
    local_extent: tuple = LOCAL_EXTENT

    @classmethod
    def of(cls, truth: np.ndarray, local_extent=LOCAL_EXTENT) -> "_Anatomy":
        skeleton, radius, segments, junctions = _centrelines(truth)
        indices = ndimage.distance_transform_edt(~skeleton, return_distances=False,
                                                 return_indices=True)
        nearest = np.ravel_multi_index(tuple(indices), truth.shape)
        return cls(truth, skeleton, radius, segments, junctions, nearest, tuple(local_extent))

    def owned_by(self, voxels: np.ndarray) -> np.ndarray:
        """Truth voxels whose nearest skeleton voxel is one of `voxels` (n, ndim)."""
        flat = np.ravel_multi_index(tuple(voxels.T), self.truth.shape)
        return self.truth & np.isin(self.nearest, flat)


def _finish(kind: str, truth: np.ndarray, region: np.ndarray, note: str = "") -> Defect | None:
    """The Defect for `region` flipped in the truth; None for an empty region."""
    if not region.any():
        return None
    return Defect(kind, DEFECT_COMMANDS[kind], truth ^ region, region,
                  deepest_point(largest_component(region)), note)


def _pick(rng, candidates: list, near, where, weights=None):
    """The candidate nearest `near` (its voxels given by where(candidate)), or a random one."""
    if not candidates:
        return None
    if near is not None:
        gaps = [np.min(np.sum((where(c) - np.asarray(near)) ** 2, axis=1)) for c in candidates]
        return candidates[int(np.argmin(gaps))]
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return candidates[int(rng.choice(len(candidates), p=p))]


# ---------------------------------------------------------------- thinner / thicker

def _local_skeleton(anatomy: _Anatomy, rng, near) -> np.ndarray:
    """The piece of skeleton within a ball around a chosen skeleton voxel (the one nearest
    `near`, else a random one, wider vessels likelier): connected to it, so a vessel merely
    passing nearby is not included."""
    voxels = np.argwhere(anatomy.skeleton)
    centre = _pick(rng, list(voxels), near, lambda v: v[None],
                   weights=anatomy.radius[anatomy.skeleton] + 0.5)
    extent = rng.uniform(*anatomy.local_extent)
    grid = np.indices(anatomy.truth.shape, sparse=True)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= extent ** 2
    pieces, _ = ndimage.label(anatomy.skeleton & ball, full_structure(anatomy.truth.ndim))
    return pieces == pieces[tuple(centre)]


def _rescaled(anatomy: _Anatomy, rng, near, factor_range) -> tuple[np.ndarray, np.ndarray]:
    """A local stretch of skeleton and the mask rebuilt on it with scaled radii."""
    local = _local_skeleton(anatomy, rng, near)
    scaled = anatomy.radius * rng.uniform(*factor_range)
    return local, rebuild(local, scaled, anatomy.truth.shape)


def _too_thick(anatomy: _Anatomy, rng, near) -> np.ndarray:
    _, wider = _rescaled(anatomy, rng, near, THICK_FACTOR)
    return wider & ~anatomy.truth


def _too_thin(anatomy: _Anatomy, rng, near) -> np.ndarray:
    """The truth voxels owned by the local stretch that its thinner rebuild leaves out."""
    local, narrower = _rescaled(anatomy, rng, near, THIN_FACTOR)
    return anatomy.owned_by(np.argwhere(local)) & ~narrower


# ---------------------------------------------------------------- gap

def _from_junction(segment: np.ndarray, cluster: np.ndarray) -> np.ndarray | None:
    """The segment ordered from its end touching the junction cluster; None if neither
    end touches it."""
    for path in (segment, segment[::-1]):
        if np.any(np.max(np.abs(cluster - path[0]), axis=1) <= 1):
            return path
    return None


def _gap_candidates(anatomy: _Anatomy) -> list[tuple[np.ndarray, np.ndarray]]:
    """(junction cluster voxels, adjacent segment ordered away from it) pairs."""
    clusters, count = ndimage.label(anatomy.junctions, full_structure(anatomy.truth.ndim))
    found = []
    for index in range(1, count + 1):
        cluster = np.argwhere(clusters == index)
        for segment in anatomy.segments:
            path = _from_junction(segment, cluster)
            if path is not None:
                found.append((cluster, path))
    return found


def _gap(anatomy: _Anatomy, rng, near) -> np.ndarray:
    """Cut a few skeleton voxels' worth of vessel (the truth voxels they own) out of a
    segment next to a bifurcation, clear of the junction; tries the candidates until a cut
    splits the mask (it cannot where the segment lies on a loop)."""
    candidates = _gap_candidates(anatomy)
    order = rng.permutation(len(candidates))
    if near is not None:
        gaps = [np.min(np.sum((c[0] - np.asarray(near)) ** 2, axis=1)) for c in candidates]
        order = np.argsort(gaps, kind="stable")
    pieces = _count(anatomy.truth)
    for index in order:
        cluster, path = candidates[index]
        start = int(np.ceil(anatomy.radius[tuple(cluster.T)].max())) + 2
        stretch = path[start:start + int(rng.integers(*GAP_LENGTH, endpoint=True))]
        if len(stretch) < GAP_LENGTH[0] or start + len(stretch) >= len(path) - 1:
            continue
        cut = anatomy.owned_by(stretch)
        if _count(anatomy.truth & ~cut) > pieces:
            return cut
    return np.zeros_like(anatomy.truth)


def _count(mask: np.ndarray) -> int:
    return ndimage.label(mask, full_structure(mask.ndim))[1]


# ---------------------------------------------------------------- missing branch

def _terminal_segments(anatomy: _Anatomy) -> list[np.ndarray]:
    """Segments from an end point to a junction, long enough to matter."""
    ends = _neighbour_count(anatomy.skeleton) == 1
    near_junction = ndimage.binary_dilation(anatomy.junctions, full_structure(ends.ndim))
    return [s for s in anatomy.segments if len(s) >= MIN_BRANCH
            and (ends[tuple(s[0])] or ends[tuple(s[-1])])
            and near_junction[tuple(s.T)].any()]


def _missing_branch(anatomy: _Anatomy, rng, near) -> np.ndarray:
    """The truth voxels owned by a terminal segment, less those inside the rebuilt rest of
    the tree (the parent vessel stays whole where the branch leaves it)."""
    branches = _terminal_segments(anatomy)
    # Longer branches likelier: a weak model loses the long faint ones.
    branch = _pick(rng, branches, near, lambda s: s, weights=[len(s) for s in branches])
    if branch is None:
        return np.zeros_like(anatomy.truth)
    rest = anatomy.skeleton.copy()
    rest[tuple(branch.T)] = False
    region = anatomy.owned_by(branch) & ~rebuild(rest, anatomy.radius, anatomy.truth.shape)
    return largest_component(region)


# ---------------------------------------------------------------- false positive

def _polarity(image: np.ndarray, truth: np.ndarray) -> int:
    """+1 where vessels are brighter than their surroundings (CTA), -1 where darker (fundus,
    X-ray), 0 where the image does not tell them apart."""
    ring = ndimage.binary_dilation(truth, iterations=3) & ~truth
    difference = image[truth].mean() - image[ring].mean()
    return 0 if abs(difference) < 0.1 * image.std() + 1e-12 else int(np.sign(difference))


def soft_prediction(image, truth, polarity: int | None = None) -> np.ndarray | None:
    """A weak model's vessel score from the image: local contrast (slightly smoothed image
    minus its wide-scale background), signed so vessels score high. None when the image
    shows no vessel contrast."""
    truth = _binary(truth, "truth")
    image = _image(image, truth.shape)
    sign = _polarity(image, truth) if polarity is None else int(np.sign(polarity))
    if sign == 0:
        return None
    background = ndimage.gaussian_filter(image, BACKGROUND_SCALE)
    return sign * (ndimage.gaussian_filter(image, SCORE_SMOOTHING) - background)


def _spurious_pieces(score: np.ndarray, truth: np.ndarray) -> list[np.ndarray]:
    """Pieces away from the truth (3 voxels clear of it) above the highest threshold, as a
    falling fraction of the truth's median score, at which any of SPURIOUS_SIZE[0] voxels
    appear: the binarisation threshold lowered until it adds false positives."""
    level = np.median(score[truth])
    if level <= 0:
        return []
    away = ~ndimage.binary_dilation(truth, full_structure(truth.ndim), iterations=3)
    for fraction in THRESHOLD_FRACTIONS:
        pieces = _pieces(away & (score > fraction * level), SPURIOUS_SIZE[0])
        if pieces:
            return pieces
    return []


def _random_blobs(truth: np.ndarray, rng) -> list[np.ndarray]:
    """Fallback: smooth random blobs away from the vessel."""
    away = ~ndimage.binary_dilation(truth, full_structure(truth.ndim), iterations=4)
    noise = ndimage.gaussian_filter(rng.normal(size=truth.shape), 3.0)
    if not away.any():
        return []
    return _pieces(away & (noise > np.quantile(noise[away], 0.97)), SPURIOUS_SIZE[0])


def _pieces(mask: np.ndarray, smallest: int) -> list[np.ndarray]:
    """Connected pieces of at least `smallest` voxels, as voxel lists (n, ndim)."""
    labels, count = ndimage.label(mask, full_structure(mask.ndim))
    sizes = np.bincount(labels.ravel())
    order = np.argsort(labels.ravel(), kind="stable")
    starts = np.cumsum(sizes)
    return [np.array(np.unravel_index(order[starts[i - 1]:starts[i]], mask.shape)).T
            for i in range(1, count + 1) if sizes[i] >= smallest]


def _trimmed(piece: np.ndarray, shape) -> np.ndarray:
    """A piece as a mask, cut down to SPURIOUS_SIZE[1] voxels nearest its centre."""
    centre = piece.mean(axis=0)
    keep = piece[np.argsort(np.sum((piece - centre) ** 2, axis=1), kind="stable")]
    mask = np.zeros(shape, bool)
    mask[tuple(keep[:SPURIOUS_SIZE[1]].T)] = True
    return largest_component(mask)


def _false_positive(anatomy: _Anatomy, rng, near, image) -> tuple[np.ndarray, str]:
    truth = anatomy.truth
    score = None if image is None else soft_prediction(image, truth)
    pieces = [] if score is None else _spurious_pieces(score, truth)
    note = "lowered threshold of the image's vessel score"
    if not pieces:
        note = ("random blobs: " + ("no image given" if image is None else
                "the image gave no spurious pieces"))
        pieces = _random_blobs(truth, rng)
    piece = _pick(rng, pieces, near, lambda p: p, weights=[len(p) for p in pieces])
    region = np.zeros_like(truth) if piece is None else _trimmed(piece, truth.shape)
    return region, note


# ---------------------------------------------------------------- public entry points

def _region(kind: str, anatomy: _Anatomy, rng, image, near) -> tuple[np.ndarray, str]:
    if kind == "false_positive":
        return _false_positive(anatomy, rng, near, image)
    build = {"too_thick": _too_thick, "too_thin": _too_thin, "gap": _gap,
             "missing_branch": _missing_branch}[kind]
    return build(anatomy, rng, near), ""


def _check_kind(kind: str) -> None:
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; known: {', '.join(DEFECT_KINDS)}")


def make_defect(kind: str, truth, rng, image=None, near=None,
                local_extent=LOCAL_EXTENT) -> Defect | None:
    """The truth with one defect of `kind` (near voxel `near` if given, else at random);
    None when the mask offers no place for it (e.g. no bifurcation for a gap).
    `local_extent`: (least, most) radius in voxels of a thinner/thicker stretch."""
    _check_kind(kind)
    truth = _binary(truth, "truth")
    image = _image(image, truth.shape)
    return _defect(kind, _Anatomy.of(truth, local_extent), rng, image, near)


def _defect(kind, anatomy, rng, image, near) -> Defect | None:
    region, note = _region(kind, anatomy, rng, image, near)
    return _finish(kind, anatomy.truth, region, note)


def imperfect_mask(truth, rng, image=None, kinds=None,
                   count=(3, 6)) -> tuple[np.ndarray, list[Defect]]:
    """The truth with several defects (count: (least, most), drawn uniformly, but at most
    one per SKELETON_PER_DEFECT centreline voxels: a short tree has fewer errors) of `kinds`
    (default: all, cycled in a random order), none overlapping or touching another: a
    benchmark's starting mask. May hold fewer where the mask has no room."""
    kinds = DEFECT_KINDS if kinds is None else tuple(kinds)
    for kind in kinds:
        _check_kind(kind)
    truth = _binary(truth, "truth")
    image = _image(image, truth.shape)
    anatomy = _Anatomy.of(truth)
    wanted = min(int(rng.integers(count[0], count[1], endpoint=True)),
                 max(1, int(anatomy.skeleton.sum()) // SKELETON_PER_DEFECT))
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    mask, taken, defects = truth.copy(), np.zeros_like(truth), []
    for attempt in range(4 * wanted):
        if len(defects) == wanted:
            break
        defect = _defect(order[attempt % len(order)], anatomy, rng, image, None)
        if defect is None or (defect.region & taken).any():
            continue
        defects.append(defect)
        mask[defect.region] = defect.mask[defect.region]
        taken |= ndimage.binary_dilation(defect.region, full_structure(truth.ndim),
                                         iterations=2)
    return mask, defects


def next_step(current, truth, spacing=None) -> tuple[tuple[int, ...], np.ndarray] | None:
    """The paper's next click: the centre (deepest voxel) of the largest connected piece of
    the difference between the current mask and the truth, with that piece; None when they
    agree."""
    current = _binary(current, "current mask", allow_empty=True)
    truth = _binary(truth, "truth", allow_empty=True)
    if current.shape != truth.shape:
        raise ValueError(f"shape mismatch: current mask {current.shape} vs truth {truth.shape}")
    region = largest_component(current != truth)
    if not region.any():
        return None
    return deepest_point(region, spacing), region
