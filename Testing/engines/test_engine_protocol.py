"""The base Engine's guarantees, on a small engine written here that paints one slice per
update (like a tracer) and can be told to fail half way."""
import numpy as np
import pytest

from PromptEngines.engine import Engine, Update, changed_region, resolve_device
from PromptEngines.registry import available_engines, get_engine
from PromptEngines.errors import EngineError, PromptError
from PromptEngines.prompts import Point, Reset, Text, Undo
from registered_engine import registered


@registered("slice-painter", {"point"}, needs_3d=True)
class SlicePainter(Engine):
    fail_after = None

    def _interact(self, prompt):
        z, y, x = (int(round(c)) for c in prompt.position)
        for count, k in enumerate(range(z, self.image.shape[0])):
            if self.fail_after is not None and count == self.fail_after:
                raise RuntimeError("model exploded")
            region = (slice(k, k + 1), slice(y, y + 2), slice(x, x + 2))
            yield Update(region, np.full((1, 2, 2), prompt.label or 1, np.uint8),
                         final=k == self.image.shape[0] - 1)


@pytest.fixture
def painter():
    engine = SlicePainter()
    engine.set_image(np.random.default_rng(0).normal(size=(6, 8, 8)), (2.0, 1.0, 1.0))
    return engine


def test_updates_stream_slice_by_slice_and_build_the_mask(painter):
    updates = list(painter.interact(Point((2, 3, 4))))
    assert len(updates) == 4 and updates[-1].final and not updates[0].final
    assert [u.bounds[0] for u in updates] == [(2, 3), (3, 4), (4, 5), (5, 6)]
    expected = np.zeros((6, 8, 8), np.uint8)
    expected[2:, 3:5, 4:6] = 1
    np.testing.assert_array_equal(painter.mask, expected)


def test_undo_restores_the_previous_mask_exactly(painter):
    painter.run(Point((0, 0, 0)))
    first = painter.mask.copy()
    painter.run(Point((3, 5, 5)))
    assert not np.array_equal(painter.mask, first)
    update = painter.undo()
    np.testing.assert_array_equal(painter.mask, first)
    np.testing.assert_array_equal(update.patch, first[update.region])
    painter.undo()
    assert painter.mask.sum() == 0
    assert painter.undo() is None


def test_failure_half_way_leaves_the_mask_untouched(painter):
    painter.run(Point((0, 0, 0)))
    before = painter.mask.copy()
    painter.fail_after = 2
    with pytest.raises(RuntimeError, match="exploded"):
        painter.run(Point((1, 4, 4)))
    np.testing.assert_array_equal(painter.mask, before)
    painter.undo()                       # the failed prompt left no undo step
    assert painter.mask.sum() == 0


def test_cancel_keeps_what_was_done_and_is_one_undo_step(painter):
    stream = painter.interact(Point((1, 4, 4)))
    next(stream), next(stream)
    stream.close()                       # the user pressed cancel after two slices
    assert painter.mask[1:3, 4:6, 4:6].all() and painter.mask[3:].sum() == 0
    painter.undo()
    assert painter.mask.sum() == 0


def test_reset_clears_and_is_undoable(painter):
    painter.run(Point((0, 1, 1)))
    kept = painter.mask.copy()
    list(painter.interact(Reset()))
    assert painter.mask.sum() == 0
    list(painter.interact(Undo()))
    np.testing.assert_array_equal(painter.mask, kept)


def test_refusals_name_the_problem(painter):
    with pytest.raises(PromptError, match="does not take text prompts"):
        list(painter.interact(Text("extend")))
    with pytest.raises(PromptError, match="outside the image"):
        list(painter.interact(Point((6.7, 0, 0))))
    with pytest.raises(EngineError, match="needs a 3D volume"):
        SlicePainter().set_image(np.zeros((1, 8, 8)))
    with pytest.raises(PromptError, match="3D"):
        SlicePainter().set_image(np.zeros((8, 8)))
    with pytest.raises(PromptError, match="NaN"):
        SlicePainter().set_image(np.full((2, 3, 3), np.nan))
    with pytest.raises(EngineError, match="set_image first"):
        SlicePainter().run(Point((0, 0, 0)))
    assert painter.mask.sum() == 0


def test_registry_and_device():
    assert "regiongrow" in available_engines()
    assert get_engine("regiongrow").name == "regiongrow"
    with pytest.raises(EngineError, match="unknown engine 'nnunet'; available: .*regiongrow"):
        get_engine("nnunet")
    with pytest.raises(EngineError, match="takes no weights"):
        get_engine("regiongrow", weights="x.pt")
    assert resolve_device("cpu") == "cpu"
    import torch
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_changed_region_is_the_tight_box():
    a = np.zeros((4, 5, 6), np.uint8)
    b = a.copy()
    b[1, 2, 3] = b[2, 4, 1] = 1
    assert changed_region(a, b) == (slice(1, 3), slice(2, 5), slice(1, 4))
    assert changed_region(a, a) is None
