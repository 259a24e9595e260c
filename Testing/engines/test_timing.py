"""The speed harness: with the ground truth as the answer, a model without trained weights
still does the tracker's whole per-slice work along the true tree, so its time per slice
can be measured (the paper configuration when no official checkpoint is at hand)."""
import numpy as np
import torch

from PromptEngines.evaluation import metrics
from PromptEngines.tracer3d.normalise import normalised_volume
from PromptEngines.tracer3d.build import build_tracer
from PromptEngines.tracer3d.timing import OracleTracer, median_speed, speed


def untrained_model():
    torch.manual_seed(0)
    return build_tracer().eval()


def test_oracle_trace_follows_the_truth_with_the_models_work_per_slice(vessel_case):
    model = untrained_model()
    calls = {"decode": 0, "encode": 0}
    decode, encode = model.decode, model.encode

    def counted_decode(*args):
        calls["decode"] += 1
        return decode(*args)

    def counted_encode(tiles):
        calls["encode"] += tiles.shape[0]
        return encode(tiles)

    model.decode, model.encode = counted_decode, counted_encode
    case = vessel_case
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    tracer = OracleTracer(model, volume, case.label)
    mask = np.zeros(case.volume.shape, bool)
    results = list(tracer.trace(case.seed_index[1:], case.seed_index[0]))
    for result in results:
        mask[result.z, result.rows, result.cols] |= result.mask
    assert metrics.dice(mask, case.label) > 0.99
    assert metrics.cldice(mask, case.label) > 0.99
    assert metrics.fraction_on(mask, case.distractor) == 0.0
    # The model's work was done for every traced slice: a decode each (two with refinement),
    # and the tiles under them encoded.
    assert calls["decode"] >= 1.5 * len(results)
    assert calls["encode"] == tracer.tiles.encoded > 0


def test_speed_report_with_oracle_propagation():
    model = untrained_model()
    report = speed(model, shape=(40, 80, 80), seed=1100, oracle=True)
    assert report["propagation"] == "ground truth (oracle)" and report["calls"] == "plain calls"
    assert report["shape"] == [40, 80, 80]
    assert report["traced_slices"] >= 40               # the click's vessel runs through all z
    assert report["tiles_encoded"] > 0
    assert 0 < report["encode_s"] < report["total_s"]
    assert report["ms_per_slice"] == 1000 * report["total_s"] / report["traced_slices"]
    assert "encode" not in vars(model)                  # the timer is taken off again


def test_median_speed_reports_the_middle_run_and_every_run():
    report = median_speed(3, model=untrained_model(), shape=(40, 80, 80), seed=1100, oracle=True)
    runs = report["repeats_ms_per_slice"]
    assert len(runs) == 3 and runs == sorted(runs) and report["ms_per_slice"] == runs[1]
    assert report["traced_slices"] >= 40
