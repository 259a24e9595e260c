"""Metrics on hand-made cases with known answers, and against MONAI where it has them."""
import numpy as np
import pytest

from PromptEngines.evaluation import metrics


def cube(shape, low, high):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = 1
    return mask


def test_dice_and_iou_known_values():
    a = cube((4, 10, 10), (0, 0, 0), (1, 10, 10))        # 100 voxels
    b = cube((4, 10, 10), (0, 0, 5), (1, 10, 10))        # 50 voxels, all inside a
    assert metrics.dice(a, b) == pytest.approx(2 * 50 / 150)
    assert metrics.iou(a, b) == pytest.approx(0.5)
    assert metrics.dice(a, a) == 1.0 and metrics.dice(a, np.zeros_like(a)) == 0.0
    empty = np.zeros_like(a)
    assert metrics.dice(empty, empty) == 1.0 and metrics.iou(empty, empty) == 1.0
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.dice(a, a[:2])


def test_cldice_rewards_topology_not_thickness():
    tube = cube((1, 40, 40), (0, 18, 2), (1, 22, 38))      # a straight vessel
    thin = cube((1, 40, 40), (0, 19, 2), (1, 21, 38))      # same centreline, thinner
    broken = tube.copy()
    broken[0, :, 18:22] = 0                                # a gap
    assert metrics.cldice(thin, tube) == pytest.approx(1.0)
    assert metrics.dice(thin, tube) < 0.7
    assert metrics.cldice(broken, tube) < metrics.cldice(thin, tube)
    # Skeleton of the tube: 1 voxel thick along x; broken loses the gap's share of it.
    skeleton_tube = metrics.skeleton(tube)
    sensitivity = (skeleton_tube & broken.astype(bool)).sum() / skeleton_tube.sum()
    assert metrics.cldice(broken, tube) == pytest.approx(2 * sensitivity / (1 + sensitivity))


def test_hd95_in_millimetres_for_a_shifted_cube():
    a = cube((20, 20, 20), (5, 5, 5), (12, 12, 12))
    b = cube((20, 20, 20), (5, 5, 8), (12, 12, 15))        # shifted 3 voxels along x
    # Spacing 0.5 mm along x: the far faces are 3 * 0.5 = 1.5 mm apart.
    assert metrics.hd95(a, b, spacing=(2.0, 1.0, 0.5)) == pytest.approx(1.5)
    assert metrics.hd95(a, a) == 0.0
    assert metrics.hd95(a, np.zeros_like(a)) == float("inf")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_and_hd95_agree_with_monai(seed):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_dice, compute_hausdorff_distance

    rng = np.random.default_rng(seed)
    from scipy import ndimage
    truth = ndimage.gaussian_filter(rng.normal(size=(24, 28, 32)), 3) > 0.02
    pred = ndimage.gaussian_filter(rng.normal(size=(24, 28, 32)), 3) > 0.03
    pred |= truth & (rng.random(truth.shape) > 0.3)
    spacing = (2.0, 0.8, 0.6)
    as_tensor = lambda m: torch.from_numpy(m[None, None].astype(np.float32))  # noqa: E731
    monai_hd = compute_hausdorff_distance(as_tensor(pred), as_tensor(truth), percentile=95,
                                          spacing=spacing).item()
    assert metrics.hd95(pred, truth, spacing) == pytest.approx(monai_hd, rel=1e-5)
    monai_dice = compute_dice(as_tensor(pred), as_tensor(truth)).item()
    assert metrics.dice(pred, truth) == pytest.approx(monai_dice, rel=1e-6)


def test_betti0_error_counts_pieces_with_full_connectivity():
    truth = cube((1, 10, 10), (0, 1, 1), (1, 4, 4)) | cube((1, 10, 10), (0, 6, 6), (1, 9, 9))
    diagonal = np.zeros((1, 10, 10), np.uint8)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = 1              # touching corners: one piece
    assert metrics.components(truth) == 2 and metrics.components(diagonal) == 1
    assert metrics.betti0_error(diagonal, truth) == 1
    assert metrics.betti0_error(truth, truth) == 0


def test_noc_and_fraction_on():
    assert metrics.noc([0.5, 0.8, 0.86, 0.91], 0.85) == 3
    assert metrics.noc([0.5, 0.8], 0.9, max_clicks=20) == 20
    assert metrics.noc([0.95], 0.9) == 1
    pred = cube((1, 4, 4), (0, 0, 0), (1, 4, 4))
    other = cube((1, 4, 4), (0, 0, 0), (1, 1, 4))
    assert metrics.fraction_on(pred, other) == pytest.approx(0.25)
