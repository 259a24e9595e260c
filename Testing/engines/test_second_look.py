"""The tracer's second look: which tentative additions are branches, and what it finds
with the embedded tiny model on a volume where the first pass misses a shallow branch."""
import numpy as np
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.evaluation import metrics
from PromptEngines.tracer3d.branches import keep_branches
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS, load_model
from PromptEngines.tracer3d.evaluate import trace_case
from PromptEngines.tracer3d.tracking import TraceOptions


def tube_scene():
    """A traced tube along z, and three candidate additions: a one-voxel shell around part
    of it, a branch leaving sideways, and a bright blob touching it."""
    shape = (40, 40, 40)
    volume = np.zeros(shape, np.float32)
    zz, yy, xx = np.indices(shape)
    traced = ((yy - 20) ** 2 + (xx - 12) ** 2 <= 9)
    volume[traced] = 0.9
    shell = ((yy - 20) ** 2 + (xx - 12) ** 2 <= 16) & ~traced & (zz < 10)
    branch = (np.abs(yy - 20) <= 2) & (np.abs(zz - 20) <= 2) & (xx < 30) & ~traced & (xx > 12)
    volume[branch] = 0.7                       # dimmer than its parent, as contrast falls
    blob = ((zz - 32) ** 2 + (yy - 20) ** 2 + (xx - 19) ** 2 <= 16) & ~traced
    volume[blob] = 1.6                         # marrow-bright
    return traced, volume, shell, branch, blob


def test_only_the_branch_is_kept():
    traced, volume, shell, branch, blob = tube_scene()
    kept = keep_branches(traced, shell | branch | blob, volume, TraceOptions())
    assert np.array_equal(kept, branch)


def test_a_bright_branch_is_kept_when_allowed_and_nothing_from_nothing():
    traced, volume, _, _, blob = tube_scene()
    assert not keep_branches(traced, blob, volume, TraceOptions()).any()
    assert np.array_equal(keep_branches(traced, blob, volume, TraceOptions(max_brighter=1.0)), blob)
    empty = np.zeros_like(traced)
    assert not keep_branches(traced, empty, volume, TraceOptions()).any()


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
def test_second_look_finds_the_branch_the_first_pass_missed():
    # Seed 2008: a development volume (neither training seeds 0-47 nor benchmark 1000-1009)
    # whose branch leaves its parent at a shallow angle.
    model, _ = load_model(DEFAULT_WEIGHTS)
    case = vessel_volume(2008)
    first, _ = trace_case(model, case, TraceOptions(second_look=False))
    both, _ = trace_case(model, case, TraceOptions())
    assert np.array_equal(both & first, first)              # adds, never takes away
    assert metrics.cldice(both, case.label) > metrics.cldice(first, case.label) + 0.1
    assert metrics.dice(both, case.label) > metrics.dice(first, case.label) + 0.05
    assert metrics.fraction_on(both, case.distractor) == 0.0
    assert metrics.components(both) == 1


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
def test_second_look_slices_come_last_and_are_marked():
    # The engine's progress message tells them apart ("branch kept by the second look").
    from PromptEngines.tracer3d.normalise import normalised_volume
    from PromptEngines.tracer3d.tracking import SliceTracer

    model, _ = load_model(DEFAULT_WEIGHTS)
    case = vessel_volume(2008)
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    results = list(SliceTracer(model, volume).trace(case.seed_index[1:], case.seed_index[0]))
    marked = [k for k, r in enumerate(results) if r.second_look]
    assert marked and marked == list(range(marked[0], len(results)))
    assert all(results[k].tracks == 0 and results[k].mask.any() for k in marked)
    assert not results[0].second_look


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no embedded weights")
def test_cancel_during_the_second_look_keeps_the_first_pass():
    """The engine reports each slice the second look tries (an empty, progress-only update),
    so Cancel takes effect there: the first pass stays, nothing tentative is shown, and one
    undo takes it all back."""
    from PromptEngines.prompts import Point
    from PromptEngines.tracer3d.engine import Tracer3DEngine

    case = vessel_volume(2008)
    first, _ = trace_case(load_model(DEFAULT_WEIGHTS)[0], case, TraceOptions(second_look=False))
    engine = Tracer3DEngine(device="cpu")
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    stream = engine.interact(Point(case.seed_index))
    seen = []
    for update in stream:
        seen.append(update)
        if update.message.startswith("second look: trying"):
            break
    stream.close()
    assert seen[-1].patch.size == 0 and not any(u.message.endswith("second look") for u in seen)
    assert np.array_equal(engine.mask.astype(bool), first)
    engine.undo()
    assert not engine.mask.any()
    # Left to run, the same stream shape ends with the kept branch after the heartbeats.
    engine.run(Point(case.seed_index))
    both, _ = trace_case(load_model(DEFAULT_WEIGHTS)[0], case, TraceOptions())
    assert np.array_equal(engine.mask.astype(bool), both)
