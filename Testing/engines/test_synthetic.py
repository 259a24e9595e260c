import numpy as np
import pytest
from scipy import ndimage

from PromptEngines.data.synthetic.cardiac import cardiac_volume
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.data.synthetic.cta_tissue import TISSUE_HU, path_distances
from PromptEngines.data.synthetic.fundus import CORRECTION_COMMANDS, vessel_correction_case
from PromptEngines.data.synthetic.tumour import tumour_volume
from PromptEngines.evaluation import metrics


def test_vessel_volume_is_deterministic_by_seed():
    a, b = vessel_volume(5, (40, 48, 48)), vessel_volume(5, (40, 48, 48))
    c = vessel_volume(6, (40, 48, 48))
    assert np.array_equal(a.volume.array, b.volume.array) and np.array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.volume.ijk_to_ras, b.volume.ijk_to_ras)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_vessel_volume_has_every_feature_the_benchmarks_rely_on(vessel_case):
    case, volume = vessel_case, vessel_case.volume
    spacing = np.asarray(volume.spacing_zyx)
    # Geometry: anisotropic, oblique, away from the origin.
    assert spacing[0] > spacing[1] * 1.1
    directions = volume.ijk_to_ras[:3, :3] / spacing[::-1]
    assert np.abs(directions - np.diag(np.diag(directions))).max() > 0.1
    assert np.abs(volume.ijk_to_ras[:3, 3]).max() > 1.0
    # One connected tree holding the seed; a separate vessel that never touches it.
    assert metrics.components(case.label) == 1 and case.label[case.seed_index] == 1
    assert case.distractor.any() and not (case.label & case.distractor).any()
    gap = ndimage.distance_transform_edt(~case.label.astype(bool), sampling=spacing)
    assert gap[case.distractor.astype(bool)].min() >= 1.5
    # Bifurcations with radii shrinking along the tree.
    roles = [b.role for b in case.branches]
    assert roles.count("branch") >= 2 and "turnback" in roles and "distractor" in roles
    for branch in case.branches:
        assert branch.radii[-1] < branch.radii[0]
        if branch.parent is not None:
            assert branch.radii[0] < case.branches[branch.parent].radii.max()
    # The turn-back branch climbs, then heads back down along z.
    turn = next(b for b in case.branches if b.role == "turnback")
    assert turn.points[:, 0].max() - turn.points[-1, 0] > 3.0
    # Bright distractors (calcium, ~900 HU) well away from the vessels; noise in tissue.
    far = gap > 6.0
    assert (volume.array[far] > 600).sum() > 20
    assert volume.array[far & (volume.array < 200)].std() > 15


def test_clinical_realism_dims_distal_vessels_and_puts_bone_against_the_wall():
    case = vessel_volume(7)
    clean = vessel_volume(7, realism="clean")
    # Same anatomy and label; only the image differs.
    assert np.array_equal(case.label, clean.label) and np.array_equal(case.distractor, clean.distractor)
    image, label = case.volume.array, case.label.astype(bool)
    spacing = np.asarray(case.volume.spacing_zyx)
    smooth = ndimage.gaussian_filter(image, 1.0)
    depth = ndimage.distance_transform_edt(label, sampling=spacing)
    core = depth >= 1.0
    # Contrast falls along the tree: the seed's trunk is much brighter than the far branches.
    distances = path_distances(case.branches[:-1])
    farthest = max(range(len(distances)), key=lambda i: distances[i].max())
    tip = np.round(case.branches[farthest].points[-3] / spacing).astype(int)
    near_tip = np.zeros_like(label)
    near_tip[tuple(slice(max(v - 3, 0), v + 4) for v in tip)] = True
    trunk_level = smooth[case.seed_index]
    tip_level = np.median(smooth[near_tip & label])
    assert tip_level - TISSUE_HU < 0.75 * (trunk_level - TISSUE_HU)
    assert trunk_level > 250
    # Bone touches the vessel: cortex-bright voxels right next to the lumen, outside the label.
    outside = ndimage.distance_transform_edt(~label, sampling=spacing)
    assert (image[(outside > 0) & (outside < 2.5)] > 500).sum() > 30
    # Marrow inside the lumen's range is not part of the label either.
    assert ((smooth > 200) & (smooth < 320) & (outside > 4.0)).sum() > 200
    # Noisier than the clean volume (raw tissue far from everything).
    tissue = (outside > 8.0) & (image < 150)
    assert image[tissue].std() > clean.volume.array[tissue & (clean.volume.array < 150)].std()
    assert core.any()
    with pytest.raises(ValueError, match="unknown realism"):
        vessel_volume(7, realism="photoreal")


def test_correction_cases_have_the_error_they_claim():
    for error, command in CORRECTION_COMMANDS.items():
        case = vessel_correction_case(3, error)
        assert case.command == command and case.image.shape == case.truth.shape == (1, 192, 192)
        fn = case.truth.astype(bool) & ~case.initial.astype(bool)
        fp = case.initial.astype(bool) & ~case.truth.astype(bool)
        if error in ("too_thin", "gap", "missing_branch"):
            assert fn.sum() > 30 and fp.sum() == 0
        else:
            assert fp.sum() > 30 and fn.sum() == 0
        if error == "gap":
            assert metrics.components(case.initial) > metrics.components(case.truth)
        if error == "false_positive":
            assert metrics.components(case.initial) >= metrics.components(case.truth) + 1
    with pytest.raises(ValueError, match="unknown error kind"):
        vessel_correction_case(0, "crooked")


def test_cardiac_volume_anatomy():
    case = cardiac_volume(2)
    assert case.volume.shape == (10, 128, 128) and case.volume.spacing_zyx[0] == pytest.approx(8.0)
    lv, myo, rv = case.mask("LV"), case.mask("Myo"), case.mask("RV")
    assert all(lv[s].any() and myo[s].any() for s in range(10))
    assert rv[0].any() and not rv[-1].any()                   # the RV ends before the apex
    assert lv[0].sum() > lv[-1].sum()                        # the LV narrows to the apex
    image = case.volume.array
    assert image[lv > 0].mean() > image[myo > 0].mean() + 0.4  # bright blood, dark muscle
    # The myocardium surrounds the LV: filling it covers the LV.
    for s in range(10):
        assert ndimage.binary_fill_holes(myo[s])[lv[s] > 0].all()


def test_tumour_volume_has_a_faint_tumour_inside_the_organ():
    case = tumour_volume(1)
    organ, tumour = case.mask("organ"), case.mask("tumour")
    assert tumour.sum() > 500 and organ.sum() > 10 * tumour.sum()
    assert ndimage.binary_fill_holes(organ | tumour)[tumour > 0].all()
    image = case.volume.array
    contrast = image[organ > 0].mean() - image[tumour > 0].mean()
    assert 10 < contrast < 40                                  # ambiguous, not invisible
