"""Undo and redo, many levels, in an annotation and its prompts file: redo makes the last
undone step again as it was made (same prompt, same engine, as far as it went when
cancelled); a new step forgets what was undone; replay is bit for bit."""
import numpy as np
import pytest

from PromptEngines.annotation import Annotation
from PromptEngines.errors import PromptError
from PromptEngines.prompts import Point, PromptSequence, Redo, Undo
from PromptEngines.registry import get_engine
from test_several_engines import painter, volume  # noqa: F401  (the fixture and the volume)


def annotation(painter):  # noqa: F811
    return Annotation(volume(), get_engine("regiongrow"))


def ras(v, zyx):
    return v.index_to_ras(zyx)


def test_many_undos_then_redos_give_each_mask_back_and_replay(painter, tmp_path):  # noqa: F811
    work = annotation(painter)
    v = work.volume
    masks = [work.mask.copy()]
    for prompt, engine in ((Point(ras(v, (2, 10, 10))), None),
                           (Point(ras(v, (3, 2, 2))), "painter"),
                           (Point(ras(v, (3, 10, 12)), 0), "painter")):
        masks.append(work.apply(prompt, engine=engine).copy())
    assert len({m.tobytes() for m in masks}) == 4
    for back in (2, 1, 0):
        assert np.array_equal(work.apply(Undo()), masks[back])
    for forward in (1, 2):
        assert np.array_equal(work.apply(Redo()), masks[forward])
    assert work.engine.name == "painter"                  # the redone step's engine
    work.apply(Undo())
    assert np.array_equal(work.mask, masks[1])
    sequence = work.finish()
    path = tmp_path / "session.prompts.json"
    sequence.save(path)
    again = Annotation(volume(), get_engine("regiongrow"))
    assert np.array_equal(again.replay(PromptSequence.load(path)), work.mask)
    assert [s.kind for s in PromptSequence.load(path).steps] == [
        "point", "point", "point", "undo", "undo", "undo", "redo", "redo", "undo"]


def test_a_new_step_forgets_what_was_undone_and_redo_then_says_so(painter):  # noqa: F811
    work = annotation(painter)
    v = work.volume
    work.apply(Point(ras(v, (2, 10, 10))))
    with pytest.raises(PromptError, match="nothing to redo"):
        work.check(Redo())
    work.apply(Undo())
    work.apply(Point(ras(v, (3, 3, 3))), engine="painter")
    before = work.mask.copy()
    with pytest.raises(PromptError, match="nothing to redo"):
        work.apply(Redo())
    assert np.array_equal(work.mask, before)
    assert [s.kind for s in work.sequence.steps] == ["point", "undo", "point"]


def test_redo_of_a_cancelled_step_goes_as_far_as_the_step_went(painter):  # noqa: F811
    from PromptEngines.engine import Engine, Update
    from registered_engine import registered
    from PromptEngines.registry import ENGINES

    @registered("slices", {"point"})
    class Slices(Engine):
        def _interact(self, prompt):
            for z in range(self.image.shape[0]):
                yield Update((slice(z, z + 1), slice(0, 4), slice(0, 4)),
                             np.ones((1, 4, 4), np.uint8))
    try:
        work = Annotation(volume(), get_engine("slices"))
        updates = work.interact(Point(ras(work.volume, (0, 1, 1))))
        for _ in range(2):
            next(updates)
        updates.close()                                   # cancelled after two slices
        cancelled = work.mask.copy()
        assert cancelled.any(axis=(1, 2)).sum() == 2
        work.apply(Undo())
        assert np.array_equal(work.apply(Redo()), cancelled)
    finally:
        ENGINES.pop("slices")
