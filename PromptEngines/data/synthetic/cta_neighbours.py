"""The vessels real CTA has around the artery the user clicks (issue 15), for
`vessel_volume(..., neighbours="paired")`:

- an adjacent vein beside the trunk for the trunk's whole length (and on to the edges of the
  volume): 1.0-3.5 mm of tissue wall to wall, parallel or slowly diverging, 0.8-1.15 times the
  artery's radius, 0.6-1.0 times the artery's local contrast over tissue; with probability one
  half a second companion vein beside the first main branch (same rules, starting where it is
  clear of the trunk);
- one or two crossing veins: a vein that crosses a branch of the tree at 50-90 degrees and
  touches it at one place (the two tube surfaces meet, centre distance = sum of the radii plus
  0.05 mm: partial volume makes a one-voxel bright bridge, but no voxel is inside both), and
  keeps at least 1 mm from the tree everywhere else;
- a second, smaller artery tree nearby (starting 4-14 mm from the trunk; at least 1.5 mm, and
  more than a voxel diagonal, and at most 12 mm from the clicked tree at its closest),
  0.85-1.05 times the trunk's contrast, falling along it.

Wall-to-wall gaps are measured between tube surfaces: distance between centrelines minus both
radii (`tube_gaps`), the same tube definition `tubes.signed_depth` rasterises. Everything is
drawn from the caller's generator, so a case stays deterministic by seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .cta_tissue import PLAQUE_HU, TISSUE_HU, ellipsoid_depth, lumen_along_tree, paint_bone
from .tubes import (Branch, grow_branch, occupancy, perpendicular, point_at, signed_depth,
                    turned, unit)

ADJACENT_GAP_MM = (1.0, 3.5)          # wall to wall, adjacent and companion veins
VEIN_CONTRAST = (0.6, 1.0)            # vein contrast over tissue / the artery's, locally
VEIN_RADIUS_FACTOR = (0.8, 1.15)      # adjacent vein radius / the artery's
CLEARANCE_MM = 1.0                    # every other vessel keeps this far from the tree ...
SECOND_TREE_CLEARANCE_MM = 1.5        # ... the second tree this far, and comes within
SECOND_TREE_NEAR_MM = 12.0            # this of it (wall to wall) somewhere
CONTACT_GAP_MM = 0.05                 # a crossing vein's surface this far from the artery's
KINDS = ("adjacent_vein", "companion_vein", "crossing_vein", "second_tree")


@dataclass
class OtherVessel:
    """One vessel (or tree) that is not the clicked tree."""
    kind: str                          # one of KINDS
    branches: list[Branch]             # parents index this list
    artery: int | None = None          # the clicked tree's branch it runs beside / touches
    # Per centreline point of branches[0]: the artery point it sits beside (veins only).
    artery_points: np.ndarray | None = field(default=None, repr=False)
    contrast: float = 1.0              # times the artery's local contrast (second tree: trunk's)
    gap_mm: tuple[float, float] | None = None   # adjacent/companion: wall-to-wall range
    contact_mm: float | None = None    # crossing: smallest wall-to-wall gap (the contact)


# ---------------------------------------------------------------------------- geometry helpers
def _segments(branches):
    a = np.concatenate([b.points[:-1] for b in branches])
    b = np.concatenate([b.points[1:] for b in branches])
    ra = np.concatenate([br.radii[:-1] for br in branches])
    rb = np.concatenate([br.radii[1:] for br in branches])
    return a, b, ra, rb


def surface_distance(points, branches, chunk: int = 512) -> np.ndarray:
    """Distance (mm) from each point to the surface of the nearest tube of `branches`
    (negative inside), with `signed_depth`'s tube: max over segments of radius - distance."""
    points = np.atleast_2d(np.asarray(points, float))
    if not branches:
        return np.full(len(points), np.inf)
    a, b, ra, rb = _segments(branches)
    ab = b - a
    length2 = np.maximum((ab * ab).sum(1), 1e-12)
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        d = points[start:start + chunk, None, :] - a[None]
        t = np.clip((d * ab).sum(-1) / length2, 0.0, 1.0)
        distance = np.linalg.norm(d - t[..., None] * ab, axis=-1)
        out[start:start + chunk] = (distance - (ra + t * (rb - ra))).min(1)
    return out


def tube_gaps(points, radii, branches, subdivide: int = 4) -> np.ndarray:
    """Wall-to-wall gap (mm) from the tube along `points` (radii per point) to `branches`'
    tubes, one value per point: the smallest over the half segments either side (sampled
    `subdivide` times per segment), so a gap between two centreline points is not missed."""
    points, radii = np.asarray(points, float), np.asarray(radii, float)
    if len(points) == 1:
        return surface_distance(points, branches) - radii
    t = np.linspace(0.0, 1.0, subdivide + 1)[:-1]
    dense = (points[:-1, None] + t[None, :, None] * np.diff(points, axis=0)[:, None]).reshape(-1, 3)
    dense_r = (radii[:-1, None] + t[None] * np.diff(radii)[:, None]).reshape(-1)
    dense = np.concatenate([dense, points[-1:]])
    dense_r = np.concatenate([dense_r, radii[-1:]])
    gaps = surface_distance(dense, branches) - dense_r
    per_point = np.full(len(points), np.inf)
    owner = np.minimum(np.round(np.arange(len(dense)) / subdivide).astype(int), len(points) - 1)
    np.minimum.at(per_point, owner, gaps)
    return per_point


def _tangents(points) -> np.ndarray:
    forward = np.gradient(points, axis=0)
    return forward / np.maximum(np.linalg.norm(forward, axis=1, keepdims=True), 1e-12)


def _transported_frame(tangents, first_normal):
    """Normals (n, 3) and binormals along a curve by parallel transport (no twist)."""
    normals = np.empty_like(tangents)
    normal = unit(first_normal - first_normal.dot(tangents[0]) * tangents[0])
    for i, tangent in enumerate(tangents):
        normal = unit(normal - normal.dot(tangent) * tangent)
        normals[i] = normal
    return normals, np.cross(tangents, normals)


def _inside(point, extent) -> bool:
    return bool(np.all(point >= 0) and np.all(point <= extent))


def _extend(points, radii, source, extent, max_mm=40.0, step=1.0):
    """Continue a polyline straight on at both ends until it leaves the grid."""
    head, tail = [], []
    back = unit(points[0] - points[1])
    ahead = unit(points[-1] - points[-2])
    for k in range(1, int(max_mm / step) + 1):
        p = points[0] + back * k * step
        if not _inside(p, extent):
            break
        head.append(p)
    for k in range(1, int(max_mm / step) + 1):
        p = points[-1] + ahead * k * step
        if not _inside(p, extent):
            break
        tail.append(p)
    head = np.array(head[::-1]).reshape(-1, 3)
    tail = np.array(tail).reshape(-1, 3)
    points = np.concatenate([head, points, tail])
    radii = np.concatenate([np.full(len(head), radii[0]), radii, np.full(len(tail), radii[-1])])
    source = np.concatenate([np.full(len(head), source[0]), source,
                             np.full(len(tail), source[-1])]).astype(int)
    return points, radii, source, len(head), len(tail)


# ---------------------------------------------------------------------------- the vessels
def _gap_profile(rng, count, gap_mm):
    """Parallel (constant gap) or slowly diverging (gap growing linearly along the artery,
    either way), inside `gap_mm` with 0.05 mm to spare for the tube's curvature."""
    low, high = gap_mm[0] + 0.05, gap_mm[1] - 0.05
    if rng.uniform() < 0.5:
        return np.full(count, rng.uniform(low, high))
    start = rng.uniform(low, high - 0.8)
    end = rng.uniform(start + 0.5, high)
    profile = np.linspace(start, end, count)
    return profile if rng.uniform() < 0.5 else profile[::-1]


def companion_vein(rng, artery: Branch, tree: list[Branch], artery_index: int, avoid,
                   extent, whole_length: bool, gap_mm=ADJACENT_GAP_MM, angles: int = 48):
    """A vein beside `artery` at a wall-to-wall gap within `gap_mm`, at least CLEARANCE_MM
    from the rest of the tree and 0.5 mm from the vessels in `avoid`. `whole_length`: the
    vein runs along all of the artery (and on to the grid's edges); otherwise it starts
    where it is clear of the rest of the tree. None when no side around the artery works."""
    points, radii = artery.points, artery.radii
    if len(points) < 8:
        return None
    factor = rng.uniform(*VEIN_RADIUS_FACTOR)
    vein_radii = np.maximum(factor * radii, 1.0)
    gaps = _gap_profile(rng, len(points), gap_mm)
    offsets = radii + vein_radii + gaps
    tangents = _tangents(points)
    normals, binormals = _transported_frame(tangents, perpendicular(tangents[0], rng))
    rest = [b for i, b in enumerate(tree) if i != artery_index]
    contrast = rng.uniform(*VEIN_CONTRAST)
    for theta in rng.permutation(angles) * (2 * np.pi / angles):
        side = np.cos(theta) * normals + np.sin(theta) * binormals
        centre = points + side * offsets[:, None]
        source = np.arange(len(points))
        centre, r, source, _, _ = _extend(centre, vein_radii, source, extent)
        clear = np.minimum(tube_gaps(centre, r, rest) - CLEARANCE_MM - 0.05,
                           tube_gaps(centre, r, avoid) - 0.5)
        own = tube_gaps(centre, r, [artery])
        clear = np.minimum(clear, own - gap_mm[0])
        bad = np.flatnonzero(clear < 0)
        if whole_length and bad.size:
            continue
        if bad.size and not np.array_equal(bad, np.arange(bad.size)):
            continue                      # only a leading stretch (in the parent) may be cut
        keep = slice(bad.size, None)
        centre, r, source, own = centre[keep], r[keep], source[keep], own[keep]
        if np.count_nonzero(source < len(points) - 1) < 15:
            continue
        beside = (source > 0) & (source < len(points) - 1)
        vein = Branch(centre, r, role="vein")
        return OtherVessel("adjacent_vein" if whole_length else "companion_vein", [vein],
                           artery_index, source, contrast,
                           (float(own[beside].min()), float(own[beside].max())))
    return None


def crossing_vein(rng, tree: list[Branch], artery_index: int, avoid, extent):
    """A vein crossing branch `artery_index` at 50-90 degrees whose wall touches the artery's
    at one place (CONTACT_GAP_MM apart) and keeps CLEARANCE_MM from the tree elsewhere."""
    artery = tree[artery_index]
    position, direction, radius = point_at(artery, rng.uniform(0.3, 0.75))
    contact_index = int(np.argmin(np.linalg.norm(artery.points - position, axis=1)))
    crossing = turned(direction, rng.uniform(50.0, 90.0), rng)
    normal = unit(np.cross(direction, crossing))
    vein_radius = rng.uniform(1.3, 2.3)
    centre = position + normal * (radius + vein_radius + CONTACT_GAP_MM)
    halves = [grow_branch(centre, sign * crossing, 120.0, vein_radius, vein_radius, rng, extent,
                          tortuosity=0.006) for sign in (1.0, -1.0)]
    points = np.concatenate([halves[1].points[::-1], halves[0].points[1:]])
    if len(points) < 25:
        return None
    radii = vein_radius * np.linspace(1.08, 0.92, len(points))
    # Move the vein along the common normal until its wall is CONTACT_GAP_MM from the artery's.
    for _ in range(4):
        shift = tube_gaps(points, radii, [artery]).min() - CONTACT_GAP_MM
        points = points - normal * shift
        if abs(shift) < 0.005:
            break
    gaps = tube_gaps(points, radii, [artery])
    contact = int(np.argmin(gaps))
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    window = np.abs(arc - arc[contact]) <= (radius + vein_radius) * 2.5 + 2.0
    rest = [b for i, b in enumerate(tree) if i != artery_index]
    if (abs(gaps.min() - CONTACT_GAP_MM) > 0.02 or np.any(gaps[~window] < CLEARANCE_MM + 0.05)
            or np.any(tube_gaps(points, radii, rest) < CLEARANCE_MM + 0.05)
            or np.any(tube_gaps(points, radii, avoid) < 0.3)):
        return None
    # Along the window the vein must leave the artery on both sides (one place of contact).
    near = np.flatnonzero(gaps < CLEARANCE_MM)
    if near.size and np.any(np.diff(near) > 1):
        return None
    contrast = rng.uniform(*VEIN_CONTRAST)
    vein = Branch(points, radii, role="crossing_vein")
    return OtherVessel("crossing_vein", [vein], artery_index,
                       np.full(len(points), contact_index), contrast, contact_mm=float(gaps.min()))


def second_tree(rng, tree: list[Branch], avoid, extent, clearance=SECOND_TREE_CLEARANCE_MM):
    """A smaller artery tree nearby, never touching the clicked one (at least `clearance`
    mm of tissue between them)."""
    trunk = tree[0]
    for _ in range(80):
        from_top = rng.uniform() < 0.5
        z0 = extent[0] - 2.0 if from_top else 2.0
        beside = trunk.points[np.argmin(np.abs(trunk.points[:, 0] - z0))]
        beside_r = trunk.radii[np.argmin(np.abs(trunk.points[:, 0] - z0))]
        r0 = rng.uniform(1.8, 2.6)
        angle = rng.uniform(0, 2 * np.pi)
        distance = beside_r + r0 + rng.uniform(4.0, 14.0)
        lateral = beside[1:] + distance * np.array([np.cos(angle), np.sin(angle)])
        if np.any(lateral < r0 + 2.0) or np.any(lateral > extent[1:] - r0 - 2.0):
            continue
        heading = [-1.0 if from_top else 1.0, *rng.normal(0, 0.1, 2)]
        main = grow_branch([z0, *lateral], heading, extent[0] * rng.uniform(0.5, 0.85), r0,
                           0.65 * r0, rng, extent, tortuosity=0.012)
        if main.length < 25.0:
            continue
        main.role = "second_trunk"
        branches = [main]
        for _child in range(int(rng.integers(1, 3))):
            position, direction, radius = point_at(main, rng.uniform(0.35, 0.8))
            child = grow_branch(position, turned(direction, rng.uniform(30, 55), rng),
                                rng.uniform(15, 35), radius * 0.75, radius * 0.55, rng, extent)
            child.parent, child.role = 0, "second_branch"
            main.children.append(len(branches))
            branches.append(child)
        to_tree = min(tube_gaps(b.points, b.radii, tree).min() for b in branches)
        ok = all(tube_gaps(b.points, b.radii, avoid).min() >= 0.5 for b in branches)
        if ok and clearance + 0.05 <= to_tree <= SECOND_TREE_NEAR_MM:
            return OtherVessel("second_tree", branches, contrast=rng.uniform(0.85, 1.05))
    return None


class NoRoom(RuntimeError):
    """The volume leaves no room for the paired neighbours of this tree (a short volume)."""


def neighbours_of(rng, tree: list[Branch], extent, spacing) -> list[OtherVessel]:
    """The adjacent vein, maybe a companion vein, a second tree and one or two crossing veins.
    The second tree keeps more than a voxel diagonal from the clicked tree, so the two masks
    are never 26-neighbours."""
    extent = np.asarray(extent, float)
    diagonal = float(np.linalg.norm(spacing))
    others: list[OtherVessel] = []

    def placed():
        return [b for o in others for b in o.branches]

    adjacent = companion_vein(rng, tree[0], tree, 0, [], extent, whole_length=True)
    if adjacent is None:
        raise NoRoom("no side of the trunk leaves room for an adjacent vein")
    others.append(adjacent)
    main = [i for i, b in enumerate(tree) if b.parent == 0 and b.children]
    if main and rng.uniform() < 0.5:
        companion = companion_vein(rng, tree[main[0]], tree, main[0], placed(), extent,
                                   whole_length=False)
        if companion is not None:
            others.append(companion)
    second = second_tree(rng, tree, placed(), extent,
                         max(SECOND_TREE_CLEARANCE_MM, diagonal + 0.1))
    if second is not None:
        others.append(second)
    candidates = [i for i, b in enumerate(tree) if i != 0 and b.length >= 15.0]
    wanted = int(rng.integers(1, 3))
    crossings = 0
    for _ in range(40):
        if crossings == wanted or not candidates:
            break
        vein = crossing_vein(rng, tree, int(rng.choice(candidates)), placed(), extent)
        if vein is not None:
            others.append(vein)
            crossings += 1
    return others


def flattened(tree: list[Branch], others: list[OtherVessel]) -> list[Branch]:
    """The tree then every other vessel's branches, parents re-indexed to the whole list."""
    flat = list(tree)
    for other in others:
        offset = len(flat)
        for branch in other.branches:
            parent = None if branch.parent is None else branch.parent + offset
            flat.append(replace(branch, parent=parent,
                                children=[c + offset for c in branch.children]))
    return flat


# ---------------------------------------------------------------------------- painting
def other_depths(shape, spacing, tree, others, tree_lumen_points, trunk_hu, rng,
                 falling: bool = True):
    """Per kind: (signed depth, lumen HU) of the other vessels. Veins take their contrast
    relative to the artery point they sit beside; the second tree its own contrast, falling
    along it when `falling` (clinical realism)."""
    per_kind = {}
    for other in others:
        if other.kind == "second_tree":
            own_hu = TISSUE_HU + other.contrast * (trunk_hu - TISSUE_HU)
            values = (lumen_along_tree(other.branches, rng, own_hu) if falling else
                      [np.full(len(b.points), own_hu) for b in other.branches])
        else:
            artery = tree_lumen_points[other.artery][other.artery_points]
            values = [TISSUE_HU + other.contrast * (artery - TISSUE_HU)]
        depth, hu = signed_depth(shape, spacing, other.branches, point_values=values)
        if other.kind in per_kind:
            old_depth, old_hu = per_kind[other.kind]
            deeper = depth > old_depth
            depth, hu = np.maximum(old_depth, depth), np.where(deeper, hu, old_hu)
        per_kind[other.kind] = (depth, hu)
    return per_kind


def combined(per_kind, shape):
    depth = np.full(shape, -np.inf, np.float32)
    hu = np.full(shape, TISSUE_HU, np.float32)
    for kind_depth, kind_hu in per_kind.values():
        deeper = kind_depth > depth
        hu = np.where(deeper, kind_hu, hu)
        depth = np.maximum(depth, kind_depth)
    return depth, hu


def bone_beside(image, rng, spacing, trunk: Branch, grid, avoid: list[Branch], tries: int = 30):
    """`cta_tissue.add_touching_bone`, on a side of the trunk where the bone keeps 0.5 mm from
    the other vessels (the closest try if none does)."""
    best = None
    for _ in range(tries):
        position, direction, radius = point_at(trunk, rng.uniform(0.55, 0.75))
        side = perpendicular(direction, rng)
        third = np.cross(direction, side)
        along, across = rng.uniform(10.0, 16.0), rng.uniform(6.0, 9.0)
        centre = position + side * (radius + across + rng.uniform(0.0, 0.4))
        axes, semi = [direction, side, third], [along, across, across]
        margin = np.inf
        for branch in avoid:
            depth = ellipsoid_depth(branch.points, centre, axes, semi) + branch.radii
            margin = min(margin, float(-depth.max()))
        if best is None or margin > best[0]:
            best = (margin, centre, axes, semi)
        if margin >= 0.5:
            break
    _, centre, axes, semi = best
    return paint_bone(image, rng, spacing, ellipsoid_depth(grid, centre, axes, semi))


def plaques_beside(image, rng, spacing, branch: Branch, grid, count: int, avoid: list[Branch]):
    """`cta_tissue.add_wall_plaques`, each plaque 0.3 mm or more from the other vessels."""
    for _ in range(count):
        for _try in range(30):
            position, direction, radius = point_at(branch, rng.uniform(0.3, 0.9))
            size = rng.uniform(0.8, 1.4)
            centre = position + perpendicular(direction, rng) * (radius + size)
            if surface_distance(centre, avoid)[0] - size >= 0.3:
                break
        depth = size - np.linalg.norm(grid - centre, axis=-1)
        image = image + occupancy(depth, float(np.min(spacing))) * (PLAQUE_HU - image)
    return image
