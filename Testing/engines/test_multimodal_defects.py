"""Imperfect vessel masks built from ground-truth masks (multimodal engine's training and
benchmark data): radii, each defect kind's place, sign and size, several defects together,
determinism, bad input, the paper's next-step click."""
from functools import lru_cache

import numpy as np
import pytest
from scipy import ndimage

from PromptEngines.data.regions import full_structure
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.data.synthetic.fundus import vessel_correction_case
from PromptEngines.evaluation.metrics import iou
from PromptEngines.multimodal.defects import (DEFECT_COMMANDS, DEFECT_KINDS, LOCAL_EXTENT,
                                              SPURIOUS_SIZE, imperfect_mask, make_defect,
                                              next_step, rebuild, skeleton_radii,
                                              soft_prediction)
from PromptEngines.prompts import TEXT_COMMANDS

SEEDS = range(5)


@lru_cache(maxsize=None)
def _fundus(seed: int):
    """A fundus-like truth (H, W) bool and its image (H, W) float."""
    case = vessel_correction_case(seed, "gap", 192)
    return case.truth[0].astype(bool), case.image.array[0]


@lru_cache(maxsize=None)
def _cta(seed: int):
    """An isotropic 3D vessel tree and its CTA-like image (vessels bright)."""
    case = vessel_volume(seed, (40, 56, 56), spacing_zyx=(0.8, 0.8, 0.8), oblique=False)
    return case.label.astype(bool), case.volume.array


def _count(mask) -> int:
    return ndimage.label(mask, full_structure(mask.ndim))[1]


def _reach(defect) -> float:
    """Farthest region voxel from the defect's click point."""
    offsets = np.argwhere(defect.region) - np.asarray(defect.point)
    return float(np.sqrt((offsets ** 2).sum(axis=1)).max())


def _defects(kind, seeds=SEEDS):
    for seed in seeds:
        truth, image = _fundus(seed)
        defect = make_defect(kind, truth, np.random.default_rng(seed), image)
        assert defect is not None, f"{kind}: no place found on seed {seed}"
        yield truth, defect


def _check_common(kind, truth, defect):
    """What holds for every kind: the region is exactly the change, non-empty, clicked
    inside, and labelled with the fixing command."""
    assert defect.kind == kind and defect.command == DEFECT_COMMANDS[kind]
    assert defect.mask.shape == defect.region.shape == truth.shape
    assert defect.mask.dtype == defect.region.dtype == bool
    assert defect.region.any()
    np.testing.assert_array_equal(defect.region, defect.mask ^ truth)
    assert defect.region[defect.point]


# ---------------------------------------------------------------- radii and rebuild

def test_commands_cover_the_text_commands_one_each():
    assert set(DEFECT_KINDS) == set(DEFECT_COMMANDS)
    assert sorted(DEFECT_COMMANDS.values()) == sorted(TEXT_COMMANDS)
    assert DEFECT_COMMANDS["too_thick"] == "make thinner"
    assert DEFECT_COMMANDS["too_thin"] == "make thicker"
    assert DEFECT_COMMANDS["gap"] == "make a connection"
    assert DEFECT_COMMANDS["missing_branch"] == "extend"
    assert DEFECT_COMMANDS["false_positive"] == "remove"


def test_radius_of_a_straight_band_is_its_half_width():
    truth = np.zeros((40, 60), bool)
    truth[10:17, 5:55] = True                        # 7 rows: centre row 13, 4 to the outside
    skeleton, radius = skeleton_radii(truth)
    assert skeleton[13, 15:45].all() and not skeleton[:, 15:45][[10, 11, 12, 14, 15, 16]].any()
    np.testing.assert_allclose(radius[13, 15:45], 4.0)
    assert (radius[~skeleton] == 0).all()
    rebuilt = rebuild(skeleton, radius, truth.shape)
    np.testing.assert_array_equal(rebuilt[:, 15:45], truth[:, 15:45])


def test_rebuild_paints_open_discs_and_balls():
    skeleton = np.zeros((9, 9), bool)
    skeleton[4, 4] = True
    disc = rebuild(skeleton, np.where(skeleton, 2.5, 0.0), skeleton.shape)
    assert disc.sum() == 21                          # offsets with dy² + dx² < 6.25
    assert disc[4, 2] and disc[3, 2] and not disc[4, 1] and not disc[2, 2]
    skeleton3 = np.zeros((5, 5, 5), bool)
    skeleton3[2, 2, 2] = True
    assert rebuild(skeleton3, np.where(skeleton3, 1.5, 0.0), skeleton3.shape).sum() == 19
    with pytest.raises(ValueError, match="shape"):
        rebuild(skeleton, np.zeros((3, 3)), skeleton.shape)


@pytest.mark.parametrize("seed", SEEDS)
def test_skeleton_radii_and_rebuild_reproduce_a_fundus_truth(seed):
    truth, _ = _fundus(seed)
    skeleton, radius = skeleton_radii(truth)
    assert skeleton.shape == radius.shape == truth.shape
    assert (skeleton <= truth).all() and (radius[skeleton] >= 1.0).all()
    assert (radius[~skeleton] == 0).all()
    # Area ≈ 2 r × centreline length: the radii have the right size.
    assert 0.8 < 2 * radius[skeleton].mean() * skeleton.sum() / truth.sum() < 1.25
    assert iou(rebuild(skeleton, radius, truth.shape), truth) >= 0.85


# ---------------------------------------------------------------- each kind (2D)

def test_too_thick_adds_a_local_rim():
    for truth, defect in _defects("too_thick"):
        _check_common("too_thick", truth, defect)
        assert (defect.mask >= truth).all()                       # adds only
        assert _reach(defect) <= 40                               # 2 x (extent + rim)
        assert defect.region.sum() < 0.35 * truth.sum()
        # Only around the vessel: every added voxel touches the truth through added ones.
        grown = ndimage.binary_dilation(truth, full_structure(2), iterations=10)
        assert (defect.region <= grown).all()


def test_too_thin_removes_a_local_rim_and_keeps_the_centreline():
    for truth, defect in _defects("too_thin"):
        _check_common("too_thin", truth, defect)
        assert (defect.mask <= truth).all()                       # removes only
        assert _reach(defect) <= 40
        assert defect.region.sum() < 0.35 * truth.sum()
        assert _count(defect.mask) == _count(truth)               # thinner, not broken
        skeleton, _ = skeleton_radii(truth)
        assert (defect.mask | ~skeleton).all()


def test_gap_cuts_a_short_stretch_next_to_a_bifurcation():
    for truth, defect in _defects("gap"):
        _check_common("gap", truth, defect)
        assert (defect.mask <= truth).all()
        assert _reach(defect) <= 12
        assert _count(defect.mask) == _count(truth) + 1           # one piece became two
        pieces, _ = ndimage.label(defect.mask, full_structure(2))
        touching = set(np.unique(pieces[ndimage.binary_dilation(defect.region,
                                                                full_structure(2))])) - {0}
        assert len(touching) == 2                                 # the cut lies between them
        skeleton, _ = skeleton_radii(truth)
        neighbours = ndimage.convolve(skeleton.astype(int), np.ones((3, 3), int),
                                      mode="constant") - 1
        junctions = skeleton & (neighbours >= 3)
        distance = ndimage.distance_transform_edt(~junctions)
        assert distance[defect.region].min() <= 12                # near a bifurcation


def test_missing_branch_removes_one_branch_joined_at_one_junction():
    for truth, defect in _defects("missing_branch"):
        _check_common("missing_branch", truth, defect)
        assert (defect.mask <= truth).all()
        assert _count(defect.region) == 1                         # one branch
        contact = ndimage.binary_dilation(defect.region, full_structure(2)) & defect.mask
        assert _count(contact) == 1 and contact.sum() <= 25      # at one junction
        assert _count(defect.mask) == _count(truth)               # the parent stays whole
        # The branch ends free: its far end touches nothing of the mask.
        skeleton, _ = skeleton_radii(truth)
        ends = skeleton & (ndimage.convolve(skeleton.astype(int), np.ones((3, 3), int),
                                             mode="constant") == 2)
        assert (ends & defect.region).any()


def test_false_positive_is_a_spurious_piece_from_the_image():
    for truth, defect in _defects("false_positive"):
        _check_common("false_positive", truth, defect)
        assert (defect.mask >= truth).all()
        assert _count(defect.region) == 1
        assert SPURIOUS_SIZE[0] // 2 <= defect.region.sum() <= SPURIOUS_SIZE[1]
        assert ndimage.distance_transform_edt(~truth)[defect.region].min() > 3
        assert defect.note.startswith("lowered threshold")
        assert _reach(defect) <= 25


def test_false_positive_falls_back_to_random_blobs_and_says_so():
    truth, image = _fundus(0)
    no_image = make_defect("false_positive", truth, np.random.default_rng(0))
    flat = make_defect("false_positive", truth, np.random.default_rng(0),
                       np.full(truth.shape, 0.5))
    for defect, why in ((no_image, "no image given"), (flat, "the image gave no")):
        assert defect.note.startswith("random blobs") and why in defect.note
        assert (defect.mask >= truth).all() and _count(defect.region) == 1
        assert ndimage.distance_transform_edt(~truth)[defect.region].min() > 4


def test_soft_prediction_polarity_follows_the_image():
    truth, image = _fundus(1)
    dark = soft_prediction(image, truth)                          # fundus: dark vessels
    bright = soft_prediction(-image, truth)                       # CTA-like: bright ones
    np.testing.assert_allclose(dark, bright, atol=1e-9)
    assert np.median(dark[truth]) > 5 * abs(np.median(dark[~truth]))
    assert soft_prediction(np.full(truth.shape, 0.5), truth) is None
    np.testing.assert_allclose(soft_prediction(image, truth, polarity=+1), -dark, atol=1e-9)


def test_near_places_the_defect_close_to_the_given_point():
    """Thinner/thicker: around the skeleton voxel nearest `near`; gap and missing branch: the
    candidate nearest it, so no randomly placed one lies nearer."""
    truth, image = _fundus(2)
    skeleton, _ = skeleton_radii(truth)

    def gap(defect, target):
        return np.sqrt(((np.argwhere(defect.region) - target) ** 2).sum(axis=1)).min()

    for target in np.argwhere(skeleton)[::97][:3]:
        for kind in ("too_thick", "too_thin", "gap", "missing_branch"):
            placed = make_defect(kind, truth, np.random.default_rng(0), image,
                                 near=tuple(target))
            if kind.startswith("too"):
                assert gap(placed, target) <= LOCAL_EXTENT[0], (kind, tuple(target))
                continue
            anywhere = [make_defect(kind, truth, np.random.default_rng(s), image)
                        for s in range(6)]
            assert gap(placed, target) <= min(gap(d, target) for d in anywhere) + 1e-9


def test_no_place_gives_none():
    line = np.zeros((30, 30), bool)
    line[14:17, 3:27] = True                                     # no bifurcation, no branch
    rng = np.random.default_rng(0)
    assert make_defect("gap", line, rng) is None
    assert make_defect("missing_branch", line, rng) is None
    assert make_defect("too_thin", line, rng) is not None


# ---------------------------------------------------------------- several defects

def test_imperfect_masks_start_where_automatic_models_do():
    scores = []
    for seed in range(10):
        truth, image = _fundus(seed)
        mask, defects = imperfect_mask(truth, np.random.default_rng(seed), image)
        assert mask.shape == truth.shape and mask.dtype == bool
        assert 1 <= len(defects) <= 6
        union = np.zeros_like(truth)
        for defect in defects:
            assert not (union & defect.region).any()             # no overlap
            union |= defect.region
            np.testing.assert_array_equal(mask[defect.region], defect.mask[defect.region])
        np.testing.assert_array_equal(union, mask ^ truth)        # nothing else changed
        scores.append(iou(mask, truth))
    assert 0.60 <= np.mean(scores) <= 0.75, np.round(scores, 3)
    assert min(scores) > 0.35 and max(scores) < 0.95


def test_imperfect_mask_respects_kinds_and_count():
    truth, image = _fundus(3)
    mask, defects = imperfect_mask(truth, np.random.default_rng(0), image,
                                   kinds=("gap", "too_thick"), count=(2, 2))
    assert len(defects) == 2 and {d.kind for d in defects} <= {"gap", "too_thick"}
    with pytest.raises(ValueError, match="unknown defect kind 'bend'"):
        imperfect_mask(truth, np.random.default_rng(0), kinds=("bend",))


def test_same_seed_same_masks():
    truth, image = _fundus(4)
    a_mask, a = imperfect_mask(truth, np.random.default_rng(7), image)
    b_mask, b = imperfect_mask(truth, np.random.default_rng(7), image)
    c_mask, _ = imperfect_mask(truth, np.random.default_rng(8), image)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert [(d.kind, d.point) for d in a] == [(d.kind, d.point) for d in b]
    assert not np.array_equal(a_mask, c_mask)
    for kind in DEFECT_KINDS:
        one = make_defect(kind, truth, np.random.default_rng(3), image)
        two = make_defect(kind, truth, np.random.default_rng(3), image)
        np.testing.assert_array_equal(one.mask, two.mask)


def test_next_step_clicks_the_centre_of_the_largest_difference():
    truth, image = _fundus(5)
    mask, defects = imperfect_mask(truth, np.random.default_rng(5), image)
    point, region = next_step(mask, truth)
    largest = max(defects, key=lambda d: d.region.sum())
    assert region[point] and (region <= largest.region).all()
    assert region.sum() == max(np.bincount(ndimage.label(mask ^ truth,
                                                         full_structure(2))[0].ravel())[1:])
    assert next_step(truth, truth) is None
    square = np.zeros((20, 20), bool)
    square[4:11, 6:13] = True
    point, region = next_step(square, np.zeros_like(square))     # a false positive only
    assert point == (7, 9) and region.sum() == 49


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad, message", [
    (np.zeros((20, 20)), "truth is empty"),
    (np.full((20, 20), np.nan), "NaN"),
    (np.arange(400.0).reshape(20, 20) % 3, "binary"),
    (np.ones(20), "2D .* or 3D"),
])
def test_bad_truth_is_refused_by_name(bad, message):
    rng = np.random.default_rng(0)
    for call in (lambda: make_defect("gap", bad, rng), lambda: imperfect_mask(bad, rng),
                 lambda: skeleton_radii(bad)):
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_kind_image_or_current_is_refused():
    truth, image = _fundus(0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown defect kind"):
        make_defect("wider", truth, rng)
    with pytest.raises(ValueError, match="image shape"):
        make_defect("false_positive", truth, rng, image[:10])
    with pytest.raises(ValueError, match="image contains NaN"):
        make_defect("false_positive", truth, rng, np.where(truth, np.nan, image))
    with pytest.raises(ValueError, match="current mask must be binary"):
        next_step(truth * 2, truth)
    with pytest.raises(ValueError, match="shape mismatch"):
        next_step(truth[:10], truth)


# ---------------------------------------------------------------- 3D

def test_3d_radii_rebuild_and_every_kind():
    truth, image = _cta(0)
    skeleton, radius = skeleton_radii(truth)
    # Small CTA vessels (radius 1.5-2 voxels) lose more to discrete balls than 2D discs.
    assert iou(rebuild(skeleton, radius, truth.shape), truth) >= 0.6
    for kind in DEFECT_KINDS:
        defect = make_defect(kind, truth, np.random.default_rng(1), image)
        _check_common(kind, truth, defect)
        adds = kind in ("too_thick", "false_positive")
        assert (defect.mask >= truth).all() if adds else (defect.mask <= truth).all()
    assert make_defect("false_positive", truth, np.random.default_rng(1),
                       image).note.startswith("lowered threshold")
    gap = make_defect("gap", truth, np.random.default_rng(2))
    assert _count(gap.mask) == _count(truth) + 1
    mask, defects = imperfect_mask(truth, np.random.default_rng(0), image)
    assert len(defects) >= 2 and iou(mask, truth) < 0.95
