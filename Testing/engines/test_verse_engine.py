"""verse as an engine, with a randomly initialised tiny model whose mask heads are biased so
that it answers "everywhere" (or "nowhere"): a structure button fills every slice in one
batched call, a click changes only its own slice (Mode 2 after a structure, Mode 3 without),
each slice is encoded once, undo is exact (state included), the same prompts give the same
mask bit for bit and a recording replays; bad input is one clear line and the mask is kept."""
import numpy as np
import pytest
import torch

from PromptEngines.annotation import Annotation
from PromptEngines.data.synthetic.cardiac import cardiac_volume
from PromptEngines.errors import EngineError, PromptError
from PromptEngines.prompts import Auto, Point, PromptSequence, Undo
from PromptEngines.verse.engine import VerseEngine
from verse_weights import biased_weights


@pytest.fixture(scope="module")
def everywhere(tmp_path_factory):
    return biased_weights(tmp_path_factory.mktemp("verse"), 50.0)


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory):
    return biased_weights(tmp_path_factory.mktemp("verse"), -50.0)


@pytest.fixture(scope="module")
def case():
    return cardiac_volume(1000, slices=6, size=96)


def test_a_structure_fills_every_slice_in_one_call_and_a_click_only_its_own(everywhere, case):
    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    encoded = []
    encode = engine.model.encode
    engine.model.encode = lambda images: encoded.append(len(images)) or encode(images)
    engine.run(Auto("lv"))
    assert engine.mask.all() and encoded == [6]             # all six slices, one call
    assert engine._session.structure == "LV"
    with torch.no_grad():                   # from now on the model answers "nowhere"
        for head in engine.model.sem_seg_head.predictor.simple_decoders:
            head.final_conv.bias.fill_(-50.0)
    update = list(engine.interact(Point((3.2, 40.0, 50.0), 1)))[-1]
    assert update.bounds == ((3, 4), (0, 96), (0, 96))
    assert update.message == "slice 3: click 1 (Mode 2)"
    assert not engine.mask[3].any() and np.delete(engine.mask, 3, axis=0).all()
    assert encoded == [6]                                   # no slice encoded twice
    # (row, col) on the model's 256^2 grid: (40 + 0.5) * 256 / 96 - 0.5 = 107.5 -> 108
    assert engine._session.clicks[3] == (((108, 134), 1),)


def test_clicks_without_a_structure_are_mode_3_on_their_slice(everywhere, case):
    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    update = list(engine.interact(Point((2.0, 40.0, 50.0), 1)))[-1]
    assert "Mode 3" in update.message
    assert engine.mask[2].all() and not np.delete(engine.mask, 2, axis=0).any()


def test_undo_is_exact_and_the_same_prompts_give_the_same_mask(everywhere, case):
    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    engine.run(Point((1.0, 30.0, 30.0), 1))
    first = engine.mask.copy()
    session = engine._session
    engine.run(Point((4.0, 60.0, 30.0), 0))
    engine.run(Auto("RV"))
    engine.run(Undo())
    engine.run(Undo())
    np.testing.assert_array_equal(engine.mask, first)
    assert engine._session is session
    again = VerseEngine(weights=everywhere)
    again.set_image(case.volume.array, case.volume.spacing_zyx)
    again.run(Point((1.0, 30.0, 30.0), 1))
    np.testing.assert_array_equal(again.mask, first)


def test_a_recorded_session_replays_bit_for_bit(everywhere, case, tmp_path):
    def session():
        annotation = Annotation(case.volume, VerseEngine(weights=everywhere), segment="LV")
        for prompt in (Auto("Myo"), Point(case.volume.index_to_ras((2.0, 40.0, 41.0)), 0),
                       Point(case.volume.index_to_ras((2.0, 50.0, 52.0)), 1)):
            annotation.apply(prompt)
        return annotation

    first, second = session(), session()
    np.testing.assert_array_equal(first.mask, second.mask)
    path = tmp_path / "verse.prompts.json"
    first.finish().save(path)
    again = Annotation(case.volume, VerseEngine(weights=everywhere), segment="LV")
    np.testing.assert_array_equal(again.replay(PromptSequence.load(path), tmp_path), first.mask)


def test_bad_input_is_one_clear_line_and_the_mask_is_kept(everywhere, nowhere, case):
    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    engine.run(Point((1.0, 30.0, 30.0), 1))
    kept = engine.mask.copy()
    with pytest.raises(PromptError, match=r"unknown structure 'aorta'; verse knows: LV, Myo, "
                                          r"RV$"):
        engine.run(Auto("aorta"))
    with pytest.raises(PromptError, match="outside the image"):
        engine.run(Point((1.0, 30.0, 500.0), 1))
    np.testing.assert_array_equal(engine.mask, kept)
    blind = VerseEngine(weights=nowhere)
    blind.set_image(case.volume.array, case.volume.spacing_zyx)
    blind.run(Point((1.0, 30.0, 30.0), 1))        # nothing found: an empty slice, no error
    with pytest.raises(PromptError, match="no RV found on any slice of this stack .* the "
                                          "segment is kept as it was"):
        blind.run(Auto("RV"))
    assert not blind.mask.any()                              # as it was: empty
    with pytest.raises(EngineError, match="needs a 3D volume; this image is a single 2D "
                                          "slice"):
        engine.set_image(case.volume.array[:1], case.volume.spacing_zyx)


def test_a_starting_mask_is_the_previous_result_only_where_it_changes_a_slice(everywhere,
                                                                             case):
    from PromptEngines.prompts import MaskPrompt

    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    engine.run(Auto("LV"))
    engine.run(Point((2.0, 40.0, 40.0), 0))
    engine.run(Point((4.0, 40.0, 40.0), 0))
    before = engine._session
    edited = engine.mask.copy()
    edited[4, :30] = 0                                        # another tool edits slice 4
    engine.run(MaskPrompt(edited))
    after = engine._session
    assert after.previous[2] is before.previous[2] and after.clicks[2] == before.clicks[2]
    assert 4 not in after.clicks                              # its clicks no longer apply
    expected = torch.from_numpy(edited[4:5].astype(np.float32))[:, None]
    resized = torch.nn.functional.interpolate(expected, size=(256, 256), mode="bilinear")
    assert torch.allclose(after.previous[4], resized, atol=1e-6)


def test_other_segments_are_never_taken_and_nothing_else_found_says_so(everywhere, case):
    from PromptEngines.prompts import ExcludeMask

    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    others = np.zeros(case.volume.shape, np.uint8)
    others[:, :48] = 1
    engine.run(ExcludeMask(others))
    engine.run(Auto("Myo"))
    assert not engine.mask[others > 0].any() and engine.mask[others == 0].all()
    everything = VerseEngine(weights=everywhere)
    everything.set_image(case.volume.array, case.volume.spacing_zyx)
    everything.run(ExcludeMask(np.ones(case.volume.shape, np.uint8)))
    with pytest.raises(PromptError, match="no Myo found on any slice"):
        everything.run(Auto("Myo"))


def test_long_stacks_of_non_square_slices_are_encoded_in_fixed_batches(everywhere):
    """A 20-slice stack of 40 x 72 slices: batches 0-15 and 16-19 whatever the first prompt
    was, so a slice's features (and every mask) never depend on the order of prompts."""
    stack = cardiac_volume(1001, slices=20, size=72).volume.array[:, 10:50]
    encoded = []

    def engine_counting():
        engine = VerseEngine(weights=everywhere)
        engine.set_image(stack, (8.0, 1.5, 1.5))
        encode = engine.model.encode
        engine.model.encode = lambda images: encoded.append(len(images)) or encode(images)
        return engine

    first = engine_counting()
    first.run(Point((18.0, 20.0, 36.0), 1))                  # a click on slice 18 first
    first.run(Auto("RV"))
    assert encoded == [4, 16] and first.mask.shape == (20, 40, 72) and first.mask.all()
    assert first._session.clicks == {}                        # a structure starts afresh
    second = engine_counting()
    second.run(Auto("RV"))
    assert encoded[2:] == [16, 4]
    for k in (3, 18):
        assert all(torch.equal(a, b) for a, b in zip(first._features[k], second._features[k]))
    # (row, col) of a 40 x 72 slice on the 256^2 grid: the slice sits 16 rows down in its
    # 72^2 square, (20 + 16 + 0.5) * 256 / 72 - 0.5 = 129.3 -> 129, (36 + 0.5) * 256 / 72 - 0.5
    # = 129.3 -> 129.
    second.run(Point((18.0, 20.0, 36.0), 1))
    assert second._session.clicks[18] == (((129, 129), 1),)


def test_a_bad_structure_is_refused_by_the_check_before_any_work(everywhere, case):
    engine = VerseEngine(weights=everywhere)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    with pytest.raises(PromptError, match="unknown structure 'aorta'"):
        engine.check(Auto("aorta"))


def test_the_trained_tiny_model_finds_each_structure_on_a_held_out_stack():
    """The embedded weights, through the engine, on a held-out stack (seed 1000, never trained
    on, an oblique geometry): LV > 0.96, Myo > 0.94 and the RV > 0.85 over the stack (0.993,
    0.973, 0.883 with the fine-tuned weights; 0.988, 0.961, 0.838 with the 2500-step run's
    they started from; RV is the weak structure), the other two structures mostly out; a
    click on the worst slice's largest error does not make that slice worse."""
    least = {"LV": 0.96, "Myo": 0.94, "RV": 0.85}
    from PromptEngines.data.synthetic.cardiac import CARDIAC_LABELS
    from PromptEngines.evaluation import metrics
    from PromptEngines.registry import descriptor, get_engine
    from PromptEngines.verse.simulated_clicks import next_click

    if not descriptor("verse").ready():
        pytest.skip("verse's tiny weights are not here")
    stack = cardiac_volume(1000, slices=10, size=160)
    engine = get_engine("verse", device="cpu")
    engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
    for name, value in CARDIAC_LABELS.items():
        engine.run(Auto(name))
        mask, truth = engine.mask > 0, stack.labels == value
        assert metrics.dice(mask, truth) > least[name], name
        assert (mask & (stack.labels > 0) & ~truth).sum() < 0.1 * mask.sum(), name
    shown = np.flatnonzero(truth.any(axis=(1, 2)))
    worst = min(shown, key=lambda k: metrics.dice(engine.mask[k], truth[k]))
    before = metrics.dice(engine.mask[worst], truth[worst])
    (row, col), label = next_click(engine.mask[worst] > 0, truth[worst])
    engine.run(Point((float(worst), float(row), float(col)), label))
    assert metrics.dice(engine.mask[worst], truth[worst]) >= before - 0.01


def test_the_sam_style_baseline_runs_as_a_clicks_only_engine(case):
    from PromptEngines.verse.benchmark import SAM_STYLE_WEIGHTS

    if not SAM_STYLE_WEIGHTS.is_file():
        pytest.skip("the SAM-style baseline's weights are not here")
    engine = VerseEngine(weights=SAM_STYLE_WEIGHTS)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    update = list(engine.interact(Point((2.0, 48.0, 48.0), 1)))[-1]
    assert "Mode 3" in update.message and not np.delete(engine.mask, 2, axis=0).any()
    with pytest.raises(PromptError, match="sam-style model, which takes clicks only"):
        engine.run(Auto("LV"))


def test_a_rectangular_field_of_view_gives_the_same_heart_as_the_square_one():
    """Cine MRI often has a rectangular field of view (256 x 208 ...). The same stack cut to
    144 of its 192 columns, the heart off the cut's centre (nothing of it cut away), gives the
    square stack's structures (agreement with the fine-tuned weights: LV 0.996, Myo 0.960, RV
    0.945; with the 2500-step run's 0.991, 0.955, 0.906; the earlier weights, never shown an
    off-centre heart, 0.88 / 0.89 for LV / Myo; stretching the cut slices onto the square
    gave 0.80 / 0.80)."""
    from PromptEngines.registry import descriptor, get_engine

    if not descriptor("verse").ready():
        pytest.skip("verse's tiny weights are not here")
    stack = cardiac_volume(1000, slices=8, size=192)
    image, spacing = stack.volume.array, stack.volume.spacing_zyx
    engine = get_engine("verse", device="cpu")
    least = {"LV": 0.97, "Myo": 0.93, "RV": 0.9}
    for name in ("LV", "Myo", "RV"):
        engine.set_image(image, spacing)
        engine.run(Auto(name))
        square = engine.mask[:, :, 10:154].copy()
        engine.set_image(np.ascontiguousarray(image[:, :, 10:154]), spacing)
        engine.run(Auto(name))
        assert engine.mask.shape == (8, 192, 144)
        overlap = 2 * (square & engine.mask).sum() / (square.sum() + engine.mask.sum())
        assert overlap > least[name], name
