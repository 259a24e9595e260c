"""Work only where the trace goes: the click's levels from its neighbourhood, the volume
normalised where it is read, tiles cut as they are asked for, the second look in the box of
the trace, the mask saved slice by slice. Each gives exactly what the whole-volume way gave."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from PromptEngines.data import intensity
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.engine import Engine, Update
from PromptEngines.prompts import Point
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS, load_model
from PromptEngines.tracer3d.normalise import NORMALISED_RANGE, click_normalised
from PromptEngines.tracer3d.tracking import (CACHE_SHARE, SliceTracer, TileCache, TraceOptions,
                                             cache_budget_mb)
from registered_engine import registered


@pytest.fixture(scope="module")
def case():
    return vessel_volume(1004, shape=(40, 72, 64), spacing_zyx=(1.4, 0.6, 0.8))


@pytest.mark.parametrize("region", [(slice(0, 9), slice(0, 20), slice(50, 64)),        # corner
                                    (slice(12, 30), slice(20, 41), slice(7, 33)),      # inside
                                    (slice(39, 40), slice(71, 72), slice(0, 64))])     # a line
def test_a_region_is_smoothed_as_the_whole_volume_is_there(case, region):
    image, spacing = case.volume.array, case.volume.spacing_zyx
    whole = intensity.smoothed(image, spacing)
    assert np.array_equal(intensity.smoothed(image, spacing, region), whole[region])


def test_the_normalised_view_equals_the_whole_normalised_volume(case):
    image, spacing = case.volume.array, case.volume.spacing_zyx
    view = click_normalised(image, spacing, case.seed_index)
    levels = view.levels
    whole = np.clip(((image.astype(np.float32) - levels.surroundings)
                     / (levels.structure - levels.surroundings)).astype(np.float32),
                    *NORMALISED_RANGE)
    assert view.shape == image.shape and view[...].dtype == np.float32
    assert np.array_equal(view[...], whole)
    assert np.array_equal(view[3:9, 10:30, 5:6], whole[3:9, 10:30, 5:6])
    assert np.array_equal(view[7], whole[7])
    # The click's levels: structure bright, surroundings near tissue, noise positive.
    assert levels.structure > levels.surroundings + 5 * levels.noise > levels.surroundings


def test_tiles_are_cut_as_the_padded_volume_gave_them(case):
    volume = click_normalised(case.volume.array, case.volume.spacing_zyx, case.seed_index)[...]
    padded = F.pad(torch.from_numpy(volume)[:, None], (40, 40, 40, 40))
    cache = TileCache(None, None, volume, pad=40, chunk=8, budget_mb=1)
    cache.model = type("Model", (), {"crop": 64})()
    for start, stop, origin in [(0, 8, (0, 0)), (32, 40, (48, 80)), (8, 16, (88, 16)),
                                (16, 24, (80, 80))]:          # corners, inside, past the edge
        y, x = origin
        expected = padded[start:stop, :, y:y + 64, x:x + 64]
        assert torch.equal(cache.cut(start, stop, origin), expected)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
@pytest.mark.parametrize("seed", [1000, 2008])          # 2008: the second look keeps a branch
def test_tracing_the_view_equals_tracing_the_whole_normalised_volume(seed):
    case = vessel_volume(seed)
    model = load_model(DEFAULT_WEIGHTS)[0]
    view = click_normalised(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    masks = []
    for volume in (view, view[...]):
        mask = np.zeros(case.volume.shape, bool)
        for result in SliceTracer(model, volume, TraceOptions()).trace(case.seed_index[1:],
                                                                       case.seed_index[0]):
            mask[result.z, result.rows, result.cols] |= result.mask
        masks.append(mask)
    assert masks[0].sum() > 500 and np.array_equal(masks[0], masks[1])


@registered("scatter-painter", {"point"})
class ScatterPainter(Engine):
    """Paints a voxel on every other slice, one update each; `fail_at` raises there."""
    fail_at = None

    def _interact(self, prompt):
        for count, z in enumerate(range(0, self.image.shape[0], 2)):
            if count == self.fail_at:
                raise RuntimeError("failed half way")
            yield Update((slice(z, z + 1), slice(1, 3), slice(2, 4)),
                         np.full((1, 2, 2), 1 + count % 2, np.uint8))


def test_the_mask_before_a_prompt_is_kept_slice_by_slice_and_restored_exactly():
    engine = ScatterPainter()
    engine.set_image(np.zeros((9, 5, 6), np.int16))
    engine._mask[4, 0, 0] = engine._mask[1, 4, 5] = 7        # the user's earlier work
    start = engine.mask.copy()
    engine.fail_at = 3
    with pytest.raises(RuntimeError):
        engine.run(Point((0, 0, 0)))
    assert np.array_equal(engine.mask, start)
    engine.fail_at = None
    engine.run(Point((0, 0, 0)))
    assert engine.mask[8, 1, 2] == 1 and engine.mask[4, 0, 0] == 7
    engine.undo()
    assert np.array_equal(engine.mask, start)


@registered("box-painter", {"point"})
class RandomBoxPainter(Engine):
    """Writes random patches in random boxes of a few slices, often the same slice again,
    overlapping or beside what it wrote before; `fail_at` raises there."""
    fail_at = None

    def _interact(self, prompt):
        rng = np.random.default_rng(int(prompt.position[0]))
        for count in range(30):
            if count == self.fail_at:
                raise RuntimeError("failed half way")
            z0, y0, x0 = rng.integers(0, 3), rng.integers(0, 12), rng.integers(0, 14)
            region = (slice(z0, z0 + rng.integers(1, 3)), slice(y0, y0 + rng.integers(1, 6)),
                      slice(x0, x0 + rng.integers(1, 6)))
            shape = self._mask[region].shape
            yield Update(region, rng.integers(0, 3, shape).astype(np.uint8))


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_boxes_grow_as_updates_touch_more_of_a_slice(seed):
    engine = RandomBoxPainter()
    engine.set_image(np.zeros((4, 16, 18), np.int16))
    engine._mask[...] = np.random.default_rng(100 + seed).integers(0, 2, engine.mask.shape)
    start = engine.mask.copy()
    engine.fail_at = 25
    with pytest.raises(RuntimeError):
        engine.run(Point((seed, 0, 0)))
    assert np.array_equal(engine.mask, start)
    engine.fail_at = None
    engine.run(Point((seed, 0, 0)))
    assert not np.array_equal(engine.mask, start)
    engine.undo()
    assert np.array_equal(engine.mask, start)


def test_integer_volumes_are_not_scanned_for_nan_and_float_ones_are_slab_by_slab():
    engine = ScatterPainter()
    engine.set_image(np.zeros((40, 3, 3), np.int16))
    image = np.zeros((40, 3, 3), np.float32)
    image[37, 1, 1] = np.inf                               # in the last slab only
    with pytest.raises(Exception, match="NaN/infinite"):
        engine.set_image(image)


def whole_volume_region_growing(engine, state) -> np.ndarray:
    """regiongrow's algorithm as it was before it worked in a box: the whole volume smoothed,
    banded and labelled (the reference the boxed growth must equal)."""
    from scipy import ndimage

    from PromptEngines.regiongrow.engine import BARRIER_RADIUS_MM

    image, spacing = intensity.smoothed(engine.image, engine.spacing_zyx), engine.spacing_zyx
    seeds = list(state.positive) or [tuple((lo + hi) // 2 for lo, hi in zip(*state.box))]
    region = intensity.window(seeds, image.shape, spacing)
    background = float(np.median(image[region]))
    level = lambda v: float(np.median(intensity.sample_balls(image, [v], 1.0, spacing)))  # noqa: E731
    foreground = float(np.median([level(s) for s in seeds]))
    noise = intensity.noise_level(engine.image[region], image[region])
    barrier = np.zeros(image.shape, bool)
    for voxel in state.negative:
        where, ball = intensity.ball(voxel, BARRIER_RADIUS_MM, image.shape, spacing)
        barrier[where] |= ball
    accept = np.abs(image - foreground) < abs(foreground - background) / 2
    for voxel in state.negative:
        if abs(level(voxel) - foreground) >= intensity.MIN_CONTRAST * noise:
            accept &= np.abs(image - foreground) < np.abs(image - level(voxel))
    accept &= ~barrier
    if state.box is not None:
        inside = np.zeros_like(accept)
        inside[tuple(slice(lo, hi + 1) for lo, hi in zip(*state.box))] = True
        accept &= inside
    pieces, _ = ndimage.label(accept)
    keep = {pieces[s] for s in seeds} - {0}
    if not keep and state.box is not None:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        keep = {int(np.argmax(sizes))}
    grown = np.isin(pieces, list(keep))
    return ((grown | (state.base > 0 if state.base is not None else False)) & ~barrier)


@pytest.mark.parametrize("seed", [1000, 1003, 1007])
def test_region_growing_in_a_box_equals_growing_in_the_whole_volume(seed):
    from PromptEngines.prompts import Box
    from PromptEngines.registry import get_engine

    case = vessel_volume(seed, shape=(48, 72, 72))
    s = case.seed_index
    engine = get_engine("regiongrow")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    for prompt in (Point(s), Point((s[0] + 6, s[1], s[2]), 0), Box((2, 5, 5), (40, 60, 60))):
        engine.run(prompt)
        expected = whole_volume_region_growing(engine, engine._state)
        assert np.array_equal(engine.mask > 0, expected)
    assert engine.mask.sum() > 1000        # the tree reaches far past the first 20 mm box


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
@pytest.mark.parametrize("seed, voxels, digest", [(1000, 4151, "5cd1621afedc1d7f"),
                                                  (2008, 2266, "e918f071d09017fb")])
def test_traces_are_those_the_whole_volume_version_gave(seed, voxels, digest):
    """Hashes recorded with the version that smoothed, normalised and padded the whole volume
    (commit 204c874; 2008: the second look keeps a branch there)."""
    import hashlib

    from PromptEngines.tracer3d.evaluate import trace_case

    mask, _ = trace_case(load_model(DEFAULT_WEIGHTS)[0], vessel_volume(seed), TraceOptions())
    assert int(mask.sum()) == voxels
    assert hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16] == digest


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
def test_a_small_feature_budget_costs_time_only(monkeypatch):
    """The cache's budget bounds the features kept; the trace is the same bit for bit."""
    import PromptEngines.tracer3d.tracking as tracking
    monkeypatch.setattr(tracking, "CACHE_SHARE", 1e6)      # the options' budget, uncapped
    case = vessel_volume(1000)
    model = load_model(DEFAULT_WEIGHTS)[0]
    view = click_normalised(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    masks, caches = [], []
    for budget in (256.0, 0.5):          # 0.5 MB: below the two-chunk floor
        tracer = SliceTracer(model, view, TraceOptions(cache_mb=budget))
        mask = np.zeros(case.volume.shape, bool)
        for result in tracer.trace(case.seed_index[1:], case.seed_index[0]):
            mask[result.z, result.rows, result.cols] |= result.mask
            assert tracer.tiles.bytes <= max(tracer.tiles.budget, tracer.tiles.floor)
        assert tracer.tiles.budget <= budget * 2**20
        assert 0 < tracer.tiles.floor < 2**23                  # two chunks of tiny features
        masks.append(mask)
        caches.append(tracer.tiles)
    assert masks[0].sum() > 500 and np.array_equal(masks[0], masks[1])
    assert caches[1].encoded > caches[0].encoded          # evicted tiles were encoded again


def test_the_feature_budget_follows_the_volume():
    """A small volume's click holds no more features than an eighth of the volume (float32);
    a clinical one up to the options' budget."""
    options = TraceOptions(cache_mb=256.0)
    assert cache_budget_mb(options, (200, 256, 256)) == pytest.approx(50 * CACHE_SHARE)
    assert cache_budget_mb(options, (3000, 512, 512)) == 256.0
    assert cache_budget_mb(TraceOptions(cache_mb=4.0), (200, 256, 256)) == 4.0
