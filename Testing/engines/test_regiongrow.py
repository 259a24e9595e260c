import numpy as np
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.data.synthetic.fundus import vessel_correction_case
from PromptEngines.data.synthetic.tumour import tumour_volume
from PromptEngines.registry import get_engine
from PromptEngines.errors import PromptError
from PromptEngines.evaluation import metrics
from PromptEngines.prompts import Box, MaskPrompt, Point, Scribble


def traced(case, *prompts):
    engine = get_engine("regiongrow")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    for prompt in prompts:
        engine.run(prompt)
    return engine


@pytest.mark.parametrize("seed", [1001, 1002, 1003])
def test_one_click_segments_the_clicked_tree_not_the_neighbour(seed):
    # Clean CTA (uniform contrast): what region growing is built for. On clinical-realism
    # volumes it is a baseline of the tracer benchmark, where it leaks and stops early.
    case = vessel_volume(seed, realism="clean")
    mask = traced(case, Point(case.seed_index)).mask
    assert metrics.dice(mask, case.label) > 0.85
    assert metrics.cldice(mask, case.label) > 0.9
    assert metrics.fraction_on(mask, case.distractor) < 0.02
    assert metrics.components(mask) == 1


def test_same_prompts_same_mask_bit_for_bit(vessel_case):
    first = traced(vessel_case, Point(vessel_case.seed_index)).mask
    second = traced(vessel_case, Point(vessel_case.seed_index)).mask
    assert first.dtype == np.uint8 and np.array_equal(first, second)


def test_click_in_background_says_no_vessel_and_keeps_the_mask(vessel_case):
    engine = traced(vessel_case, Point(vessel_case.seed_index))
    before = engine.mask.copy()
    background = np.argwhere(vessel_case.volume.array < 60)[0]   # plain tissue
    with pytest.raises(PromptError, match="no vessel or structure at the seed"):
        engine.run(Point(tuple(background)))
    np.testing.assert_array_equal(engine.mask, before)


def test_negative_click_blocks_growth_and_undo_brings_it_back(vessel_case):
    engine = traced(vessel_case, Point(vessel_case.seed_index))
    full = engine.mask.copy()
    # A negative click on the trunk a few mm above the seed cuts the tree there.
    trunk = vessel_case.branches[0].points
    spacing = np.asarray(vessel_case.volume.spacing_zyx)
    cut = tuple(np.round(trunk[int(0.5 * len(trunk))] / spacing).astype(int))
    engine.run(Point(cut, 0))
    assert engine.mask.sum() < full.sum() and engine.mask[cut] == 0
    engine.undo()
    np.testing.assert_array_equal(engine.mask, full)


def test_box_alone_segments_the_tumour_inside_it():
    case = tumour_volume(3)
    truth = case.mask("tumour")
    present = np.argwhere(truth)
    box = Box(tuple(present.min(0) - 2.0), tuple(present.max(0) + 2.0))
    mask = traced(case, box).mask
    assert metrics.dice(mask, truth) > 0.6
    with pytest.raises(PromptError, match="does not overlap"):
        traced(case, Box((-20, -20, -20), (-10, -10, -10)))


def test_scribble_and_starting_mask_on_a_2d_image():
    case = vessel_correction_case(4, "missing_branch")
    engine = get_engine("regiongrow")
    engine.set_image(case.image.array, (1.0, 1.0, 1.0))
    engine.run(MaskPrompt(mask=case.initial))
    np.testing.assert_array_equal(engine.mask, case.initial)
    missing = np.argwhere(case.truth & ~case.initial)
    engine.run(Scribble([tuple(p) for p in missing[:: max(1, len(missing) // 5)]], 1))
    assert metrics.dice(engine.mask, case.truth) > metrics.dice(case.initial, case.truth)


def test_dark_structures_grow_by_the_clicks_polarity():
    """Hypodense lesions and dark vessels (fundus, X-ray angiography) are segmented from a
    click, as bright ones are: the band follows the clicked structure's own level."""
    case = tumour_volume(3)
    truth, organ = case.mask("tumour") > 0, case.mask("organ") > 0
    centre = tuple(float(v) for v in np.argwhere(truth).mean(axis=0).round())
    assert case.volume.array[truth].mean() < case.volume.array[organ & ~truth].mean()
    mask = traced(case, Point(centre, 1)).mask
    assert metrics.dice(mask, truth) > 0.5
    vessels = vessel_correction_case(4, "missing_branch")         # dark vessels on a fundus
    engine = get_engine("regiongrow")
    engine.set_image(vessels.image.array, (1.0, 1.0, 1.0))
    on_vessel = np.argwhere(vessels.truth)
    deepest = on_vessel[len(on_vessel) // 2]
    grown = engine.run(Point(tuple(float(v) for v in deepest), 1))
    assert metrics.dice(grown, vessels.truth) > 0.5
