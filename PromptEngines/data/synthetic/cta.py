"""Synthetic 3D CT-angiography-like vessel volumes, deterministic by seed.

`vessel_volume`: a vessel tree (bifurcations, radius decreasing along the tree, tortuous
centrelines, one branch that turns back along z), an unconnected vessel nearby, bright
distractors, noise, partial-volume blur, anisotropic spacing, oblique direction and a
non-zero origin.

`neighbours="paired"` (issue 15) replaces the unconnected vessel by what lies around an artery
in real CTA (cta_neighbours.py): a vein beside the trunk for its whole length (1.0-3.5 mm wall
to wall, 0.6-1.0 of the artery's contrast), maybe a vein beside a main branch, one or two veins
crossing a branch and touching it at one place, and a second artery tree nearby. The clicked
tree (and its click) is the same as with the default `neighbours="classic"`, which keeps
today's volumes bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..volume import Volume
from . import cta_neighbours
from .cta_tissue import (CONTRAST_FALL, TISSUE_HU, add_touching_bone, add_wall_plaques,
                         grid_mm, lumen_along_tree, vein_hu)
from .geometry import random_geometry
from .tubes import Branch, grow_branch, occupancy, point_at, signed_depth, smooth_field, turned


@dataclass
class VesselCase:
    """`label`: the tree the user clicks on (one 26-connected piece holding `seed_index`).
    `other_vessels`: every other vessel's lumen (uint8), never overlapping `label`.
    `distractor`: what benchmarks count as "on another vessel"; with the classic neighbours the
    one unconnected vessel, with the paired ones the same array as `other_vessels` (so
    `metrics.fraction_on(mask, case.distractor)` means the same thing for both).
    `other_kinds`: `other_vessels` split by kind (paired: adjacent_vein, companion_vein,
    crossing_vein, second_tree; classic: distractor). `others`: their geometry and contrast."""
    volume: Volume
    label: np.ndarray             # uint8: the connected tree the user clicks on
    distractor: np.ndarray        # uint8: the unconnected vessel(s) nearby
    seed_index: tuple[int, int, int]
    branches: list[Branch] = field(repr=False, default_factory=list)
    other_vessels: np.ndarray | None = field(repr=False, default=None)
    other_kinds: dict = field(repr=False, default_factory=dict)
    others: list = field(repr=False, default_factory=list)

    def __post_init__(self):
        if self.other_vessels is None:
            self.other_vessels = self.distractor
        if not self.other_kinds:
            self.other_kinds = {"distractor": self.distractor}

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
NEIGHBOURS = ("classic", "paired")


def vessel_volume(seed: int = 0, shape=(80, 112, 112), spacing_zyx=None,
                  oblique: bool = True, realism: str = "clinical",
                  neighbours: str = "classic", contrast_fall=CONTRAST_FALL) -> VesselCase:
    """`realism="clinical"` adds what defeats thresholding in real CTA (cta_tissue.py):
    contrast falling along the tree, bone touching the vessel, wall plaque, more noise, a dimmer
    vein.
    `"clean"`: uniform lumen contrast and low noise.
    `neighbours="classic"`: one unconnected vessel at least 1.5 mm from the tree (the volumes
    of the existing benchmark tables and model, bit for bit). `"paired"`: adjacent, companion
    and crossing veins and a second artery tree instead (cta_neighbours.py); same tree.
    `contrast_fall` (clinical): the range the tree's loss of contrast at its farthest point is
    drawn from (cta_tissue.lumen_along_tree; the default gives every table's volumes)."""
    if realism not in REALISM:
        raise ValueError(f"unknown realism {realism!r}; known: {', '.join(REALISM)}")
    if neighbours not in NEIGHBOURS:
        raise ValueError(f"unknown neighbours {neighbours!r}; known: {', '.join(NEIGHBOURS)}")
    rng = np.random.default_rng(seed)
    if spacing_zyx is None:
        in_plane = rng.uniform(0.6, 0.85)
        spacing_zyx = (rng.uniform(1.0, 1.6), in_plane, in_plane)
    spacing = np.asarray(spacing_zyx, float)
    extent = (np.asarray(shape) - 1) * spacing
    branches = _vessel_tree(rng, extent)
    if neighbours == "paired":
        return _paired_case(rng, shape, spacing, spacing_zyx, oblique, realism, branches,
                            contrast_fall)
    tree_depth = signed_depth(shape, spacing, branches)
    distractor_branches = _distractor_vessel(rng, extent, tree_depth, spacing)
    distractor_depth = signed_depth(shape, spacing, distractor_branches)
    image = (_clinical_cta(rng, shape, spacing, branches, tree_depth, distractor_depth,
                           contrast_fall) if realism == "clinical" else
             _clean_cta(rng, shape, spacing, branches, tree_depth, distractor_depth))

    volume = Volume(image.astype(np.float32), random_geometry(rng, spacing_zyx, oblique))
    return VesselCase(volume, (tree_depth >= 0).astype(np.uint8),
                      (distractor_depth >= 0).astype(np.uint8), _seed_of(branches, spacing),
                      branches + distractor_branches)


def _seed_of(branches, spacing) -> tuple[int, int, int]:
    """Where the user clicks: a quarter of the way along the trunk."""
    trunk = branches[0]
    seed_point = trunk.points[int(0.25 * (len(trunk.points) - 1))]
    return tuple(int(v) for v in np.round(seed_point / spacing))


def _paired_case(rng, shape, spacing, spacing_zyx, oblique, realism, branches,
                 contrast_fall=CONTRAST_FALL) -> VesselCase:
    extent = (np.asarray(shape) - 1) * spacing
    others = cta_neighbours.neighbours_of(rng, branches, extent, spacing)
    tree_depth = signed_depth(shape, spacing, branches)
    image, per_kind = _paired_cta(rng, shape, spacing, branches, tree_depth, others,
                                  realism == "clinical", contrast_fall)
    label = tree_depth >= 0
    kinds = {kind: ((depth >= 0) & ~label).astype(np.uint8)
             for kind, (depth, _) in per_kind.items()}
    other = np.zeros(shape, np.uint8)
    for mask in kinds.values():
        other |= mask
    volume = Volume(image.astype(np.float32), random_geometry(rng, spacing_zyx, oblique))
    return VesselCase(volume, label.astype(np.uint8), other, _seed_of(branches, spacing),
                      cta_neighbours.flattened(branches, others), other, kinds, others)


def _paired_cta(rng, shape, spacing, branches, tree_depth, others, clinical: bool,
                contrast_fall=CONTRAST_FALL):
    """Like `_clinical_cta` / `_clean_cta`, with the other vessels painted at their own
    contrast (veins relative to the artery point they sit beside), and the bone and wall
    plaques placed clear of them."""
    voxel_mm = float(spacing.min())
    other_branches = [b for o in others for b in o.branches]
    if clinical:
        grid = grid_mm(shape, spacing)
        trunk_hu = rng.uniform(300.0, 380.0)
        points_hu = lumen_along_tree(branches, rng, trunk_hu, contrast_fall)
        _, tree_lumen = signed_depth(shape, spacing, branches, point_values=points_hu)
        image = TISSUE_HU + smooth_field(shape, rng, sigma=8, amplitude=20.0)
        image = cta_neighbours.bone_beside(image, rng, spacing, branches[0], grid, other_branches)
        texture = smooth_field(shape, rng, sigma=6, amplitude=20.0)
    else:
        trunk_hu = 320.0
        points_hu = [np.full(len(b.points), trunk_hu) for b in branches]
        image = 40.0 + smooth_field(shape, rng, sigma=8, amplitude=20.0)
        texture = smooth_field(shape, rng, sigma=6, amplitude=30.0)
        tree_lumen = trunk_hu
    per_kind = cta_neighbours.other_depths(shape, spacing, branches, others, points_hu,
                                           trunk_hu, rng, falling=clinical)
    other_depth, other_hu = cta_neighbours.combined(per_kind, shape)
    image += occupancy(other_depth, voxel_mm) * (other_hu + texture - image)
    image += occupancy(tree_depth, voxel_mm) * (tree_lumen + texture - image)
    if clinical:
        image = cta_neighbours.plaques_beside(image, rng, spacing, branches[0], grid,
                                              int(rng.integers(1, 3)), other_branches)
    image = _add_calcifications(image, rng, spacing, np.maximum(tree_depth, other_depth))
    image = ndimage.gaussian_filter(image, 0.6 * voxel_mm / spacing)   # scanner PSF
    noise = rng.uniform(28.0, 38.0) if clinical else 22.0
    return image + rng.normal(0.0, noise, size=shape), per_kind


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


def _clinical_cta(rng, shape, spacing, branches, tree_depth, distractor_depth,
                  contrast_fall=CONTRAST_FALL) -> np.ndarray:
    voxel_mm = float(spacing.min())
    grid = grid_mm(shape, spacing)
    trunk_hu = rng.uniform(300.0, 380.0)
    _, tree_lumen = signed_depth(shape, spacing, branches,
                                 point_values=lumen_along_tree(branches, rng, trunk_hu,
                                                               contrast_fall))
    image = TISSUE_HU + smooth_field(shape, rng, sigma=8, amplitude=20.0)
    image = add_touching_bone(image, rng, spacing, branches[0], grid)
    texture = smooth_field(shape, rng, sigma=6, amplitude=20.0)
    image += occupancy(distractor_depth, voxel_mm) * (vein_hu(rng, trunk_hu) + texture - image)
    image += occupancy(tree_depth, voxel_mm) * (tree_lumen + texture - image)
    image = add_wall_plaques(image, rng, spacing, branches[0], grid, int(rng.integers(1, 3)))
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
