"""Where the trace touches another vessel (issue 15): the geometry.

Arteries run beside veins and cross them. Where two touch, the model's mask of the slice
joins them and the slice alone cannot tell them apart (no neck, no darker bridge). Two 3D
cues can, read off the masks (what the model says), the image only saying where a lumen is:

- Lumen continuity (`foreign_parts`): a part of a slice's mask beyond the previous slice's
  reach that lies over a lumen which, on the previous slice, ran outside the trace continues
  a vessel that was not the trace's one slice ago; so does a piece of the mask on none of
  the track's previous mask (`pieces_apart`) over such a lumen.
- Straight through (`straight_pairs`): vessels are smooth, so at a crossing each goes on
  nearly straight; arms around the contact that leave on one line are one vessel.
- Two tubes (`separate`, `passes_by`): traced on a little, the voxels from such a contact
  on are split between the trace and the other vessel by watershed on the 3D depth inside
  the mask (touching tubes meet through a shallow saddle; in 3D they have one). A branch
  leaves the place where it met the trace one way; a vessel that only touches it goes on
  both ways from there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from ..data.regions import bounding_box, full_structure, inner_distance

LUMEN = 0.5             # click-normalised level: half way from surroundings (0) to vessel (1)
MIN_ORIGIN = 3          # pixels of a part over another lumen of the previous slice
MIN_ARM = 8             # voxels of an arm's start that give its line
COS_STRAIGHT = 0.7      # arms at least ~135 degrees apart can be one vessel
STRAIGHT_OFFSET = 1.5   # radii: how far off one line two arms of one vessel may start


def outside_lumen(image: np.ndarray, traced: np.ndarray) -> np.ndarray:
    """A slice's lumen (brighter than half way to the clicked vessel) neither traced nor
    touching the trace: where another vessel runs on that slice."""
    near = ndimage.binary_dilation(traced, full_structure(2))
    return (image > LUMEN) & ~near


def foreign_parts(kept: np.ndarray, reach: np.ndarray, other_lumen: np.ndarray) -> np.ndarray:
    """The parts of `kept` (a slice's mask) beyond `reach` (the previous slice's mask grown
    by the overlap margin) that lie over `other_lumen` of the previous slice by at least
    MIN_ORIGIN pixels: another vessel coming in."""
    beyond = kept & ~reach
    found = np.zeros(kept.shape, bool)
    if not beyond.any() or not other_lumen[beyond].any():
        return found
    parts, count = ndimage.label(beyond, full_structure(2))
    over = np.bincount(parts[other_lumen & beyond], minlength=count + 1)
    for part in np.flatnonzero(over[1:] >= MIN_ORIGIN) + 1:
        found |= parts == part
    return found


def pieces_apart(kept: np.ndarray, previous: np.ndarray, pieces: np.ndarray | None = None
                 ) -> np.ndarray:
    """The pieces of `kept` (a slice's mask) on none of `previous` (the track's mask on the
    slice before), taken only through the overlap margin. Over another vessel's lumen
    (`foreign_parts`), the track stepped sideways onto that vessel: on thick slices its own
    ended or moved, and the other lay within the margin. `pieces`: kept's pieces already
    labelled (full connectivity), as the tracker has them."""
    if pieces is None:
        pieces, _ = ndimage.label(kept, full_structure(2))
    return kept & ~np.isin(pieces, np.unique(pieces[kept & previous]))


def separate(held: np.ndarray, own: np.ndarray, foreign: np.ndarray, spacing,
             outside: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split `held` (voxels traced from a contact on) between the trace (`own`: what it
    showed before, label 1) and each other vessel (`foreign`: labels 1.. where it came in,
    2.. in the result): watershed on the depth (mm) inside held | own, the arms around each
    contact given first where they pair into straight vessels (`straight_pairs`; `outside`:
    the image's lumen outside the trace, where a vessel's arm that was not traced shows).
    Also returns the arms of vessels seen passing straight through a contact (bool; held
    or only in the image's lumen)."""
    domain = held | own
    depth = inner_distance(domain, spacing, np.float32)     # a judged box's largest array
    markers = np.where(own, 1, 0).astype(np.int32)
    markers[foreign > 0] = foreign[foreign > 0] + 1
    through = np.zeros(domain.shape, bool)
    trace_side = _TraceSide.of(domain, own, spacing, depth, outside)
    for index in np.unique(foreign[foreign > 0]):
        ours, theirs = straight_pairs(trace_side, foreign == index,
                                      (foreign > 0) & (foreign != index))
        if ours[foreign == index].all():                # no other vessel: the trace's own
            markers[foreign == index] = 1
        markers[ours & held & (markers == 0)] = 1
        markers[theirs & held & (markers == 0)] = index + 1
        through |= theirs
    return watershed(-depth, markers, mask=domain), through


@dataclass
class _TraceSide:
    """What `straight_pairs` reads of a judged box, the same for every place a vessel came
    in: the domain (held | own), the trace's voxels, the depth inside the domain (mm), each
    voxel's distance to the trace (mm), the trace's radius (mm), the image's lumen outside
    the trace and the pieces it makes with the domain beyond the trace."""
    domain: np.ndarray
    own: np.ndarray
    spacing: np.ndarray
    depth: np.ndarray
    to_own: np.ndarray
    own_radius: float
    outside: np.ndarray | None
    pieces: np.ndarray | None

    @classmethod
    def of(cls, domain, own, spacing, depth, outside=None) -> "_TraceSide":
        spacing = np.asarray(spacing, float)
        if not own.any():
            return cls(domain, own, spacing, depth, np.zeros(own.shape), 0.0, outside, None)
        pieces = (None if outside is None
                  else ndimage.label(outside | (domain & ~own), full_structure(3))[0])
        return cls(domain, own, spacing, depth,
                   ndimage.distance_transform_edt(~own, sampling=spacing),
                   float(inner_distance(own, spacing).max()), outside, pieces)


def straight_pairs(side: _TraceSide, came_in, elsewhere=None) -> tuple[np.ndarray, np.ndarray]:
    """Around the place where another vessel `came_in`, the arms that go on the trace's
    vessel and those of a vessel passing through. Depth alone gives the crossing, and
    through it an arm of the other vessel, to whichever is thicker; but vessels are smooth
    and go on nearly straight through a crossing. The domain outside a ball around the
    contact (as wide as the thicker vessel: `depth` is the mm inside the domain) falls into
    arms, with those of the other vessel that show only in the image's lumen (`outside`);
    two arms that leave on one line are one vessel (`_straight_pairs`). The partner of the
    arm that leaves on the trace is the trace's; another pair is a vessel passing through,
    and once one is found, the arms in no pair are the trace's (its branches there), but for
    those where another vessel came in (`elsewhere`). Where the trace's arm and its partner
    are all there is, `came_in` is the trace's too. Nothing is said where the vessel came in
    away from the trace. Returns (ours, theirs) as voxel masks."""
    domain, own, spacing = side.domain, side.own, side.spacing
    ours, theirs = np.zeros(domain.shape, bool), np.zeros(domain.shape, bool)
    if not came_in.any() or not own.any():
        return ours, theirs
    contact = np.argwhere(came_in)[int(np.argmin(side.to_own[came_in]))]
    radius = max(side.own_radius, float(side.depth[came_in].max()))
    if side.to_own[tuple(contact)] > 2.0 * radius + spacing.max():
        return ours, theirs          # came in away from the trace: no crossing of it here
    seen = domain
    if side.outside is not None:
        seen = domain | (np.isin(side.pieces, np.unique(side.pieces[came_in])) & side.outside)
    arms, starts, lines = _arm_lines(seen, contact, spacing, radius)
    # The trace's arm leaves the contact on the trace (it may join another vessel farther).
    owned = {arm: bool((own & (starts == arm)).any()) for arm in lines}
    if not any(owned.values()):
        return ours, theirs
    paired = set()
    for a, b in _straight_pairs(lines, STRAIGHT_OFFSET * radius):
        if {a, b} & paired or (owned[a] and owned[b]):
            continue
        paired |= {a, b}
        if owned[a] or owned[b]:
            ours |= arms == (b if owned[a] else a)
        else:
            theirs |= (arms == a) | (arms == b)
    if theirs.any():
        for arm in set(lines) - paired:
            if not owned[arm] and not (elsewhere is not None and elsewhere[arms == arm].any()):
                ours |= arms == arm
    elif len(lines) == 2 and paired:
        # The trace's arm and its straight partner, nothing else leaves the contact: what
        # came in is that one vessel bending (e.g. a turnback running in the slice's plane).
        ours |= came_in
    return ours, theirs


def _arm_lines(region, contact, spacing, radius) -> tuple[np.ndarray, np.ndarray, dict]:
    """The region's arms outside a ball around `contact` (`_outside_the_ball`), labelled,
    their starts (the next four radii), and for each arm whose start holds MIN_ARM voxels,
    its line: (start's centre, unit way away from the contact), in mm."""
    arms, count, distance, ball = _outside_the_ball(region, contact, spacing, radius)
    start = np.where(distance <= ball + 4.0 * radius, arms, 0)
    lines = {}
    for arm in range(1, count + 1):
        points = np.argwhere(start == arm) * spacing
        if len(points) < MIN_ARM:
            continue
        centre = points.mean(axis=0)
        way = np.linalg.svd(points - centre, full_matrices=False)[2][0]
        lines[arm] = (centre, way if way @ (centre - contact * spacing) >= 0 else -way)
    return arms, start, lines


def _outside_the_ball(region, contact, spacing, radius):
    """The region's pieces outside a ball around `contact` (twice the radius plus a voxel:
    where two vessels meet), labelled, their count, each voxel's distance from the contact
    and the ball's radius (mm)."""
    spacing = np.asarray(spacing, float)
    ball = 2.0 * radius + float(spacing.max())
    grid = np.ogrid[tuple(slice(0, n) for n in region.shape)]
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, contact, spacing)))
    pieces, count = ndimage.label(region & (distance > ball), full_structure(3))
    return pieces, count, distance, ball


def _straight_pairs(lines: dict, tolerance: float) -> list[tuple[int, int]]:
    """Pairs of arms that could be one vessel: leaving opposite ways (COS_STRAIGHT), each
    one's start on average within `tolerance` mm of the other's line. Straightest first:
    where an arm could pair two ways, the better one is taken."""
    pairs = []
    for a in lines:
        for b in lines:
            (pa, wa), (pb, wb) = lines[a], lines[b]
            if a >= b or wa @ wb > -COS_STRAIGHT:
                continue
            gap = pb - pa
            off = 0.5 * (np.linalg.norm(gap - (gap @ wa) * wa)
                         + np.linalg.norm(gap - (gap @ wb) * wb))
            if off <= tolerance:
                pairs.append((off, a, b))
    return [(a, b) for _, a, b in sorted(pairs)]


def arms(region: np.ndarray, contact, spacing, radius_mm: float) -> int:
    """How many ways `region` (3D) leaves `contact` (a voxel): pieces outside a ball around
    the contact (twice the vessel's radius plus a voxel: where the two meet) that reach at
    least two radii farther."""
    pieces, count, distance, ball = _outside_the_ball(region, contact, spacing, radius_mm)
    if count == 0:
        return 0
    farthest = ndimage.maximum(distance, pieces, index=np.arange(1, count + 1))
    return int((np.asarray(farthest) >= ball + 2.0 * radius_mm).sum())


def passes_by(region: np.ndarray, trace: np.ndarray, spacing, seen=None) -> bool:
    """`region` (another vessel's voxels, split off by `separate`) only touches `trace`: it
    goes on both ways from the voxel where they meet. A branch leaves from there one way.
    `seen`: the region with the image's lumen it runs on in outside the trace (a vessel the
    tracks followed one way only still shows both ways in the image)."""
    if not region.any() or not trace.any():
        return False
    # Where they meet: the region's voxel nearest the trace, looked for around the region
    # (they touch, so the nearest trace voxel is within a voxel or two of it).
    near = bounding_box(region, margin=2)
    if not trace[near].any():                 # joined only through the overlap margin
        near = tuple(slice(0, n) for n in trace.shape)
    to_trace = ndimage.distance_transform_edt(~trace[near], sampling=spacing)
    inside = region[near]
    contact = np.argwhere(inside)[int(np.argmin(to_trace[inside]))] + [b.start for b in near]
    seen = region if seen is None else seen
    box = bounding_box(seen, margin=1)
    seen = seen[box]
    contact = contact - [b.start for b in box]
    radius = float(inner_distance(seen, spacing).max())
    return arms(seen, contact, spacing, radius) >= 2
