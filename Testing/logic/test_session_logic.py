"""The module's logic on a real MRML scene (slicer-core): RAS prompts reach the engine in
voxel indices (oblique, anisotropic volume under a transform), a trace fills the segment
live and only where it changed, undo is exact, errors leave the segment as it was, and the
recording survives an .mrb round trip and replays bit for bit."""
import json
import threading
import time

import numpy as np
import pytest
import slicer
import vtk

from InteractiveVesselSegLib import recorder
from InteractiveVesselSegLib.mrml_volume import image_array, numpy_to_matrix
from InteractiveVesselSegLib.session import SegmentationSession
from PromptEngines.annotation import Annotation
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.data.synthetic.geometry import random_rotation
from PromptEngines.data.volume import Volume
from PromptEngines.engine import Engine, Update
from PromptEngines.errors import PromptError
from PromptEngines.prompts import Auto, Box, Point, Scribble, Text
from registered_engine import registered
from slicer_scene import new_scene


@registered("recording", {"point", "box", "scribble", "text", "auto", "mask"},
            text_commands=("make thicker",), structures=("LV",))
class RecordingEngine(Engine):
    """Records what it receives; a point paints a 2x2 square on five slices, one update per
    slice, slowly enough for the test to watch; `fail_at` raises half way."""
    fail_at = None

    def _on_image(self):
        self.received = getattr(self, "received", [])
        self.given_image_on = threading.current_thread()

    def _interact(self, prompt):
        self.received.append(prompt)
        if prompt.kind == "mask":
            yield self._final_update(prompt.mask)
            return
        if prompt.kind != "point":
            return
        z, y, x = (int(round(c)) for c in prompt.position)
        for k in range(z, min(z + 5, self.image.shape[0])):
            if self.fail_at is not None and k - z == self.fail_at:
                raise RuntimeError("engine failure half way")
            time.sleep(0.03)
            yield Update((slice(k, k + 1), slice(y, y + 2), slice(x, x + 2)),
                         np.full((1, 2, 2), prompt.label, np.uint8))


def add_volume(scene, array, ijk_to_ras, parent_matrix=None):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "cta")
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image_array(image)[...] = array
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras))
    if parent_matrix is not None:
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
        transform.SetMatrixTransformToParent(numpy_to_matrix(parent_matrix))
        node.SetAndObserveTransformNodeID(transform.GetID())
    return node


def add_segment(scene, name="vessel"):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    return node, node.GetSegmentation().AddEmptySegment(name, name)


@pytest.fixture
def moved_volume(oblique_volume):
    parent = np.eye(4)
    parent[:3, :3] = random_rotation(np.random.default_rng(4), 25, 30)
    parent[:3, 3] = (12.0, -30.0, 5.5)
    return oblique_volume, parent


def world(volume, parent):
    return Volume(volume.array, parent @ volume.ijk_to_ras)


def test_each_tool_reaches_the_engine_in_voxel_indices(moved_volume):
    volume, parent = moved_volume
    scene = new_scene()
    node = add_volume(scene, volume.array, volume.ijk_to_ras, parent)
    segmentation, segment = add_segment(scene)
    session = SegmentationSession(node, segmentation, segment, "recording")
    truth = world(volume, parent)              # what the conversion must amount to
    to_ras = truth.index_to_ras
    prompts = [Point(to_ras((3, 4, 5))), Point(to_ras((2, 7, 9)), 0),
               Box(to_ras((1, 1, 1)), to_ras((5, 8, 10))),
               Scribble([to_ras((1, 2, 3)), to_ras((1, 3, 4))], 0),
               Text("make thicker", to_ras((4, 5, 6))), Auto("LV")]
    for prompt in prompts:
        session.run(prompt)
    received = session.engine.received
    np.testing.assert_allclose(received[0].position, (3, 4, 5), atol=1e-6)
    np.testing.assert_allclose(received[1].position, (2, 7, 9), atol=1e-6)
    assert received[1].label == 0
    corners = np.array([truth.ras_to_index(c) for c in prompts[2].corners()])
    np.testing.assert_allclose(received[2].low, corners.min(0), atol=1e-6)
    np.testing.assert_allclose(received[2].high, corners.max(0), atol=1e-6)
    np.testing.assert_allclose(received[3].points, [(1, 2, 3), (1, 3, 4)], atol=1e-6)
    np.testing.assert_allclose(received[4].position, (4, 5, 6), atol=1e-6)
    assert received[4].command == "make thicker" and received[5].target == "LV"
    session.close()


def segment_array(segmentation, segment):
    return image_array(segmentation.GetBinaryLabelmapInternalRepresentation(segment)).copy()


def test_trace_fills_the_segment_live_only_where_it_changes_and_undo_is_exact(oblique_volume):
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    marker = np.zeros(oblique_volume.shape, np.uint8)
    marker[6, 10, 12] = 1                       # the user's work before the session
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.writer.write_all(marker)
    session.close()
    session = SegmentationSession(node, segmentation, segment, "recording")
    assert session.sequence.steps[0].kind == "mask"      # it starts from the user's mask
    states, regions = [segment_array(segmentation, segment)], []
    session.on_update = lambda update: (regions.append(update.region),
                                        states.append(segment_array(segmentation, segment)))
    session.submit(Point(oblique_volume.index_to_ras((1, 3, 4))))
    session.wait()
    assert len(states) - 1 >= 5                          # several states before the final one
    for before, after, region in zip(states, states[1:], regions):
        changed = np.argwhere(before != after)
        assert len(changed)
        inside = np.zeros(before.shape, bool)
        inside[region] = True
        assert inside[tuple(changed.T)].all()            # nothing written outside the region
    final = segment_array(segmentation, segment)
    assert final[6, 10, 12] == 1 and final[1:6, 3:5, 4:6].all() and final.sum() == 21
    session.run(Point(oblique_volume.index_to_ras((0, 0, 0))))
    session.undo()
    session.wait()
    np.testing.assert_array_equal(segment_array(segmentation, segment), final)
    session.close()


def test_errors_leave_the_segment_as_it_was(oblique_volume):
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.run(Point(oblique_volume.index_to_ras((0, 0, 0))))
    kept = segment_array(segmentation, segment)
    steps = len(session.sequence.steps)
    with pytest.raises(PromptError, match="outside the volume"):
        session.submit(Point(oblique_volume.index_to_ras((30, 0, 0))))
    assert not session.busy
    session.engine.fail_at = 3
    session.submit(Point(oblique_volume.index_to_ras((1, 6, 6))))
    with pytest.raises(RuntimeError, match="half way"):
        session.wait()
    np.testing.assert_array_equal(segment_array(segmentation, segment), kept)
    assert len(session.sequence.steps) == steps          # neither was recorded
    session.close()


def test_recording_survives_mrb_and_replays_bit_for_bit(tmp_path):
    from slicer_scene import new_scene as fresh_scene
    case = vessel_volume(1006, shape=(48, 72, 72))
    scene = new_scene()
    node = add_volume(scene, case.volume.array, case.volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    before = np.zeros(case.volume.shape, np.uint8)
    before[2:5, 3:7, 3:7] = 1                 # the user's earlier work in this segment
    writer_session = SegmentationSession(node, segmentation, segment, "regiongrow")
    writer_session.writer.write_all(before)
    writer_session.close()
    session = SegmentationSession(node, segmentation, segment, "regiongrow")
    session.run(Point(case.seed_ras))
    trunk = case.branches[0].points
    cut = tuple(np.round(trunk[len(trunk) // 2] / np.asarray(case.volume.spacing_zyx)).astype(int))
    session.run(Point(case.volume.index_to_ras(cut), 0))
    session.export_prompts(tmp_path / "exported.prompts.json")
    session.close()
    saved = segment_array(segmentation, segment)
    assert saved[3, 4, 4] > 0                 # the earlier work is still there
    assert 0 < saved.sum() and recorder.load(segmentation, segment).result_sha256
    for each in (node, segmentation):
        each.AddDefaultStorageNode()
    assert scene.WriteToMRB(str(tmp_path / "session.mrb"))

    loaded = fresh_scene()
    assert loaded.ReadFromMRB(str(tmp_path / "session.mrb"))
    loaded_segmentation = loaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    loaded_volume = loaded.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    sequence = recorder.load(loaded_segmentation, segment)
    assert [s.kind for s in sequence.steps] == ["mask", "point", "point"]
    from InteractiveVesselSegLib.mrml_volume import volume_from_node
    from PromptEngines.registry import get_engine
    replay = Annotation(volume_from_node(loaded_volume), get_engine("regiongrow"), "vessel")
    for _ in replay.replay_steps(sequence, resolve_mask=lambda path: recorder.load_start_mask(
            loaded_segmentation, path)):
        pass
    replayed = replay.mask
    from InteractiveVesselSegLib.segment_writer import SegmentWriter
    reloaded = SegmentWriter(loaded_segmentation, segment, loaded_volume).read()
    np.testing.assert_array_equal(replayed, reloaded)
    np.testing.assert_array_equal(replayed, (saved > 0).astype(np.uint8))
    assert replay.finish().result_sha256 == sequence.result_sha256

    # The exported file replays outside Slicer too, its starting mask written beside it.
    from PromptEngines.cli import main
    from PromptEngines.data.segmentation_file import read_mask
    from PromptEngines.data.volume import write_volume
    write_volume(case.volume, tmp_path / "cta.nrrd")
    assert main(["segment", str(tmp_path / "cta.nrrd"), "--prompts",
                 str(tmp_path / "exported.prompts.json"), "--out", str(tmp_path / "cli.seg.nrrd"),
                 "--check"]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "cli.seg.nrrd")[0], replayed)

    # The export is a training case: its accepted segment, its volume (found under the node's
    # name) and the user's first positive click.
    from PromptEngines.data.recordings import RecordedSessions
    write_volume(case.volume, tmp_path / f"{node.GetName()}.nrrd")
    sessions = RecordedSessions(tmp_path)
    exported = next(sessions[i] for i in range(len(sessions)) if sessions[i].name == "exported")
    np.testing.assert_array_equal(exported.label, replayed)
    assert exported.click == tuple(case.seed_index)
    assert [s.kind for s in exported.steps] == ["mask", "point", "point"]


def test_the_session_is_ready_before_the_first_click(oblique_volume):
    """Choosing the inputs makes the session: the engine is loaded and given the volume on
    the worker, not on the main thread and not at the click."""
    from InteractiveVesselSegLib.logic import VesselSegLogic
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    logic = VesselSegLogic()
    logic.set_engine("recording")
    assert logic.session is None                         # no inputs yet
    logic.set_inputs(node, segmentation, segment)
    session = logic.session
    assert session is not None
    engine = session.engine                              # waits for the worker
    assert session.ready and engine.given_image_on is session.worker._thread
    logic.trace(oblique_volume.index_to_ras((1, 3, 4)))
    session.wait()
    assert logic.session is session and engine.received[0].kind == "point"
    logic.close()


def test_edits_made_with_other_tools_are_taken_up_not_written_over(oblique_volume, tmp_path):
    """Between two prompts the user paints with another tool (as Segment Editor writes): the
    next prompt starts from the edited segment, records it as a mask step, and undo of that
    prompt gives the edited segment back; the recording replays to the same mask."""
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.run(Point(oblique_volume.index_to_ras((1, 3, 4))))
    painted = session.writer.read()
    painted[4:6, 0:2, 0:2] = 1
    edit = session.writer._oriented(painted)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(edit, segmentation, segment, logic.MODE_REPLACE)
    session.run(Point(oblique_volume.index_to_ras((2, 7, 9))))
    assert [s.kind for s in session.sequence.steps] == ["point", "mask", "point"]
    after = segment_array(segmentation, segment)
    assert after[4:6, 0:2, 0:2].all() and after[2:7, 7:9, 9:11].all()
    assert after[1:6, 3:5, 4:6].all() and after.sum() == 20 + 8 + 20
    np.testing.assert_array_equal(session.engine.mask, after)
    session.undo()
    session.wait()
    np.testing.assert_array_equal(segment_array(segmentation, segment), painted)
    session.run(Point(oblique_volume.index_to_ras((3, 1, 1))))   # no edit: no mask step
    assert [s.kind for s in session.sequence.steps] == ["point", "mask", "point", "undo", "point"]
    recorded = recorder.load(segmentation, segment)
    replay = Annotation(session.annotation.volume, session.engine.__class__(), "vessel")
    for _ in replay.replay_steps(recorded, resolve_mask=lambda path: recorder.load_start_mask(
            segmentation, path)):
        pass
    np.testing.assert_array_equal(replay.mask, session.engine.mask)
    session.close()


def test_a_volume_the_engine_refuses_says_so_on_the_first_prompt(oblique_volume):
    """A NaN voxel is found on the worker when the session is prepared; the first prompt
    raises it by name and the segment keeps what it had."""
    from PromptEngines.errors import VolumeError
    array = oblique_volume.array.astype(np.float32)
    array[3, 4, 5] = np.nan
    scene = new_scene()
    node = add_volume(scene, array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.writer.write_all(np.ones(array.shape, np.uint8))
    with pytest.raises(VolumeError, match="NaN"):        # from the worker, or at once if ready
        session.submit(Point(oblique_volume.index_to_ras((1, 3, 4))))
        session.wait()
    assert session.ready
    with pytest.raises(VolumeError, match="NaN"):        # and on every prompt after it
        session.submit(Point(oblique_volume.index_to_ras((1, 3, 4))))
    assert segment_array(segmentation, segment).all()
    session.close()


def test_a_trace_next_to_another_segment_leaves_its_voxels_untouched(oblique_volume):
    """Finished work is safe: the session writes only its own segment's labelmap layer, even
    where the new mask and another segment overlap."""
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    other = segmentation.GetSegmentation().AddEmptySegment("finished", "finished")
    from InteractiveVesselSegLib.segment_writer import SegmentWriter
    finished = np.zeros(oblique_volume.shape, np.uint8)
    finished[1:4, 2:6, 3:7] = 1                    # overlaps where the point paints
    SegmentWriter(segmentation, other, node).write_all(finished)
    before = segment_array(segmentation, other)
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.run(Point(oblique_volume.index_to_ras((1, 3, 4))))
    assert segment_array(segmentation, segment)[1:6, 3:5, 4:6].all()
    np.testing.assert_array_equal(segment_array(segmentation, other), before)
    session.undo()
    session.wait()
    np.testing.assert_array_equal(segment_array(segmentation, other), before)
    session.close()


def test_edits_made_while_the_engine_works_wait_for_the_next_prompt(oblique_volume):
    """A prompt refused because the engine is busy does not take the edits up (they would
    be lost to the engine); the next accepted prompt does."""
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    session = SegmentationSession(node, segmentation, segment, "recording")
    session.submit(Point(oblique_volume.index_to_ras((1, 3, 4))))
    painted = np.zeros(oblique_volume.shape, np.uint8)
    painted[5, 0:2, 0:2] = 1
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(session.writer._oriented(painted), segmentation, segment,
                                     logic.MODE_MERGE_MAX)
    with pytest.raises(RuntimeError, match="still working"):
        session.submit(Point(oblique_volume.index_to_ras((2, 7, 9))))
    session.wait()
    session.run(Point(oblique_volume.index_to_ras((2, 7, 9))))
    assert [s.kind for s in session.sequence.steps] == ["point", "mask", "point"]
    final = segment_array(segmentation, segment)
    assert final[5, 0:2, 0:2].all() and final[1:6, 3:5, 4:6].all() and final[2:7, 7:9, 9:11].all()
    session.close()


def test_a_text_command_after_a_trace_is_the_correction_engines_step(oblique_volume, monkeypatch,
                                                                     request, tmp_path):
    """The chosen engine takes no text: the command goes to the correction engine, made on
    the worker, starting from the segment as the trace left it; the record names it."""
    import InteractiveVesselSegLib.logic as logic_module
    from InteractiveVesselSegLib.logic import VesselSegLogic
    from PromptEngines.registry import ENGINES
    request.addfinalizer(lambda: [ENGINES.pop(name, None) for name in ("fixer", "square")])

    @registered("fixer", {"point", "text"}, text_commands=("remove",))
    class Fixer(Engine):
        def _interact(self, prompt):
            self.made_on = threading.current_thread()
            mask = self._mask.copy()
            mask[tuple(int(round(c)) for c in prompt.position)] = 0
            yield self._final_update(mask, "removed a voxel")

    @registered("square", {"point"})
    class Square(Engine):
        def _interact(self, prompt):
            z, y, x = (int(round(c)) for c in prompt.position)
            mask = self._mask.copy()
            mask[z, y - 1:y + 2, x - 1:x + 2] = 1
            yield self._final_update(mask, "a square")

    monkeypatch.setattr(logic_module, "TEXT_ENGINE", "fixer")
    scene = new_scene()
    node = add_volume(scene, oblique_volume.array, oblique_volume.ijk_to_ras)
    segmentation, segment = add_segment(scene)
    logic = VesselSegLogic()
    logic.set_engine("square")
    logic.set_inputs(node, segmentation, segment)
    assert list(logic.engine_vocabulary()["text"]) == ["remove"]
    assert logic.text_unavailable() is None
    seed = oblique_volume.index_to_ras((3, 5, 6))
    logic.trace(seed)
    logic.session.wait()
    traced = logic.session.annotation.mask.copy()
    assert traced[3, 5, 6]
    logic.text_command("remove", seed)
    logic.session.wait()
    after = logic.session.annotation.mask
    assert not after[3, 5, 6] and after.sum() == traced.sum() - 1 == 8
    fixer = logic.session.annotation.engine
    assert fixer.name == "fixer" and fixer.made_on is logic.session.worker._thread
    record = logic.recorded().to_json()
    assert "engine" not in record["steps"][0] and record["steps"][1]["engine"] == "fixer"
    logic.export_prompts(tmp_path / "mixed.prompts.json")           # the file says it too
    exported = json.loads((tmp_path / "mixed.prompts.json").read_text())
    assert "engine" not in exported["steps"][0] and exported["steps"][1]["engine"] == "fixer"
    logic.close()
