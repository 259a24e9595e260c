"""multimodal's engine: its 3D mapping of commands (along_vessel.py) on scenes whose answer
is known, and the engine's handling of steps, bad input, undo and replay. The engine tests
run a randomly initialised tiny model from a checkpoint file: what is asserted holds for any
weights (where a step may act, what is refused, what undo restores)."""
import numpy as np
import pytest
import torch

from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
from PromptEngines.errors import PromptError
from PromptEngines.multimodal import along_vessel
from PromptEngines.multimodal.engine import MultimodalEngine
from PromptEngines.multimodal.tiny_model import TinyMultimodal
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS as DEFAULT_TRACER
from PromptEngines.prompts import MaskPrompt, Point, Text, Undo


def tube(shape, axis_points, radius):
    """Voxels within `radius` of a polyline (voxel coordinates)."""
    grid = np.stack(np.indices(shape), -1).astype(float)
    inside = np.zeros(shape, bool)
    for a, b in zip(axis_points, axis_points[1:]):
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip(((grid - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        inside |= np.linalg.norm(grid - (a + t[..., None] * (b - a)), axis=-1) <= radius
    return inside


def test_remove_takes_a_leaked_vein_back_to_its_thin_bridge():
    shape = (30, 40, 40)
    artery = tube(shape, [(0, 12, 12), (29, 12, 12)], 3.5)
    vein = tube(shape, [(0, 26, 26), (29, 26, 26)], 3.5)
    bridge = tube(shape, [(15, 14, 14), (15, 24, 24)], 0.8)
    mask = artery | vein | bridge
    seeds = np.zeros(shape, bool)
    seeds[20] = vein[20]                       # the model removed the vein on slice 20
    removed = along_vessel.removed_piece(mask, seeds, (1.0, 1.0, 1.0))
    assert removed[vein].all() and not removed[artery].any()
    assert removed[bridge & ~artery].mean() > 0.8


def test_remove_takes_a_thin_false_branch_back_to_its_parent():
    shape = (30, 40, 40)
    parent = tube(shape, [(0, 20, 10), (29, 20, 10)], 4.0)
    branch = tube(shape, [(15, 20, 13), (15, 20, 38)], 1.0) & ~parent
    seeds = np.zeros(shape, bool)
    seeds[15, 18:23, 30:34] = branch[15, 18:23, 30:34]
    removed = along_vessel.removed_piece(parent | branch, seeds, (1.0, 1.0, 1.0))
    assert not removed[parent].any() and removed[branch].mean() > 0.9   # the join stays


def test_remove_on_a_trunk_without_a_narrow_join_stays_on_the_clicked_slice():
    shape = (20, 30, 30)
    trunk = tube(shape, [(0, 15, 15), (19, 15, 15)], 5.0)
    seeds = np.zeros(shape, bool)
    seeds[10] = trunk[10]
    removed = along_vessel.removed_piece(trunk, seeds, (1.0, 1.0, 1.0))
    assert np.array_equal(removed, seeds)


def test_a_connection_joins_the_two_pieces_nearest_the_click_with_their_width():
    from scipy import ndimage
    shape = (40, 30, 30)
    whole = tube(shape, [(0, 15, 15), (39, 15, 15)], 3.0)
    mask = whole.copy()
    mask[17:24] = False                         # a 7-slice gap, across several slices
    far = tube(shape, [(5, 3, 3), (10, 3, 3)], 1.0)   # another piece, away from the click
    joined = mask | far | along_vessel.bridge(mask | far, (20, 15, 15), (1.0, 1.0, 1.0))
    assert ndimage.label(joined & ~far)[1] == 1
    filled = joined[17:24] & whole[17:24]
    assert filled.sum() / whole[17:24].sum() > 0.8
    assert (joined[17:24] & ~whole[17:24]).sum() < 0.2 * whole[17:24].sum()


def test_a_connection_adds_only_across_the_gap_not_a_coat_on_the_pieces():
    """The tube runs from the middle of each piece's end (here 5 slices into the upper piece,
    where it widens) as wide as the two there: only its stretch across the gap, and a radius
    beyond, is added, not a coat on the upper piece's narrow end."""
    shape = (40, 30, 30)
    upper = tube(shape, [(0, 15, 15), (12, 15, 15)], 4.0) | tube(shape, [(12, 15, 15),
                                                                           (16, 15, 15)], 1.5)
    lower = tube(shape, [(24, 15, 15), (39, 15, 15)], 2.0)
    added = along_vessel.bridge(upper | lower, (20, 15, 15), (1.0, 1.0, 1.0)) & ~(upper | lower)
    assert added[18:23].any()
    assert not added[:15].any() and not added[26:].any()


def test_nearby_slices_go_outwards_within_reach():
    assert along_vessel.nearby_slices(5, 20, 2.0, 5.0) == [5, 4, 6, 3, 7]
    assert along_vessel.nearby_slices(0, 3, 0.5, 5.0) == [0, 1, 2]


def test_thinner_thicker_reach_along_the_vessel_and_across_its_whole_width():
    """A wide vessel running in the slices' plane (anisotropic voxels): what thinner /
    thicker may change is its whole cross-section, far wall included, where its centreline
    is within ALONG_MM of the click's place on it, and nothing farther along it, off it, or
    on another vessel, though the far wall is farther than ALONG_MM from the click."""
    shape, spacing = (12, 40, 80), (1.5, 0.5, 0.5)
    zz, yy, xx = np.indices(shape)
    vessel = np.hypot((zz - 6) * 1.5, (yy - 20) * 0.5) <= 3.5     # 3.5 mm round, along x
    other = tube(shape, [(0, 2, 40), (11, 2, 40)], 1.0)
    click = (6.0, 13.5, 40.0)                                   # its near wall, mid-way
    kept = along_vessel.along_the_axis(vessel, click, spacing, radius_mm=4.0)
    assert kept[vessel & (np.abs(xx - 40) <= 8)].all()           # 4 mm either way, all of it
    assert not kept[vessel & (np.abs(xx - 40) > 11)].any()        # 5.5 mm on: nothing
    far_wall = (6, 27, 40)
    assert kept[far_wall] and np.linalg.norm(np.subtract(far_wall, click) * spacing) > 5.0
    assert not kept[other].any() and not kept[:, 36:].any()
    # No centreline near the click: a ball of ALONG_MM around it.
    ball = along_vessel.along_the_axis(np.zeros(shape, bool), click, spacing, radius_mm=4.0)
    distance = np.sqrt(((zz - 6) * 1.5) ** 2 + ((yy - 13.5) * 0.5) ** 2 + ((xx - 40) * 0.5) ** 2)
    assert np.array_equal(ball, distance <= along_vessel.ALONG_MM)


# ---------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyMultimodal()
    path = tmp_path_factory.mktemp("multimodal") / "random.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "multimodal", "config": model.config,
                "model": model.state_dict()}, path)
    return path


def picture(size=(1, 200, 300), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=size).astype(np.float32)
    mask = np.zeros(size, np.uint8)
    mask[:, 90:110, 20:280] = 1
    return image, mask


def engine_with(weights, image, mask):
    engine = MultimodalEngine(weights=weights, device="cpu")
    engine.set_image(image, (1.0, 0.5, 0.5))
    engine.run(MaskPrompt(mask))
    return engine


def test_bad_steps_are_refused_and_the_mask_stays(weights):
    image, mask = picture()
    engine = engine_with(weights, image, mask)
    with pytest.raises(PromptError, match="needs a point"):
        engine.run(Text("extend"))
    with pytest.raises(PromptError, match="outside"):
        engine.run(Text("remove", (0, 500, 10)))
    with pytest.raises(PromptError, match="known: make thinner, make thicker, make a "
                                          "connection, extend, remove"):
        Text("shrink", (0, 10, 10))
    assert np.array_equal(engine.mask, mask)
    empty = MultimodalEngine(weights=weights, device="cpu")
    empty.set_image(image)
    with pytest.raises(PromptError, match="nothing to remove: the mask is empty"):
        empty.run(Text("remove", (0, 100, 100)))
    assert not empty.mask.any()


def test_a_2d_step_acts_in_its_crop_undo_restores_and_replay_is_bit_for_bit(weights):
    image, mask = picture()
    engine = engine_with(weights, image, mask)
    after = engine.run(Text("make thicker", (0, 100, 40))).copy()
    assert after.shape == mask.shape and after.dtype == np.uint8
    assert np.array_equal(after[0, :, 256:], mask[0, :, 256:])    # crop: columns 0-255
    second = engine.run(Point((0, 100, 150), 0)).copy()
    again = engine_with(weights, image, mask)
    again.run(Text("make thicker", (0, 100, 40)))
    assert np.array_equal(again.run(Point((0, 100, 150), 0)), second)
    engine.run(Undo())
    assert np.array_equal(engine.mask, after)
    engine.run(Undo())
    assert np.array_equal(engine.mask, mask)


def test_on_a_2d_image_remove_takes_the_clicked_false_piece_whole_and_undo_restores(weights):
    """A single 2D image: "remove" on a false blob beside the vessel deletes the blob whole
    (the 3D piece logic on one slice), whatever the (random) model draws; the vessel stays."""
    image, mask = picture()
    mask[0, 130:150, 60:75] = 1                 # a false piece, apart from the vessel
    engine = engine_with(weights, image, mask)
    after = engine.run(Text("remove", (0, 140, 67))).copy()
    assert not after[0, 130:150, 60:75].any()
    assert np.array_equal(after[0, :125], mask[0, :125])          # the vessel as it was
    engine.run(Undo())
    assert np.array_equal(engine.mask, mask)


def test_the_sequence_of_a_slice_is_undone_with_its_step(weights):
    image, mask = picture()
    engine = engine_with(weights, image, mask)
    engine.run(Text("make thicker", (0, 100, 40)))
    engine.run(Point((0, 100, 60)))
    assert len(engine._sequences[0]) == 2
    engine.run(Undo())
    assert len(engine._sequences[0]) == 1


def test_in_3d_a_connection_joins_the_pieces_across_slices(weights):
    from scipy import ndimage
    shape = (30, 40, 40)
    whole = tube(shape, [(0, 20, 20), (29, 20, 20)], 3.0)
    mask = whole.copy()
    mask[12:18] = False
    image = np.where(whole, 300.0, 0.0).astype(np.float32)
    engine = MultimodalEngine(weights=weights, device="cpu")
    engine.set_image(image, (1.0, 1.0, 1.0))
    engine.run(MaskPrompt(mask.astype(np.uint8)))
    joined = engine.run(Text("make a connection", (15, 20, 20))) > 0
    # Slice 15 is also the model's (random weights here); the other gap slices the tube's.
    joined[15] = whole[15]
    assert ndimage.label(joined)[1] == 1 and joined[12:18].sum() > 0.8 * whole[12:18].sum()
    assert np.array_equal(joined[:12], whole[:12]) and np.array_equal(joined[18:], whole[18:])
    one = MultimodalEngine(weights=weights, device="cpu")
    one.set_image(image, (1.0, 1.0, 1.0))
    one.run(MaskPrompt(whole.astype(np.uint8)))
    with pytest.raises(PromptError, match="nothing to connect"):
        one.run(Text("make a connection", (15, 20, 20)))
    assert np.array_equal(one.mask, whole)


@pytest.mark.skipif(not DEFAULT_TRACER.is_file(), reason="no embedded tracer3d weights")
def test_in_3d_extend_adds_the_missing_branch_from_the_point(weights):
    """tracer3d from the point; only the piece continuing from it is added, the rest of the
    mask is kept as it was (held-out synthetic CTA, a branch taken away from the truth)."""
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.multimodal.defects import make_defect

    case = vessel_volume(1003)
    truth = case.label > 0
    defect = make_defect("missing_branch", truth, np.random.default_rng(0))
    engine = MultimodalEngine(weights=weights, device="cpu")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    engine.run(MaskPrompt(defect.mask.astype(np.uint8)))
    after = engine.run(Text("extend", defect.point)) > 0
    added = after & ~defect.mask
    assert (after >= defect.mask).all()                       # nothing taken away
    assert (added & defect.region).sum() >= 0.8 * defect.region.sum()
    assert (added & truth).sum() >= 0.8 * added.sum()
    with pytest.raises(PromptError, match="nothing to extend from here"):
        engine.run(Text("extend", (2, 3, 3)))                  # a corner of plain tissue


def test_remove_takes_a_separate_false_piece_whole_and_works_in_millimetres():
    shape = (20, 40, 40)
    trunk = tube(shape, [(0, 10, 10), (19, 10, 10)], 4.0)
    blob = tube(shape, [(6, 30, 30), (14, 30, 30)], 3.0)
    seeds = np.zeros(shape, bool)
    seeds[10] = blob[10]
    removed = along_vessel.removed_piece(trunk | blob, seeds, (1.0, 1.0, 1.0))
    assert np.array_equal(removed, blob)
    # Thick slices (2.5 mm) and a vein running in-plane, joined to the artery by a bridge.
    shape = (12, 60, 60)
    spacing = (2.5, 0.7, 0.7)
    artery = (tube(shape, [(6, 5, 15), (6, 55, 15)], 3.2)
              | tube(shape, [(0, 30, 15), (11, 30, 15)], 2.2))
    vein = tube(shape, [(6, 5, 42), (6, 55, 42)], 3.2)
    bridge = tube(shape, [(6, 30, 19), (6, 30, 38)], 0.7)
    seeds = np.zeros(shape, bool)
    seeds[6] = vein[6] & (np.arange(60)[:, None] > 40)
    removed = along_vessel.removed_piece(artery | vein | bridge, seeds, spacing)
    assert removed[vein].mean() > 0.95 and not removed[artery].any()


def test_in_3d_thicker_and_remove_act_near_the_click_and_an_edge_click_works(weights):
    """Any weights: "make thicker" changes nothing farther than ALONG_MM along the vessel
    from the click, nor off it by more than its width, nor the other vessel; "remove"
    changes only the clicked vessel; a click on the far edge is in the last voxel. Thick
    slices (2.5 mm) and two vessels."""
    shape, spacing = (16, 48, 48), (2.5, 0.7, 0.7)
    first = tube(shape, [(0, 14, 14), (15, 14, 14)], 4.0)
    second = tube(shape, [(0, 34, 34), (15, 34, 34)], 4.0)
    image = np.where(first | second, 300.0, 20.0).astype(np.float32)
    engine = MultimodalEngine(weights=weights, device="cpu")
    engine.set_image(image, spacing)
    engine.run(MaskPrompt((first | second).astype(np.uint8)))
    start = engine.mask.copy()
    after = engine.run(Text("make thicker", (8, 14, 14))).copy()
    zz, yy, xx = np.indices(shape)
    # Along the vessel (z): 5 mm = 2 slices. Across: its half-width 2.8 mm, before or after
    # the step, two pixels more; the step's own window stays in the crop.
    off_axis = np.hypot((yy - 14) * 0.7, (xx - 14) * 0.7)
    far = (np.abs(zz - 8) > 2) | (off_axis > 2.8 + 1.4 + 0.7 * 16)
    assert np.array_equal(after[far], start[far]) and np.array_equal(after[second],
                                                                      start[second])
    engine.run(Undo())
    removed = engine.run(Text("remove", (8, 34, 34)))
    assert np.array_equal(removed[first], start[first])      # the other vessel untouched
    engine.run(Undo())
    engine.run(Point((15.5, 47.5, 47.5)))                     # the far corner: no IndexError
