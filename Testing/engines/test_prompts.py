import json

import numpy as np
import pytest

from PromptEngines.errors import PromptError, PromptFileError
from PromptEngines.prompts import (TEXT_COMMANDS, Auto, Box, MaskPrompt, Point, PromptSequence,
                                   Reset, Scribble, Text, Undo, VolumeIdentity, sha256_array)


def test_point_validates_coordinates_and_label():
    assert Point((1, 2, 3)).position == (1.0, 2.0, 3.0)
    with pytest.raises(PromptError, match="NaN"):
        Point((1.0, float("nan"), 3.0))
    with pytest.raises(PromptError, match="3 coordinates"):
        Point((1.0, 2.0))
    with pytest.raises(PromptError, match="label"):
        Point((1, 2, 3), label=2)


def test_text_commands_are_normalised_and_unknown_ones_refused():
    assert Text("  Make   THICKER ").command == "make thicker"
    assert Text("make_a_connection").command == "make a connection"
    assert len(TEXT_COMMANDS) == 5
    with pytest.raises(PromptError, match="unknown text command 'make it pretty'"):
        Text("make it pretty")


def test_box_orders_corners_and_encloses_an_oblique_mapping():
    box = Box((5, 0, 3), (1, 4, -3))
    assert box.low == (1, 0, -3) and box.high == (5, 4, 3)
    angle = np.deg2rad(30)
    rotate = lambda p: (np.cos(angle) * p[0] - np.sin(angle) * p[1],  # noqa: E731
                        np.sin(angle) * p[0] + np.cos(angle) * p[1], p[2])
    mapped = box.map_coordinates(rotate)
    for corner in box.corners():
        moved = rotate(corner)
        assert all(lo - 1e-9 <= v <= hi + 1e-9 for v, lo, hi in zip(moved, mapped.low, mapped.high))
    # The enclosing box of a square rotated by 30 degrees: width 4cos30 + 4sin30.
    assert mapped.high[0] - mapped.low[0] == pytest.approx(4 * np.cos(angle) + 4 * np.sin(angle))


def _full_sequence():
    sequence = PromptSequence(
        volume=VolumeIdentity("v.nrrd", (3, 4, 5), np.eye(4).tolist(), "ab" * 32),
        engine="regiongrow", weights_sha256=None, segment="vessel")
    for step in (Point((1, 2, 3)), Point((4, 5, 6), 0), Box((0, 0, 0), (1, 2, 3)),
                 Scribble(((0, 0, 0), (1, 1, 1)), 0), Text("extend", (1, 1, 1)), Text("remove"),
                 Auto("LV"), MaskPrompt(path="start.seg.nrrd"), Undo(), Reset()):
        sequence.append(step)
    sequence.stopped_after[0] = 3
    sequence.record_result(np.ones((3, 4, 5), np.uint8))
    return sequence


def test_sequence_json_round_trip_keeps_every_step(tmp_path):
    sequence = _full_sequence()
    path = tmp_path / "s.prompts.json"
    sequence.save(path)
    again = PromptSequence.load(path)
    assert [type(s) for s in again.steps] == [type(s) for s in sequence.steps]
    assert again.steps[:7] == sequence.steps[:7]
    assert again.steps[7].path == "start.seg.nrrd"
    assert again.stopped_after == {0: 3}
    assert again.result_voxels == 60
    assert again.result_sha256 == sha256_array(np.ones((3, 4, 5), np.uint8))
    assert again.to_json() == sequence.to_json()
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["steps"][0] == {
        "kind": "point", "ras": [1.0, 2.0, 3.0], "label": 1, "stopped_after_updates": 3}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"version": 99, "steps": []}', "unsupported prompts file version 99"),
    ('{"version": 1}', "needs a 'steps' list"),
    ('{"version": 1, "steps": [{"kind": "sphere"}]}', "unknown kind 'sphere'"),
    ('{"version": 1, "steps": [{"kind": "lasso", "ras": [[0, 0, 0], [1, 1, 1]]}]}',
     "a lasso needs at least 3 points"),
    ('{"version": 1, "steps": [{"kind": "point"}]}', "missing field 'ras'"),
    ('{"version": 1, "steps": [{"kind": "text", "text": "make it pretty"}]}', "unknown text command"),
    ('{"version": 1, "steps": [{"kind": "point", "ras": [1, "x", 2]}]}', "three numbers"),
    ('{"version": 1, "steps": [], "volume": {"shape": [1, 2, 3], "ijk_to_ras": [[1]], "sha256": "a"}}',
     "finite 4x4"),
])
def test_malformed_prompt_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.prompts.json"
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message):
        PromptSequence.load(path)


def test_sha256_depends_on_dtype_shape_and_voxels_not_layout():
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert sha256_array(a) == sha256_array(np.asfortranarray(a))
    assert sha256_array(a) != sha256_array(a.astype(np.int32))
    assert sha256_array(a) != sha256_array(a.reshape(4, 3, 2))
    b = a.copy()
    b[1, 2, 3] += 1
    assert sha256_array(a) != sha256_array(b)
