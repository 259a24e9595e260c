"""tracer3d with its embedded tiny weights, through the engine protocol."""
import numpy as np
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.registry import get_engine
from PromptEngines.errors import EngineError, PromptError
from PromptEngines.evaluation import metrics
from PromptEngines.prompts import Point
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS
from PromptEngines.tracer3d.engine import Tracer3DEngine

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")


@pytest.fixture(scope="module")
def case():
    return vessel_volume(1003)


@pytest.fixture
def engine(case):
    engine = get_engine("tracer3d", device="cpu")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    return engine


def test_one_click_traces_the_tree_slice_by_slice(engine, case):
    updates = list(engine.interact(Point(case.seed_index)))
    assert len(updates) > 30 and updates[-1].final and not any(u.final for u in updates[:-1])
    slices = [u.region[0].start for u in updates[:-1]]
    assert slices[0] == case.seed_index[0] and len(set(slices)) > 30
    assert all(u.patch.shape == tuple(s.stop - s.start for s in u.region) for u in updates)
    mask = engine.mask
    assert metrics.dice(mask, case.label) > 0.85
    assert metrics.cldice(mask, case.label) > 0.9
    assert metrics.fraction_on(mask, case.distractor) < 0.02
    assert metrics.components(mask) == 1


def test_same_click_same_mask_bit_for_bit(case):
    masks = []
    for _ in range(2):
        engine = Tracer3DEngine(device="cpu")
        engine.set_image(case.volume.array, case.volume.spacing_zyx)
        masks.append(engine.run(Point(case.seed_index)).copy())
    assert np.array_equal(masks[0], masks[1])


def test_every_trace_of_an_engine_encodes_and_decodes_with_one_pair_of_calls(case, monkeypatch):
    """On a GPU those calls replay CUDA graphs: captured as the engine loads (its warm-up
    encodes and decodes blank tiles) and replayed by every trace, not captured again."""
    from PromptEngines.tracer3d import engine as engine_module
    from PromptEngines.tracer3d.tracking import SliceCalls

    made, decodes, encodes = [], [], []

    def counting_calls(model, options, device):
        made.append(device)

        def decode(*args):
            decodes.append(len(made))
            return model.decode(*args)

        def encode(tiles):
            encodes.append(len(made))
            return model.encode(tiles)
        return SliceCalls(encode, decode)

    monkeypatch.setattr(engine_module, "slice_calls", counting_calls)
    engine = Tracer3DEngine(device="cpu")
    assert (len(encodes), len(decodes)) == (1, 2)          # the warm-up, with the same calls
    decodes.clear(), encodes.clear()
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    first = engine.run(Point(case.seed_index)).copy()
    decoded, encoded = len(decodes), len(encodes)
    engine.undo()
    second = engine.run(Point(case.seed_index))
    assert made == ["cpu"] and decoded > 100 and encoded > 10
    assert len(decodes) == 2 * decoded and len(encodes) == 2 * encoded
    assert np.array_equal(first, second) and first.any()


def test_cancel_keeps_the_traced_slices_and_undo_clears_them(engine, case):
    stream = engine.interact(Point(case.seed_index))
    taken = [next(stream) for _ in range(5)]
    stream.close()
    partial = engine.mask.copy()
    expected = np.zeros_like(partial)
    for update in taken:
        expected[update.region] = update.patch
    assert np.array_equal(partial, expected) and 0 < partial.sum() < case.label.sum()
    engine.undo()
    assert engine.mask.sum() == 0


def test_bad_clicks_are_refused_and_the_mask_kept(engine, case):
    engine.run(Point(case.seed_index))
    before = engine.mask.copy()
    background = tuple(np.argwhere(case.volume.array < 50)[len(case.volume.array) // 2])
    with pytest.raises(PromptError, match="no vessel at the seed"):
        engine.run(Point(background))
    with pytest.raises(PromptError, match="positive clicks"):
        engine.run(Point(case.seed_index, 0))
    with pytest.raises(PromptError, match="outside the image"):
        engine.run(Point((-3, 5, 5)))
    assert np.array_equal(engine.mask, before)


def test_2d_images_are_refused():
    with pytest.raises(EngineError, match="needs a 3D volume"):
        get_engine("tracer3d").set_image(np.zeros((1, 64, 64)), (1, 1, 1))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
def test_a_click_just_beside_a_vessel_snaps_onto_it_and_says_so():
    """A click 1.2 or 2 mm off the trunk's wall (in its slice, across the vessel) traces what
    a click on it traces, and the messages say the click moved; 4 mm off is refused as any
    click on tissue is."""
    case = vessel_volume(1000)
    spacing = np.asarray(case.volume.spacing_zyx)
    trunk = case.branches[0]
    k = len(trunk.points) // 2
    along = trunk.points[k + 1] - trunk.points[k - 1]
    across = np.array([0.0, -along[2], along[1]]) / np.hypot(along[1], along[2])   # mm, in-plane
    centre = trunk.points[k] / spacing
    engine = get_engine("tracer3d")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    on_vessel = engine.run(Point(tuple(centre))).copy()
    assert metrics.dice(on_vessel, case.label) > 0.9
    for gap_mm in (1.2, 2.0):
        click = centre + across * (trunk.radii[k] + gap_mm) / spacing
        engine.set_image(case.volume.array, case.volume.spacing_zyx)
        messages = [update.message for update in engine.interact(Point(tuple(click)))]
        assert all(m.startswith("click moved") for m in messages if m.startswith(("slice", "click", "traced")))
        assert "onto the nearest vessel" in messages[-1]
        assert metrics.dice(engine.mask, on_vessel) > 0.99
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    with pytest.raises(PromptError, match="no vessel at the seed"):
        engine.run(Point(tuple(centre + across * (trunk.radii[k] + 4.0) / spacing)))
    assert engine.mask.sum() == 0


def test_a_trace_beyond_a_known_mask_stops_where_it_reaches_it(engine, case):
    """multimodal's "extend": with the tree minus one branch taken as traced, a click on the
    branch traces the branch and stops at the tree (far fewer slices than a whole trace);
    a known mask of another shape is refused."""
    from PromptEngines.multimodal.defects import make_defect

    whole = engine.run(Point(case.seed_index)).copy()
    slices_whole = int(whole.any(axis=(1, 2)).sum())
    truth = case.label > 0
    defect = make_defect("missing_branch", truth, np.random.default_rng(0))
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    messages = [u.message for u in engine.trace_beyond(defect.point, defect.mask)]
    traced = engine.mask > 0
    assert (traced & defect.region).sum() >= 0.8 * defect.region.sum()
    # Beyond the known mask: the branch, not the tree again.
    assert (traced & defect.mask).sum() < 0.2 * (whole & defect.mask).sum()
    assert int(messages[-1].split()[-2]) < 0.6 * slices_whole
    with pytest.raises(PromptError, match="known mask's shape"):
        list(engine.trace_beyond(defect.point, defect.mask[1:]))
