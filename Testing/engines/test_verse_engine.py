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
    with pytest.raises(EngineError, match="needs a 3D volume; this image is a single 2D "
                                          "slice"):
        engine.set_image(case.volume.array[:1], case.volume.spacing_zyx)
