"""Synthetic cases, deterministic by seed, for training, tests and benchmarks.

- `vessel_volume`: a 3D CT-angiography-like vessel tree (bifurcations, radius decreasing
  along the tree, tortuous centrelines, one branch that turns back along z), an unconnected
  vessel nearby, bright distractors, noise, partial-volume blur, anisotropic spacing, oblique
  direction and a non-zero origin.
- `vessel_correction_case`: a 2D angiography/fundus-like image with an imperfect initial mask
  (missing branch, gap, false-positive blobs, too thin, too thick), labelled with the text
  command that fixes it.
- `cardiac_volume`: short-axis cardiac MRI-like slices with LV, myocardium and RV.
- `tumour_volume`: a tumour in an organ with an ambiguous boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import cta
from .regions import deepest_point, largest_component
from .tubes import (Branch, grow_branch, occupancy, point_at, signed_depth, smooth_field,
                    turned, unit)
from .volume import Volume, geometry_matrix

# Error kind of an initial 2D mask -> the text command that fixes it.
CORRECTION_COMMANDS = {"too_thick": "make thinner", "too_thin": "make thicker",
                       "gap": "make a connection", "missing_branch": "extend",
                       "false_positive": "remove"}
CARDIAC_LABELS = {"RV": 1, "Myo": 2, "LV": 3}     # ACDC's label values
TUMOUR_LABELS = {"organ": 1, "tumour": 2}


def random_rotation(rng: np.random.Generator, min_deg=10.0, max_deg=25.0) -> np.ndarray:
    """A rotation by a random angle in [min_deg, max_deg] about a random axis (Rodrigues)."""
    axis = unit(rng.normal(size=3))
    angle = np.deg2rad(rng.uniform(min_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def random_geometry(rng, spacing_zyx, oblique=True) -> np.ndarray:
    directions = random_rotation(rng) if oblique else np.eye(3)
    origin = rng.uniform(-120, 120, size=3) if oblique else np.zeros(3)
    return geometry_matrix(spacing_zyx, origin, directions)


# ============================================================================ 3D vessels
@dataclass
class VesselCase:
    volume: Volume
    label: np.ndarray             # uint8: the connected tree the user clicks on
    distractor: np.ndarray        # uint8: the unconnected vessel nearby
    seed_index: tuple[int, int, int]
    branches: list[Branch] = field(repr=False, default_factory=list)

    @property
    def seed_ras(self) -> tuple[float, float, float]:
        return self.volume.index_to_ras(self.seed_index)


def _vessel_tree(rng, extent) -> list[Branch]:
    """Trunk along +z with two generations of bifurcations and one turn-back branch."""
    extent = np.asarray(extent, float)
    lateral = extent[1:]
    start = np.array([2.0, *(lateral * rng.uniform(0.35, 0.65, size=2))])
    r0 = rng.uniform(2.6, 3.4)
    trunk = grow_branch(start, [1.0, *rng.normal(0, 0.15, 2)], extent[0] * 0.92, r0,
                        0.6 * r0, rng, extent, tortuosity=0.012)
    trunk.role = "trunk"
    branches = [trunk]

    def spawn(parent_index, fraction, angle, length, shrink, role="branch", **bend):
        position, direction, radius = point_at(branches[parent_index], fraction)
        child = grow_branch(position, turned(direction, angle, rng), length, radius * shrink,
                            radius * shrink * 0.75, rng, extent, **bend)
        child.parent, child.role = parent_index, role
        branches[parent_index].children.append(len(branches))
        branches.append(child)
        return len(branches) - 1

    first = spawn(0, rng.uniform(0.3, 0.4), rng.uniform(35, 50), rng.uniform(35, 55), 0.75)
    spawn(first, 0.55, rng.uniform(30, 45), rng.uniform(20, 35), 0.8)
    spawn(0, rng.uniform(0.55, 0.65), rng.uniform(35, 50), rng.uniform(30, 45), 0.72)
    # A branch that leaves upwards and turns back down along z (loops over earlier slices).
    spawn(0, rng.uniform(0.7, 0.78), 60.0, rng.uniform(45, 60), 0.75, role="turnback",
          bend_to=[-1.0, 0.0, 0.0], bend_degrees=150.0)
    return branches


def _distractor_vessel(rng, extent, tree_depth, spacing) -> list[Branch]:
    """A vessel beside the tree that never touches it (at least 1.5 mm of tissue between)."""
    extent = np.asarray(extent, float)
    near_tree = ndimage.distance_transform_edt(tree_depth < 0, sampling=spacing)
    for _ in range(50):
        start = np.array([2.0, *(extent[1:] * rng.uniform(0.1, 0.9, size=2))])
        radius = rng.uniform(1.8, 2.6)
        vessel = grow_branch(start, [1.0, *rng.normal(0, 0.1, 2)], extent[0] * 0.8, radius,
                             radius * 0.8, rng, extent, tortuosity=0.012)
        depth = signed_depth(tree_depth.shape, spacing, [vessel])
        inside = depth >= -1.0
        if inside.any() and near_tree[inside].min() > 0.5:
            vessel.role = "distractor"
            return [vessel]
    raise RuntimeError("could not place a distractor vessel apart from the tree")


REALISM = ("clinical", "clean")


def vessel_volume(seed: int = 0, shape=(80, 112, 112), spacing_zyx=None,
                  oblique: bool = True, realism: str = "clinical") -> VesselCase:
    """`realism="clinical"` adds what defeats thresholding in real CTA (cta.py): contrast
    falling along the tree, bone touching the vessel, wall plaque, more noise, a dimmer vein.
    `"clean"`: uniform lumen contrast and low noise."""
    if realism not in REALISM:
        raise ValueError(f"unknown realism {realism!r}; known: {', '.join(REALISM)}")
    rng = np.random.default_rng(seed)
    if spacing_zyx is None:
        in_plane = rng.uniform(0.6, 0.85)
        spacing_zyx = (rng.uniform(1.0, 1.6), in_plane, in_plane)
    spacing = np.asarray(spacing_zyx, float)
    extent = (np.asarray(shape) - 1) * spacing
    branches = _vessel_tree(rng, extent)
    tree_depth = signed_depth(shape, spacing, branches)
    distractor_branches = _distractor_vessel(rng, extent, tree_depth, spacing)
    distractor_depth = signed_depth(shape, spacing, distractor_branches)
    paint = _clinical_cta if realism == "clinical" else _clean_cta
    image = paint(rng, shape, spacing, branches, tree_depth, distractor_depth)

    trunk = branches[0]
    seed_point = trunk.points[int(0.25 * (len(trunk.points) - 1))]
    seed_index = tuple(int(v) for v in np.round(seed_point / spacing))
    volume = Volume(image.astype(np.float32), random_geometry(rng, spacing_zyx, oblique))
    return VesselCase(volume, (tree_depth >= 0).astype(np.uint8),
                      (distractor_depth >= 0).astype(np.uint8), seed_index,
                      branches + distractor_branches)


def _clean_cta(rng, shape, spacing, branches, tree_depth, distractor_depth) -> np.ndarray:
    # CT-angiography-like intensities (HU): tissue ~40, contrast lumen ~320, calcium ~900.
    voxel_mm = float(spacing.min())
    image = 40.0 + smooth_field(shape, rng, sigma=8, amplitude=20.0)
    lumen = 320.0 + smooth_field(shape, rng, sigma=6, amplitude=30.0)
    vessel_fraction = np.maximum(occupancy(tree_depth, voxel_mm),
                                 occupancy(distractor_depth, voxel_mm))
    image += vessel_fraction * (lumen - image)
    image = _add_calcifications(image, rng, spacing, np.maximum(tree_depth, distractor_depth))
    image = ndimage.gaussian_filter(image, 0.6 * voxel_mm / spacing)   # scanner PSF
    return image + rng.normal(0.0, 22.0, size=shape)


def _clinical_cta(rng, shape, spacing, branches, tree_depth, distractor_depth) -> np.ndarray:
    voxel_mm = float(spacing.min())
    grid = cta.grid_mm(shape, spacing)
    trunk_hu = rng.uniform(300.0, 380.0)
    _, tree_lumen = signed_depth(shape, spacing, branches,
                                 point_values=cta.lumen_along_tree(branches, rng, trunk_hu))
    image = cta.TISSUE_HU + smooth_field(shape, rng, sigma=8, amplitude=20.0)
    image = cta.add_touching_bone(image, rng, spacing, branches[0], grid)
    texture = smooth_field(shape, rng, sigma=6, amplitude=20.0)
    image += occupancy(distractor_depth, voxel_mm) * (cta.vein_hu(rng, trunk_hu) + texture - image)
    image += occupancy(tree_depth, voxel_mm) * (tree_lumen + texture - image)
    image = cta.add_wall_plaques(image, rng, spacing, branches[0], grid, int(rng.integers(1, 3)))
    image = _add_calcifications(image, rng, spacing, np.maximum(tree_depth, distractor_depth))
    image = ndimage.gaussian_filter(image, 0.6 * voxel_mm / spacing)   # scanner PSF
    return image + rng.normal(0.0, rng.uniform(28.0, 38.0), size=shape)


def _add_calcifications(image, rng, spacing, vessel_depth, count=5):
    """Bright blobs (calcium, bone fragments) a few mm away from every vessel."""
    far = ndimage.distance_transform_edt(vessel_depth < 0, sampling=spacing) > 6.0
    candidates = np.argwhere(far)
    grid = np.indices(image.shape).reshape(3, -1).T.reshape(*image.shape, 3) * spacing
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))] * spacing
        radius = rng.uniform(1.5, 3.0)
        depth = radius - np.linalg.norm(grid - centre, axis=-1)
        image += occupancy(depth, float(spacing.min())) * (900.0 - image)
    return image


# ============================================================================ 2D correction
@dataclass
class CorrectionCase:
    image: Volume                 # single-slice volume (1, H, W)
    truth: np.ndarray             # uint8 (1, H, W)
    initial: np.ndarray           # uint8 (1, H, W): the imperfect mask to correct
    error: str                    # key of CORRECTION_COMMANDS
    command: str                  # the text command that fixes it
    point_index: tuple[int, int, int]   # (0, y, x): centre of the error, where a user clicks


def _vessel_tree_2d(rng, size) -> list[Branch]:
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
    branches = _vessel_tree_2d(rng, size)
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


# ============================================================================ cardiac MRI
@dataclass
class LabelledVolume:
    volume: Volume
    labels: np.ndarray            # uint8 label values
    names: dict[str, int]         # structure name -> label value

    def mask(self, name: str) -> np.ndarray:
        return (self.labels == self.names[name]).astype(np.uint8)


def cardiac_volume(seed: int = 0, slices: int = 10, size: int = 128) -> LabelledVolume:
    """Short-axis stack, base to apex: bright blood pools, dark myocardium, dark lungs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size)).astype(float)
    centre = np.array([size * 0.5, size * 0.55]) + rng.normal(0, 3, 2)
    images, labels = [], []
    for s in range(slices):
        t = s / max(slices - 1, 1)                        # 0 base .. 1 apex
        lv_radius = (15.0 - 8.0 * t) * rng.uniform(0.95, 1.05)
        wall = rng.uniform(5.0, 7.0)
        c = centre + rng.normal(0, 0.7, 2) + np.array([0, 3 * t])
        stretch = rng.uniform(0.9, 1.1)
        r = np.hypot((yy - c[0]) * stretch, (xx - c[1]) / stretch)
        label = np.zeros((size, size), np.uint8)
        label[r <= lv_radius + wall] = CARDIAC_LABELS["Myo"]
        label[r <= lv_radius] = CARDIAC_LABELS["LV"]
        if t < 0.85:                                   # the RV ends before the apex
            rv_centre = c + np.array([-2.0, -(lv_radius + wall) * 0.9])
            rv = np.hypot((yy - rv_centre[0]) / 1.25, xx - rv_centre[1]) <= (lv_radius + wall) * (1.0 - 0.5 * t)
            label[rv & (r > lv_radius + wall + 1.5)] = CARDIAC_LABELS["RV"]
        body = np.hypot((yy - size / 2) / 0.8, xx - size / 2) < size * 0.47
        lungs = body & (np.hypot((yy - size * 0.45) / 1.6, np.abs(xx - size / 2) - size * 0.3) < size * 0.12)
        image = np.where(body, 0.35, 0.02) + smooth_field((size, size), rng, 6, 0.08)
        image[lungs] = 0.06
        image[label == CARDIAC_LABELS["Myo"]] = 0.28
        image[(label == CARDIAC_LABELS["LV"]) | (label == CARDIAC_LABELS["RV"])] = 0.9
        image = ndimage.gaussian_filter(image, 0.8)
        noise = rng.normal(0, 0.03, (2, size, size))
        images.append(np.hypot(image + noise[0], noise[1]))   # Rician magnitude noise
        labels.append(label)
    geometry = random_geometry(rng, (8.0, 1.4, 1.4))
    return LabelledVolume(Volume(np.stack(images).astype(np.float32), geometry),
                          np.stack(labels), dict(CARDIAC_LABELS))


# ============================================================================ tumour
def tumour_volume(seed: int = 0, shape=(56, 96, 96)) -> LabelledVolume:
    """An organ (liver-like) holding a hypodense tumour whose edge fades over millimetres."""
    rng = np.random.default_rng(seed)
    spacing = np.array([rng.uniform(1.5, 2.5), 0.8, 0.8])
    grid = np.indices(shape).transpose(1, 2, 3, 0) * spacing
    extent = (np.asarray(shape) - 1) * spacing
    organ_radii = extent * rng.uniform(0.3, 0.38, 3)
    organ_level = np.linalg.norm((grid - extent / 2) / organ_radii, axis=-1) - 1.0
    organ_level += smooth_field(shape, rng, 10, 0.15)
    organ = organ_level < 0
    tumour_level = np.full(shape, np.inf, np.float32)
    centre = extent / 2 + rng.normal(0, 1, 3) * organ_radii * 0.2
    for _ in range(rng.integers(3, 6)):
        lobe = centre + rng.normal(0, 1, 3) * 4.0
        radius = rng.uniform(6.0, 10.0)
        tumour_level = np.minimum(tumour_level, np.linalg.norm(grid - lobe, axis=-1) - radius)
    tumour_level += smooth_field(shape, rng, 3, 2.0)
    tumour = (tumour_level < 0) & organ
    image = np.full(shape, -80.0, np.float32)                           # fat
    image[organ_level < 0.35] = 45.0                                   # other tissue
    image[organ] = 110.0
    fade = 1.0 / (1.0 + np.exp(tumour_level / 2.5))                    # ambiguous edge
    image = np.where(organ, image - 35.0 * fade, image)
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0, 12.0, shape)
    labels = np.zeros(shape, np.uint8)
    labels[organ] = TUMOUR_LABELS["organ"]
    labels[tumour] = TUMOUR_LABELS["tumour"]
    volume = Volume(image.astype(np.float32), random_geometry(rng, tuple(spacing)))
    return LabelledVolume(volume, labels, dict(TUMOUR_LABELS))
