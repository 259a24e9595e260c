"""Slice-by-slice tracing from one click, with the method's automatic prompt generation.

Per slice (Zhang, Yu, Xue): the point moves by the offset MLP's prediction from the previous
slice's features (p~ = p + Net_offset(F)); the model segments with p~; the point is refined
towards the probability peak, p = (1-λ) p~ + λ argmax P, with λ in [0.1, 0.5] growing with the
peak's confidence; the model segments again with p. Our additions, where the paper stops:

- A frontier of tracks instead of one direction: the click starts one track up and one down.
  Wherever a slice's mask splits, each piece continues as its own track (bifurcations).
  Wherever a slice's mask reaches past the traced mask of the slice it came from, a track
  starts back in that direction (a vessel that turns back along z, a branch leaving
  backwards). A track stops when the vessel ends (nothing overlapping its previous slice),
  when confidence collapses, when it only finds what is already traced, or at the volume's
  edge.
- argmax P is taken near p~ only, so refinement cannot jump to a neighbouring vessel, and
  the refined prompt's mask replaces the first only when the model's predicted IoU is at
  least as high (confidence-guided in both senses; ungated refinement lost a branch).
- A second look once the trace is complete: tracks from wherever a slice's traced mask
  reaches past its neighbours' (the arms of shallow branches, which a slice traced before
  its neighbours cannot tell apart), kept only where they are branches (branches.py).
- Contacts with other vessels (issue 15): where a slice's mask takes in a lumen that ran
  outside the trace one slice before, the tracks from there are held back, traced on, and
  judged in 3D (contacts.py, held.py): a vessel that only touches the trace (it goes on both
  ways from where they meet: a vein beside or across the artery) is dropped and never traced
  again; a branch is shown. Nothing shown is ever taken back.
- Encoding is prompt-free: fixed tiles on a grid, each encoded once, in batches along z ahead
  of the tracks, exactly as the model saw crops in training (the point within half a grid
  step of its tile's centre, where training's crop jitter puts it); the per-slice cost is
  the crop decoder. On a GPU both are replayed from CUDA graphs (graphs.py).
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from scipy import ndimage

from ..data.regions import (bounding_box, deepest_point, dilated_within, full_structure,
                            pieces_in_box, slice_pieces, window)
from ..errors import PromptError
from .branches import keep_branches
from .contacts import foreign_parts, outside_lumen, pieces_apart
from .held import HeldContacts
from ..backbones.graphs import GraphedCall


CACHE_SHARE = 0.125     # of the volume's float32 size: the most the tile cache may hold


@dataclass(frozen=True)
class TraceOptions:
    propagation: str = "offset"        # offset (the method) | centre | affine (baselines)
    use_offset: bool = True
    use_refine: bool = True
    carry_mask: bool = True            # previous slice's logits as a dense prompt (ours)
    refine_gate: bool = True           # keep the refined mask only if it is as confident
    refine_radius: int = 6             # pixels around p~ where argmax P is looked for
    threshold: float = 0.5
    min_confidence: float = 0.35       # mean probability inside the kept mask
    overlap_margin: int = 2            # pixels: how far a vessel may move between slices
    min_new_pixels: int = 2            # fewer new pixels: the track joined traced territory
    min_backward_pixels: int = 6       # mask beyond the previous slice that starts a track back
    second_look: bool = True           # trace on from the finished trace's arms (branches.py)
    contacts: bool = True              # hold and judge where another vessel comes in (held.py)
    judge_after: int = 16              # slices traced from a contact before it is judged
    min_escape: float = 3.0            # voxels beyond the trace a second-look find must reach
    max_brighter: float = 0.0          # a find's level over its parent's (normalised units)
    max_slices: int = 4000             # traced slices, all tracks together
    max_seconds: float = 120.0
    chunk: int = 8                     # slices whose tile is encoded in one batch
    cache_mb: float = 256.0            # features kept (LRU; ≤ CACHE_SHARE of the volume): SAM tile-slice ~4 MB
    cuda_graphs: bool = True           # on a GPU, replay encoder and decoder from CUDA graphs


@dataclass
class SliceResult:
    z: int
    rows: slice
    cols: slice
    mask: np.ndarray                   # bool, the traced vessel in this window of slice z
    tracks: int                        # tracks still waiting
    second_look: bool = False          # the second look's: a branch it kept (tracks: none)
    tentative: bool = False            # slice z traced but held back (a contact being judged,
                                       # or the second look trying it): nothing to show


def _progress_only(z: int, tracks: int, second_look: bool = False) -> SliceResult:
    """An empty result for slice z, traced but held back: progress, and a place to cancel."""
    nothing = slice(0, 0)
    return SliceResult(z, nothing, nothing, np.zeros((0, 0), bool), tracks,
                       second_look=second_look, tentative=True)


@dataclass
class _Track:
    z: int
    direction: int                     # +1 / -1 along z; 0: along the slice's plane
    point: np.ndarray                  # (y, x), slice pixels: the centre on the previous slice
    previous: np.ndarray               # bool mask of the previous slice, slice coordinates window
    previous_origin: tuple[int, int]
    previous_logits: tuple[torch.Tensor, tuple[int, int]]   # logits and their crop origin
    bottleneck: torch.Tensor | None = field(default=None, repr=False)
    group: int = 0                     # the contact it was traced from (held.py); 0: none


@dataclass(frozen=True)
class SliceCalls:
    """The model's encode and decode as the tracker calls them."""
    encode: object
    decode: object


def slice_calls(model, options: TraceOptions, device: str) -> SliceCalls:
    """The model's calls, replayed from CUDA graphs on a GPU (graphs.py). Keep one for all
    traces of a model (the engine does): its graphs are captured once."""
    if options.cuda_graphs and str(device).startswith("cuda"):
        return SliceCalls(GraphedCall(model.encode, device, "encoding"),
                          GraphedCall(model.decode, device, "decoding"))
    return SliceCalls(model.encode, model.decode)


def _shifted(part: slice, by: int) -> slice:
    return slice(part.start + by, part.stop + by)


def _nbytes(levels) -> int:
    return sum(level.numel() * level.element_size() for level in levels)


def cache_budget_mb(options: TraceOptions, shape) -> float:
    """The tile cache's budget: `options.cache_mb`, but at most CACHE_SHARE of the volume's
    own float32 size, so a small volume's click never holds more features than the volume
    (a smaller cache only costs encodes; the mask is the same)."""
    return min(options.cache_mb, CACHE_SHARE * 4 * float(np.prod(shape)) / 2**20)


class TileCache:
    """Encoder features of fixed tiles: `model.crop` pixels square, on a grid of
    `model.stride` in the slice padded by `pad` (zeros), so what is encoded never depends on
    a prompt and a tile is encoded exactly as in training (a crop on its own, normalisation
    statistics included). A tile is encoded together with the same tile on the following
    slices of its chunk (a track moves along z), in one batch, and kept (LRU) up to
    `budget_mb` of features: memory bounded whatever the backbone (a tiny model's tile-slice
    is 0.27 MB, SAM ViT-B's 4 MB). Tiles are cut from `volume` as they are asked for (an
    array, or a view that normalises what is read), so nothing of the volume is copied or
    padded whole. Which tiles are kept changes the time only: a tile encodes the same way
    whenever it is encoded."""

    def __init__(self, model, encode, volume, pad: int, chunk: int, budget_mb: float,
                 device: str = "cpu"):
        self.model, self.encode, self.chunk = model, encode, chunk
        self.budget = int(budget_mb * 2**20)
        self.volume, self.pad, self.device = volume, pad, device
        self._tiles: OrderedDict[tuple, list] = OrderedDict()
        self.bytes = 0                 # of the kept features (views into their chunk's batch)
        self.floor = 0                 # two chunks' features, known once one is encoded
        self.encoded = 0

    def __call__(self, z: int, origin) -> list[torch.Tensor]:
        key = (z, *origin)
        if key not in self._tiles:
            start = z - z % self.chunk
            stop = min(start + self.chunk, self.volume.shape[0])
            with torch.no_grad():
                features = self.encode(self.cut(start, stop, origin))
            for offset, zz in enumerate(range(start, stop)):
                self._keep((zz, *origin), [level[offset] for level in features])
            self.encoded += stop - start
            # Two chunks are always kept, whatever the budget: less would evict the chunk a
            # track is walking through and encode it again on its next slice.
            self.floor = 2 * self.chunk * _nbytes([level[0] for level in features])
            while self.bytes > max(self.budget, self.floor) and next(iter(self._tiles)) != key:
                self.bytes -= _nbytes(self._tiles.popitem(last=False)[1])
        self._tiles.move_to_end(key)
        return self._tiles[key]

    def _keep(self, key, levels) -> None:
        old = self._tiles.pop(key, None)
        if old is not None:
            self.bytes -= _nbytes(old)
        self._tiles[key] = levels
        self.bytes += _nbytes(levels)

    def cut(self, start: int, stop: int, origin) -> torch.Tensor:
        """Slices start..stop of the tile at `origin` (padded slice pixels), (N, 1, S, S);
        zeros where it reaches past the volume, as the zero padding gives."""
        size, (height, width) = self.model.crop, self.volume.shape[1:]
        top, left = origin[0] - self.pad, origin[1] - self.pad        # in slice pixels
        rows = slice(max(top, 0), min(top + size, height))
        cols = slice(max(left, 0), min(left + size, width))
        tiles = np.zeros((stop - start, 1, size, size), np.float32)
        if rows.start < rows.stop and cols.start < cols.stop:
            tiles[:, 0, rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = \
                self.volume[start:stop, rows, cols]
        return torch.from_numpy(tiles).to(self.device)


class SliceTracer:
    """Traces one vessel tree through a normalised volume (z, y, x) with a slice model."""

    def __init__(self, model, volume: np.ndarray, options: TraceOptions = TraceOptions(),
                 device: str = "cpu", calls: SliceCalls | None = None,
                 known: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0),
                 excluded: np.ndarray | None = None):
        """`known`: voxels taken as traced before the trace starts (a mask already made):
        tracks stop where they reach them. `spacing`: the voxels' size (z, y, x mm), for
        telling touching vessels apart in 3D. `excluded`: voxels of other structures (other
        segments): never traced, and another vessel's lumen where they touch the trace."""
        self.model, self.options, self.device = model, options, device
        self.volume = volume
        self.size = model.crop
        self.pad = self.size // 2 + model.stride
        self.shape = volume.shape
        # `calls`: kept across traces (the engine's), so their graphs are captured once.
        calls = calls if calls is not None else slice_calls(model, options, device)
        self.decode = calls.decode
        self.tiles = TileCache(model, calls.encode, volume, self.pad, options.chunk,
                               cache_budget_mb(options, volume.shape), device)
        # Allocated whole but touched only where the trace goes (pages stay unused); every
        # whole-trace step works in `extent`, the box of what is traced.
        self.traced = np.zeros(volume.shape, bool) if known is None else known.copy()
        self.extent: tuple[slice, slice, slice] | None = None
        self.slices_traced = 0
        self.held = HeldContacts(volume.shape, spacing)
        if excluded is not None:
            self._exclude(excluded)
        self._heartbeat = False

    def _exclude(self, excluded: np.ndarray) -> None:
        """Other structures count as a vessel already judged another's (held.rejected)."""
        for z in np.flatnonzero(excluded.any(axis=(1, 2))):
            rows, cols = (slice(int(i.min()), int(i.max()) + 1)
                          for i in np.nonzero(excluded[z]))
            self.held.rejected.paste(int(z), rows, cols, excluded[z, rows, cols], True)

    # ------------------------------------------------------------------ geometry
    def _origin(self, point) -> tuple[int, int]:
        """Origin (padded slice pixels) of the tile whose centre is nearest `point`: a
        multiple of the stride, so the point lies within half a stride of the centre."""
        stride = self.model.stride
        return tuple(int(np.floor((p + self.pad - self.size / 2) / stride + 0.5)) * stride
                     for p in point)

    def _window(self, origin) -> tuple[slice, slice, tuple[int, int]]:
        """Slice-coordinate rows/cols of a crop and the crop offset of their first pixel."""
        (oy, ox), (height, width) = origin, self.shape[1:]
        y0, x0 = max(oy - self.pad, 0), max(ox - self.pad, 0)
        y1, x1 = min(oy - self.pad + self.size, height), min(ox - self.pad + self.size, width)
        return slice(y0, y1), slice(x0, x1), (y0 - (oy - self.pad), x0 - (ox - self.pad))

    def _to_crop(self, mask, mask_origin, origin) -> torch.Tensor:
        """Re-place logits/masks of one crop (at mask_origin) in another crop (at origin)."""
        out = torch.full((1, 1, self.size, self.size), -8.0, device=self.device)
        dy, dx = mask_origin[0] - origin[0], mask_origin[1] - origin[1]
        ys, yd = max(0, -dy), max(0, dy)
        xs, xd = max(0, -dx), max(0, dx)
        h, w = self.size - abs(dy), self.size - abs(dx)
        if h > 0 and w > 0:
            out[..., yd:yd + h, xd:xd + w] = mask[..., ys:ys + h, xs:xs + w]
        return out

    # ------------------------------------------------------------------ one slice
    def _decode(self, z, origin, point, previous_logits):
        local = torch.tensor([[point[0] + self.pad - origin[0], point[1] + self.pad - origin[1]]],
                             dtype=torch.float32, device=self.device)
        with torch.no_grad():
            crops = [level[None] for level in self.tiles(z, origin)]
            logits, confidence, bottleneck = self.decode(crops, local, previous_logits)
        return logits, float(confidence[0]), bottleneck

    def _segment(self, z, point, previous_logits_fn, bottleneck, moved_from=None):
        """Offset, segment, refine, segment again. Returns the crop's probability, origin,
        logits and bottleneck."""
        point = np.asarray(point, float)
        if self.options.propagation == "affine" and moved_from is not None:
            point = self._affine_moved(moved_from, z, point)
        elif self.options.use_offset and bottleneck is not None:
            with torch.no_grad():
                point = point + self.model.offset(bottleneck)[0].cpu().numpy()
        origin = self._origin(point)
        logits, confidence, features = self._decode(z, origin, point, previous_logits_fn(origin))
        probability = None
        if self.options.use_refine:
            probability = torch.sigmoid(logits)[0, 0].cpu().numpy()
            local = np.array([point[0] + self.pad - origin[0], point[1] + self.pad - origin[1]])
            peak, where = self._local_peak(probability, local)
            lam = 0.1 + 0.4 * float(np.clip((peak - 0.5) / 0.5, 0.0, 1.0))
            refined = (1 - lam) * point + lam * (where - self.pad + np.asarray(origin))
            if np.abs(refined - point).max() > 1e-3:
                refined_origin = self._origin(refined)
                second = self._decode(z, refined_origin, refined, previous_logits_fn(refined_origin))
                # Confidence-guided: the refined prompt's mask replaces the first only when
                # the model is at least as sure of it (its predicted IoU).
                if not self.options.refine_gate or second[1] >= confidence:
                    (logits, confidence, features), origin = second, refined_origin
                    probability = None
        if probability is None:
            probability = torch.sigmoid(logits)[0, 0].cpu().numpy()
        return probability, origin, logits, features

    def _affine_moved(self, previous_z, z, point) -> np.ndarray:
        """Table 4's affine-centroid baseline: register the previous slice's window to this
        slice's (2D affine, SimpleITK) and move the point with the transform."""
        import SimpleITK as sitk

        half = self.size // 2
        y0, x0 = (int(round(p)) - half for p in point)
        fixed_np = window(self.volume[z], (y0, x0), self.size)
        moving_np = window(self.volume[previous_z], (y0, x0), self.size)
        if fixed_np.std() < 1e-6 or moving_np.std() < 1e-6:
            return point
        fixed, moving = sitk.GetImageFromArray(fixed_np), sitk.GetImageFromArray(moving_np)
        registration = sitk.ImageRegistrationMethod()
        registration.SetMetricAsMeanSquares()
        registration.SetOptimizerAsRegularStepGradientDescent(0.5, 1e-3, 40)
        registration.SetOptimizerScalesFromPhysicalShift()
        registration.SetInterpolator(sitk.sitkLinear)
        centre = fixed.TransformContinuousIndexToPhysicalPoint((half, half))
        initial = sitk.AffineTransform(2)
        initial.SetCenter(centre)
        registration.SetInitialTransform(initial, inPlace=False)
        try:
            transform = registration.Execute(fixed, moving)
        except RuntimeError:
            return point
        # The transform maps fixed -> moving points; the vessel moves by its inverse.
        moved = transform.GetInverse().TransformPoint((half, half))   # (x, y) in the window
        return np.array([y0 + moved[1], x0 + moved[0]], float)

    def _local_peak(self, probability, centre):
        """The highest probability within `refine_radius` of `centre` and where it is (the
        first in row order among equals), looked for in the disc's box only."""
        radius = self.options.refine_radius
        top = [max(int(np.floor(c - radius)), 0) for c in centre]
        box = probability[top[0]:int(np.ceil(centre[0] + radius)) + 1,
                          top[1]:int(np.ceil(centre[1] + radius)) + 1]
        ys, xs = np.ogrid[top[0]:top[0] + box.shape[0], top[1]:top[1] + box.shape[1]]
        near = (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= radius ** 2
        masked = np.where(near, box, -1.0)
        where = np.array(np.unravel_index(int(np.argmax(masked)), masked.shape), float) + top
        return float(masked.max()), where

    # ------------------------------------------------------------------ tracing
    def trace(self, seed_yx, seed_z: int, heartbeat: bool = False) -> Iterator[SliceResult]:
        """The traced slices as they come. `heartbeat`: also yield an empty, `tentative`
        result for each slice traced but held back (a contact being judged, the second look
        trying it), so a caller can show progress and cancel there (closing the generator)
        instead of waiting for it to end."""
        started = time.perf_counter()
        self._heartbeat = heartbeat
        seed = np.asarray(seed_yx, float)
        probability, origin, logits, bottleneck = self._segment(
            seed_z, seed, lambda _: None, None)
        rows, cols, (cy, cx) = self._window(origin)
        crop_prob = probability[cy:cy + rows.stop - rows.start, cx:cx + cols.stop - cols.start]
        pieces, _ = ndimage.label((crop_prob > self.options.threshold)
                                  & ~self.held.rejected.window(seed_z, rows, cols),
                                  full_structure(2))
        local_seed = (int(round(seed[0])) - rows.start, int(round(seed[1])) - cols.start)
        label = self._piece_near(pieces, local_seed)
        if label == 0 or crop_prob[pieces == label].mean() < self.options.min_confidence:
            raise PromptError("no vessel at the seed: the model finds no vessel where you "
                              "clicked")
        kept = pieces == label
        self._commit(seed_z, rows, cols, kept)
        self.slices_traced = 1
        queue = deque()
        self._spread(queue, seed_z, kept, rows, cols, logits, origin, None, forward=None)
        yield SliceResult(seed_z, rows, cols, kept, len(queue))
        yield from self._run(queue, started)
        if self.options.second_look and not self._capped(started):
            yield from self._second_look(started)

    def _second_look(self, started) -> Iterator[SliceResult]:
        """Tracks spread from each slice as it is traced, when its neighbours are not traced
        yet; so where a branch leaves at a shallow angle, its first piece (an arm of the
        parent's cross-section) is never a track of its own. Once the trace is complete,
        the arms are what reaches past the neighbouring slices: trace on from them
        tentatively and keep what `keep_branches` accepts."""
        before, kept_before = self.extent, self.traced[self.extent].copy()
        for tried in self._run(self._tracks_from_traced(), started):
            if self._heartbeat:
                yield _progress_only(tried.z, tried.tracks, second_look=True)
        # What the tentative tracks added, judged in the box of all that is traced now.
        box = self.extent
        committed = np.zeros([s.stop - s.start for s in box], bool)
        committed[tuple(slice(b.start - a.start, b.stop - a.start)
                        for a, b in zip(box, before))] = kept_before
        # The box's voxels are read piece by piece (a view, not the box normalised whole).
        volume = self.volume.window(box) if hasattr(self.volume, "window") else self.volume[box]
        found = keep_branches(committed, self.traced[box] & ~committed, volume,
                              self.options)
        self.traced[box] = committed | found
        for z, rows, cols, piece in slice_pieces(found, box):
            yield SliceResult(z, rows, cols, piece, 0, second_look=True)

    def _tracks_from_traced(self) -> deque:
        """A track onto each neighbouring slice wherever a slice's traced mask reaches past
        the neighbour's by `min_backward_pixels`, prompted with that piece of the mask."""
        queue, margin = deque(), self.options.overlap_margin
        zs, ys, xs = self.extent
        for z in range(zs.start, zs.stop):
            in_extent = self.traced[z, ys, xs]
            if not in_extent.any():
                continue
            # Only the box around slice z's traced mask matters, and the neighbour's mask
            # within reach of it (whole-slice dilations were a tenth of the trace's time).
            rows, cols = bounding_box(in_extent)
            rows, cols = _shifted(rows, ys.start), _shifted(cols, xs.start)
            for direction in (1, -1):
                neighbour = z + direction
                if not 0 <= neighbour < self.shape[0]:
                    continue
                covered = dilated_within(self.traced[neighbour], (rows, cols), margin)
                pieces, count = ndimage.label(self.traced[z, rows, cols] & ~covered,
                                              full_structure(2))
                for label, box in enumerate(ndimage.find_objects(pieces), start=1):
                    piece = pieces[box] == label
                    if piece.sum() >= self.options.min_backward_pixels:
                        corner = (rows.start + box[0].start, cols.start + box[1].start)
                        self._start_from(queue, z, direction, piece, corner,
                                         np.add(deepest_point(piece), corner))
        return queue

    def _start_from(self, queue, z, direction, piece, corner, centre):
        """Queue a track towards z + direction from `piece` (a mask whose first pixel is at
        `corner` of slice z), its crop centred on the piece and prompted with the slice's
        traced mask as logits."""
        origin = self._origin(centre)
        rows, cols, (cy, cx) = self._window(origin)
        logits = torch.full((1, 1, self.size, self.size), -8.0, device=self.device)
        window = torch.from_numpy(self.traced[z, rows, cols]).to(self.device)
        logits[0, 0, cy:cy + window.shape[0], cx:cx + window.shape[1]] = window.float() * 8 - 4
        # The piece within the window only, as the crop sees it.
        top = (max(corner[0], rows.start), max(corner[1], cols.start))
        inside = piece[top[0] - corner[0]:max(rows.stop - corner[0], 0),
                       top[1] - corner[1]:max(cols.stop - corner[1], 0)]
        self._continue(queue, z, direction, inside, top, logits, origin, None)

    def _commit(self, z, rows, cols, kept) -> None:
        """Mark `kept` (slice z's window) traced and grow the extent to hold it."""
        self.traced[z, rows, cols] |= kept
        if not kept.any():
            return
        ys, xs = bounding_box(kept)
        box = (slice(z, z + 1), slice(rows.start + ys.start, rows.start + ys.stop),
               slice(cols.start + xs.start, cols.start + xs.stop))
        self.extent = box if self.extent is None else tuple(
            slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(self.extent, box))

    def _capped(self, started) -> bool:
        return (self.slices_traced >= self.options.max_slices
                or time.perf_counter() - started > self.options.max_seconds)

    def _run(self, queue, started) -> Iterator[SliceResult]:
        while queue:
            if self._capped(started):
                break
            track = queue.popleft()
            result = self._step(track, queue)
            if result is not None:
                yield result
            group = self.held.root(track.group)
            if group and (self.held.held_slices(group) >= self.options.judge_after
                          or not any(self.held.root(t.group) == group for t in queue)):
                yield from self._judge(group, queue)
        for group in self.held.groups():       # stopped by a limit: judged as they stand
            yield from self._judge(group, queue)

    def _judge(self, group: int, queue) -> Iterator[SliceResult]:
        """A contact traced far enough (held.py): its tracks go on as the trace's where they
        continue what is kept, and stop where they continue a vessel that was dropped."""
        kept = self.held.judge(group, self.traced, self.volume)
        going_on = []
        for track in queue:
            if self.held.root(track.group) == group:
                track.group = 0
                if not self._clear_of_rejected(track):
                    continue                      # it followed the vessel that was dropped
            going_on.append(track)
        queue.clear()
        queue.extend(going_on)
        for z, rows, cols, mask in kept:
            yield SliceResult(z, rows, cols, mask, len(queue))

    def _clear_of_rejected(self, track) -> bool:
        """Take what was dropped out of a track's previous mask and its mask prompt (a
        piece where the two vessels touched covers both); False when nothing is left."""
        z = track.z - track.direction
        py, px = track.previous_origin
        height, width = track.previous.shape
        rejected = self.held.rejected.window(z, slice(py, py + height), slice(px, px + width))
        if not (rejected & track.previous).any():
            return True
        track.previous = track.previous & ~rejected
        if not track.previous.any():
            return False
        track.point = np.asarray(deepest_point(track.previous), float) + (py, px)
        logits, origin = track.previous_logits
        # The rejected pixels where the prompt's crop holds them.
        top, left = py + self.pad - origin[0], px + self.pad - origin[1]
        crop = np.zeros(logits.shape[-2:], bool)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + height, self.size), min(left + width, self.size)
        if y1 > y0 and x1 > x0:
            crop[y0:y1, x0:x1] = rejected[y0 - top:y1 - top, x0 - left:x1 - left]
        track.previous_logits = (torch.where(torch.from_numpy(crop).to(logits.device), -8.0,
                                             logits), origin)
        return True

    def _piece_near(self, pieces, local, reach: int = 3) -> int:
        y, x = local
        window = pieces[max(y - reach, 0):y + reach + 1, max(x - reach, 0):x + reach + 1]
        if pieces.size and 0 <= y < pieces.shape[0] and 0 <= x < pieces.shape[1] and pieces[y, x]:
            return int(pieces[y, x])
        found = window[window > 0]
        return int(np.bincount(found).argmax()) if found.size else 0

    def _continue(self, queue, z, direction, mask, mask_corner, logits, origin, bottleneck,
                  group: int = 0):
        """Queue tracks from slice z's traced window `mask` towards z + direction: one per
        piece (a bifurcation gives two)."""
        target = z + direction
        if not 0 <= target < self.shape[0]:
            return
        # A track's previous mask is the pieces' box with only its own piece in it.
        pieces, count, box = pieces_in_box(mask)
        corner = (mask_corner[0] + box[0].start, mask_corner[1] + box[1].start)
        for label in range(1, count + 1):
            piece = pieces == label
            centre = np.asarray(deepest_point(piece), float) + corner
            # Each piece's track sees only its own piece as the previous mask (a `where`,
            # not a boolean-mask write: that waits for the GPU).
            piece_crop = np.zeros(logits.shape[-2:], bool)
            oy, ox = corner[0] + self.pad - origin[0], corner[1] + self.pad - origin[1]
            piece_crop[oy:oy + piece.shape[0], ox:ox + piece.shape[1]] = piece
            region = torch.from_numpy(piece_crop).to(logits.device)
            own = torch.where(region, logits.clamp(min=0.5), -8.0)
            queue.append(_Track(target, direction, centre, piece, corner, (own, origin),
                                bottleneck if count == 1 else None, group))

    def _spread(self, queue, z, kept, rows, cols, logits, origin, bottleneck, forward,
                group: int = 0):
        """Queue what this slice's traced window leads to.

        Towards each neighbouring slice, the part of `kept` not yet traced there continues:
        any piece in the track's own direction (both directions from the click), pieces of
        at least `min_backward_pixels` the other way (a vessel turning back, a branch leaving
        backwards). Where `kept` runs into the window's edge, the vessel lies in the slice's
        plane beyond the window: a track on the same slice re-centres the window there."""
        corner = (rows.start, cols.start)
        for direction in (1, -1):
            neighbour = z + direction
            if not 0 <= neighbour < self.shape[0]:
                continue
            ahead = forward is None or direction == forward
            # Only where `kept` is matters: the neighbour's traced mask dilated there.
            near = bounding_box(kept)
            uncovered = np.zeros_like(kept)
            uncovered[near] = kept[near] & ~dilated_within(
                self.traced[neighbour, rows, cols], near, self.options.overlap_margin)
            if uncovered.sum() >= (1 if ahead else self.options.min_backward_pixels):
                self._continue(queue, z, direction, uncovered, corner, logits, origin,
                               bottleneck if direction == forward else None, group)
        self._continue_in_plane(queue, z, kept, rows, cols, logits, origin, group)

    def _continue_in_plane(self, queue, z, kept, rows, cols, logits, origin, group: int = 0):
        edge = np.zeros_like(kept)
        height, width = self.shape[1:]
        if rows.start > 0:
            edge[0] = True
        if rows.stop < height:
            edge[-1] = True
        if cols.start > 0:
            edge[:, 0] = True
        if cols.stop < width:
            edge[:, -1] = True
        pieces, count, box = pieces_in_box(kept & edge)
        corner = (rows.start + box[0].start, cols.start + box[1].start)
        for label in range(1, count + 1):
            centre = (np.argwhere(pieces == label) + corner).mean(axis=0)
            queue.append(_Track(z, 0, centre, kept, (rows.start, cols.start), (logits, origin),
                                None, group))

    def _step(self, track: _Track, queue) -> SliceResult | None:
        z, options = track.z, self.options
        logits_in, logits_origin = track.previous_logits
        carried = ((lambda o: self._to_crop(logits_in, logits_origin, o))
                   if options.carry_mask else (lambda _: None))
        probability, origin, logits, bottleneck = self._segment(
            z, track.point, carried,
            track.bottleneck, moved_from=z - track.direction if track.direction else None)
        rows, cols, (cy, cx) = self._window(origin)
        crop_prob = probability[cy:cy + rows.stop - rows.start, cx:cx + cols.stop - cols.start]
        # Another vessel, once judged (held.py), is never traced again.
        candidate = (crop_prob > options.threshold) & ~self.held.rejected.window(z, rows, cols)
        # Keep the pieces that continue the previous slice's mask (3D connectivity with a
        # margin for oblique vessels); anything else is another vessel.
        previous = np.zeros_like(candidate)
        py, px = track.previous_origin
        r0, c0 = py - rows.start, px - cols.start
        ph, pw = track.previous.shape
        ys0, xs0 = max(r0, 0), max(c0, 0)
        ys1, xs1 = min(r0 + ph, previous.shape[0]), min(c0 + pw, previous.shape[1])
        if ys1 > ys0 and xs1 > xs0:
            previous[ys0:ys1, xs0:xs1] = track.previous[ys0 - r0:ys1 - r0, xs0 - c0:xs1 - c0]
        near = bounding_box(previous, options.overlap_margin)
        reach = dilated_within(previous, near, options.overlap_margin)
        found, _, box = pieces_in_box(candidate)
        pieces = np.zeros(candidate.shape, found.dtype)
        pieces[box] = found
        touching = np.unique(pieces[near][reach & (pieces[near] > 0)])
        kept = np.isin(pieces, touching[touching > 0])
        if not kept.any() or crop_prob[kept].mean() < options.min_confidence:
            return None                                   # the vessel ends or fades out
        group, pending = self.held.root(track.group), self.held.pending.window(z, rows, cols)
        if group:
            for other in np.unique(pending[kept]):        # met another contact's tracks
                self.held.merge(int(other), group)
        else:
            kept &= pending == 0                          # held back by a contact
        new = kept & ~self.traced[z, rows, cols]
        if new.sum() < options.min_new_pixels:
            return None                                   # joined what is already traced
        self.slices_traced += 1
        foreign = self._foreign(z, track.direction, kept, pieces, previous, near, reach, rows,
                                cols)
        if foreign is not None and not group:
            group = track.group = self.held.open()        # another vessel comes in here
        self._commit(z, rows, cols, new if group else kept)
        self._spread(queue, z, kept, rows, cols, logits, origin, bottleneck, track.direction,
                     group)
        if group:
            self.held.hold(group, z, rows, cols, new, foreign)
            return _progress_only(z, len(queue)) if self._heartbeat else None
        return SliceResult(z, rows, cols, kept, len(queue))

    def _foreign(self, z, direction, kept, pieces, previous, near, reach, rows, cols):
        """The parts of `kept` (`pieces`: its pieces labelled) that continue a vessel running
        outside the trace on the slice the track came from (contacts.py), or None."""
        if not (direction and self.options.contacts):
            return None
        whole_reach = np.zeros_like(kept)
        whole_reach[near] = reach
        beyond = (kept & ~whole_reach).sum() >= self.options.min_backward_pixels
        apart = pieces_apart(kept, previous, pieces)
        if not (beyond or apart.any()):
            return None
        before = z - direction
        other = (outside_lumen(self.volume[before, rows, cols], self.traced[before, rows, cols])
                 | self.held.rejected.window(before, rows, cols))
        foreign = foreign_parts(kept, whole_reach, other) if beyond else np.zeros_like(kept)
        foreign |= foreign_parts(apart, np.zeros_like(kept), other)
        return foreign if foreign.any() else None
