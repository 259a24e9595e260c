import numpy as np
import pytest

from PromptEngines.data.synthetic.fundus import CORRECTION_COMMANDS, vessel_correction_case
from PromptEngines.evaluation import simulated_user as user


def box_mask(shape, low, high):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return mask


def test_centre_click_lands_at_the_centre_of_the_largest_error():
    truth = box_mask((9, 30, 30), (0, 0, 0), (9, 30, 30)) & False
    truth |= box_mask((9, 30, 30), (2, 5, 5), (7, 10, 10))      # small FN (125)
    pred = box_mask((9, 30, 30), (1, 12, 12), (8, 25, 25))      # larger FP (7x13x13)
    click = user.centre_click(pred, truth)
    assert click == user.Click((4, 18, 18), 0)                  # centre of the FP, negative
    click = user.centre_click(np.zeros_like(truth), truth)
    assert click == user.Click((4, 7, 7), 1)
    assert user.centre_click(truth, truth) is None


def test_centre_click_uses_millimetres():
    # An error 3 voxels deep along z but 0.5 mm each, and 7 voxels wide at 1 mm in y/x: the
    # deepest point in mm is still its centre, not pushed off by voxel counts.
    truth = box_mask((7, 15, 15), (2, 4, 4), (5, 11, 11))
    click = user.centre_click(np.zeros_like(truth), truth, spacing=(0.5, 1.0, 1.0))
    assert click.position == (3, 7, 7)


def test_random_and_interior_clicks_stay_on_errors_with_the_right_label():
    rng = np.random.default_rng(0)
    truth = box_mask((1, 40, 40), (0, 5, 5), (1, 20, 20))
    pred = box_mask((1, 40, 40), (0, 10, 10), (1, 30, 30))
    for click in user.random_clicks(pred, truth, rng, count=50):
        assert pred[click.position] != truth[click.position]
        assert click.label == int(truth[click.position])
    for _ in range(20):
        click = user.interior_click(pred, truth, rng)
        assert pred[click.position] and not truth[click.position] and click.label == 0


def test_jittered_box_stays_near_the_truth():
    rng = np.random.default_rng(3)
    truth = box_mask((20, 40, 40), (5, 10, 12), (15, 30, 28))
    for _ in range(20):
        low, high = user.jittered_box(truth, rng, jitter=0.1)
        size = np.array([10, 20, 16])
        assert np.all(np.abs(np.array(low) - (np.array([5, 10, 12]) - 0.5)) <= 0.1 * size + 1e-9)
        assert np.all(np.abs(np.array(high) - (np.array([14, 29, 27]) + 0.5)) <= 0.1 * size + 1e-9)


def test_scribble_lies_on_the_largest_error():
    rng = np.random.default_rng(1)
    case = vessel_correction_case(2, "missing_branch")
    points, label = user.error_scribble(case.initial, case.truth, rng)
    assert label == 1 and len(points) >= 3
    wrong = case.truth != case.initial
    assert all(wrong[p] for p in points)


@pytest.mark.parametrize("error", sorted(CORRECTION_COMMANDS))
def test_text_oracle_names_the_command_that_fixes_each_error(error):
    for seed in range(8):
        case = vessel_correction_case(seed, error)
        command, click = user.text_command(case.initial, case.truth)
        assert command == CORRECTION_COMMANDS[error], (seed, error)
        assert case.initial[click.position] != case.truth[click.position]
