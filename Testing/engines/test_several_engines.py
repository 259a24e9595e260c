"""One annotation, several engines: a step may name another engine (a text command after a
trace), which starts from the current mask; the record says who made each step, replay is
bit for bit, and undo walks back through the steps whichever engine made them."""
import json

import numpy as np
import pytest

from PromptEngines.annotation import Annotation
from PromptEngines.data.volume import Volume, geometry_matrix
from PromptEngines.engine import Engine
from PromptEngines.errors import PromptError, PromptFileError
from PromptEngines.prompts import Point, PromptSequence, Undo
from PromptEngines.registry import ENGINES, get_engine
from registered_engine import registered


@pytest.fixture
def painter():
    @registered("painter", {"point"})
    class Painter(Engine):
        """Paints (label 1) or erases (label 0) a 3x3 square around the point on its slice."""

        def _interact(self, prompt):
            z, y, x = (int(round(c)) for c in prompt.position)
            if x == 0:
                raise PromptError("the painter refuses the first column")
            mask = self._mask.copy()
            mask[z, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = prompt.label
            yield self._final_update(mask, "painted")
    yield Painter
    ENGINES.pop("painter")


def volume():
    image = np.zeros((6, 20, 24), np.float32)
    image[:, 5:15, 6:18] = 100.0                    # a bright block regiongrow fills
    image += np.random.default_rng(0).normal(0, 1.0, image.shape).astype(np.float32)
    return Volume(image, geometry_matrix((2.0, 0.8, 0.7), (10.0, -5.0, 3.0)))


def test_a_step_by_another_engine_starts_from_the_mask_and_replays(painter, tmp_path):
    vol = volume()
    annotation = Annotation(vol, get_engine("regiongrow"))
    grown = annotation.apply(Point(vol.index_to_ras((3, 10, 12)))).copy()
    assert grown[:, 5:15, 6:18].all() and grown.sum() == 6 * 10 * 12
    hole = annotation.apply(Point(vol.index_to_ras((3, 10, 12)), 0), engine="painter").copy()
    assert hole.sum() == grown.sum() - 9 and not hole[3, 9:12, 11:14].any()
    assert annotation.engine.name == "painter"
    record = annotation.finish()
    data = record.to_json()
    assert data["engine"]["name"] == "regiongrow"
    assert "engine" not in data["steps"][0] and data["steps"][1]["engine"] == "painter"
    path = tmp_path / "session.prompts.json"
    record.save(path)
    loaded = PromptSequence.load(path)
    assert loaded.step_engines == {1: "painter"}
    replay = Annotation(vol, get_engine("regiongrow"))
    assert np.array_equal(replay.replay(loaded), hole)
    assert replay.finish().result_sha256 == record.result_sha256


def test_undo_walks_back_through_both_engines_and_a_refused_step_leaves_all(painter):
    vol = volume()
    annotation = Annotation(vol, get_engine("regiongrow"))
    grown = annotation.apply(Point(vol.index_to_ras((3, 10, 12)))).copy()
    annotation.apply(Point(vol.index_to_ras((3, 10, 12)), 0), engine="painter")
    with pytest.raises(PromptError, match="first column"):
        annotation.apply(Point(vol.index_to_ras((3, 10, 0)), 0), engine="painter")
    assert annotation.sequence.steps[-1].label == 0 and len(annotation.sequence.steps) == 2
    assert np.array_equal(annotation.apply(Undo()), grown)         # the painter's step
    assert not annotation.apply(Undo()).any()                        # regiongrow's
    # Back to regiongrow (the file's engine) from the empty mask, then the painter again.
    again = annotation.apply(Point(vol.index_to_ras((3, 10, 12)))).copy()
    assert np.array_equal(again, grown)
    painted = annotation.apply(Point(vol.index_to_ras((0, 2, 2))), engine="painter")
    assert painted.sum() == grown.sum() + 9
    replay = Annotation(vol, get_engine("regiongrow"))
    assert np.array_equal(replay.replay(annotation.finish()), painted)


def test_a_step_engine_in_a_file_must_be_a_name():
    data = {"format": "InteractiveVesselSeg prompts", "version": 1, "engine": {"name": "a"},
            "steps": [{"kind": "point", "ras": [0, 0, 0], "engine": 3}]}
    data["version"] = PromptSequence().to_json()["version"]
    with pytest.raises(PromptFileError, match="engine's name"):
        PromptSequence.from_json(json.loads(json.dumps(data)))
