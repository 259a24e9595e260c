"""verse's training task and benchmark arithmetic on a tiny scale: a batch of each mode gives
a finite loss whose gradients reach the parts that mode uses (object queries in Modes 1-2-2,
the persistent click encoders in both), nothing of one round's graph leaks into the next
round's prompt, batches are a function of the step alone, the held-out seeds are refused,
and the benchmark's Dice(n) / NoC count Mode 2's automatic start as 0 clicks."""
import numpy as np
import pytest
import torch

from PromptEngines.errors import IVSegError
from PromptEngines.verse.benchmark import rectangular_field_of_view, summarise
from PromptEngines.verse.train import TrainOptions, VerseTask, interaction_loss


@pytest.fixture(scope="module")
def task():
    return VerseTask(None, TrainOptions(cases=2, slices=(3, 3), sizes=(96,)), batch_size=2)


def gradients(model, batch) -> dict:
    torch.manual_seed(0)
    model.zero_grad()
    loss, metrics = interaction_loss(model, batch)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    predictor = model.sem_seg_head.predictor
    norm = lambda module: sum(float(p.grad.abs().sum()) for p in module.parameters()
                              if p.grad is not None)
    return {"objects": norm(predictor.query_feat), "sparse": norm(predictor.sparse_clicks),
            "semantic": norm(predictor.semantic_clicks), "mode": metrics["mode"]}


def test_each_mode_trains_the_parts_it_uses(task):
    model = task.build_model().train()
    batch = task.batch(0, 0, 1)
    automatic = gradients(model, {**batch, "auto": True})
    clicks = gradients(model, {**batch, "auto": False})
    assert automatic["mode"] == "1-2-2" and clicks["mode"] == "3"
    assert automatic["objects"] > 0 and clicks["objects"] == 0
    assert clicks["sparse"] > 0 and clicks["semantic"] > 0
    assert automatic["sparse"] > 0                  # the correction rounds use the clicks


def test_batches_are_a_function_of_the_step(task):
    a, b, c = task.batch(5, 0, 1), task.batch(5, 0, 1), task.batch(6, 0, 1)
    assert torch.equal(a["image"], b["image"]) and a["click_seed"] == b["click_seed"]
    assert not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (2, 1, 256, 256) and set(a["truth"].unique().tolist()) <= {0, 1}
    assert all(int(s) in (1, 2, 3) for s in a["structure"])


def test_automatic_batches_also_ask_for_structures_a_slice_lacks():
    """Below the RV's apex "RV" must give nothing: such samples come with an empty truth, in
    automatic batches only (a click needs something to click on)."""
    task = VerseTask(None, TrainOptions(cases=3, slices=(8, 8), sizes=(96,), absent_fraction=1.0),
                     batch_size=8)
    empty = {True: 0, False: 0}
    for step in range(12):
        batch = task.batch(step, 0, 1)
        for truth, structure in zip(batch["truth"], batch["structure"]):
            assert int(structure) in (1, 2, 3)
            empty[batch["auto"]] += int(not truth.any())
    assert empty[True] > 0 and empty[False] == 0
    quiet = VerseTask(None, TrainOptions(cases=3, slices=(8, 8), sizes=(96,), absent_fraction=0.0),
                      batch_size=8)
    assert all(t.any() for step in range(12) for t in quiet.batch(step, 0, 1)["truth"])


def test_held_out_seeds_are_never_trained_on():
    with pytest.raises(IVSegError, match="train.cases is at most 1000"):
        VerseTask(None, TrainOptions(cases=1001))


def test_noc_counts_the_automatic_start_as_zero_clicks():
    reached_at_start = [0.92] + [0.93] * 20
    reached_at_3 = [0.0, 0.5, 0.8, 0.86] + [0.91] * 17
    mode2 = summarise([reached_at_start, reached_at_3], counts_start=True)
    assert mode2["noc85"] == np.mean([0, 3]) and mode2["noc90"] == np.mean([0, 4])
    mode3 = summarise([reached_at_start, reached_at_3], counts_start=False)
    assert mode3["noc85"] == np.mean([1, 3])                 # index 0 is the empty start
    never = summarise([[0.5] * 21], counts_start=False)
    assert never["noc90"] == 20 and never["dice_1"] == 0.5 and never["sessions"] == 1


def test_a_rectangular_field_of_view_keeps_the_heart_and_moves_the_geometry():
    from PromptEngines.data.synthetic.cardiac import cardiac_volume

    stack = cardiac_volume(1003, slices=4, size=128)
    for seed in range(6):
        cut = rectangular_field_of_view(stack, np.random.default_rng(seed))
        shape = cut.labels.shape
        assert shape[0] == 4 and sorted(shape[1:])[1] == 128 and 0.7 * 128 <= min(shape[1:]) < 128
        assert (cut.labels > 0).sum() == (stack.labels > 0).sum()      # all of the heart
        rows = next(r for r in range(129 - shape[1])
                    if np.array_equal(stack.volume.array[:, r:r + shape[1]], cut.volume.array)
                    ) if shape[1] < 128 else 0
        cols = next(c for c in range(129 - shape[2])
                    if np.array_equal(stack.volume.array[:, :, c:c + shape[2]], cut.volume.array)
                    ) if shape[2] < 128 else 0
        np.testing.assert_allclose(cut.volume.index_to_ras((2, 5, 7)),
                                   stack.volume.index_to_ras((2, 5 + rows, 7 + cols)))


def test_a_shift_moves_the_slice_and_its_truth_together_and_fills_with_nothing():
    from PromptEngines.verse.train import _augment

    image = np.zeros((64, 64), np.float32)
    image[20:30, 30:44] = 1.0
    truth = image > 0
    options = TrainOptions(shift=1.0, flip=0.0, rot90=0.0, gamma=0.0, brightness=0.0)
    moves = set()
    for seed in range(8):
        moved, moved_truth = _augment(image, truth, truth, np.random.default_rng(seed),
                                      options)
        np.testing.assert_array_equal(moved > 0, moved_truth)
        rows, cols = np.nonzero(moved_truth)
        assert moved.sum() == 140 and moved.min() == 0.0     # whole, within reach (12 px)
        moves.add((int(rows[0]) - 20, int(cols[0]) - 30))
    assert len(moves) == 8 and all(abs(r) <= 13 and abs(c) <= 13 for r, c in moves)


def test_a_cut_field_of_view_pads_the_kept_band_centred_and_keeps_the_heart():
    """Training's rectangular field of view: one axis cut to 70-85 % around the heart, the
    kept band centred in the square as the engine pads such a slice, the rest 0; the truth
    moved with the image."""
    from PromptEngines.verse.field_of_view import cut_and_padded

    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 1.0, (100, 100)).astype(np.float32)
    heart = np.zeros((100, 100), bool)
    heart[30:60, 20:45] = True
    axes = set()
    for seed in range(10):
        cut, truth = cut_and_padded(image, heart, heart, np.random.default_rng(seed))
        assert truth.sum() == heart.sum()                          # the heart whole
        zero_rows, zero_cols = (cut == 0).all(axis=1), (cut == 0).all(axis=0)
        axis = 0 if zero_rows.any() else 1
        axes.add(axis)
        kept = np.flatnonzero(~(zero_rows if axis == 0 else zero_cols))
        assert 70 <= kept.size <= 85 and kept[0] == (100 - kept.size) // 2   # centred band
        first = next(f for f in range(101 - kept.size)
                     if np.array_equal(np.take(image, range(f, f + kept.size), axis),
                                       np.take(cut, kept, axis)))
        np.testing.assert_array_equal(np.take(truth, kept, axis),
                                      np.take(heart, range(first, first + kept.size), axis))
    assert axes == {0, 1}
    empty = np.zeros((100, 100), bool)
    same, _ = cut_and_padded(image, empty, empty, np.random.default_rng(0))
    assert same is image


def test_structure_weights_draw_a_structure_more_often_and_name_the_known_ones():
    plain = VerseTask(None, TrainOptions(cases=3, slices=(8, 8), sizes=(96,)), batch_size=8)
    assert plain.draw_chances is None                              # uniform, as before
    weighted = VerseTask(None, TrainOptions(cases=3, slices=(8, 8), sizes=(96,),
                                            structure_weights={"RV": 3.0}), batch_size=8)
    chances = weighted.draw_chances
    rv = np.array([value == 1 for _, _, value in weighted.samples])
    assert np.isclose(chances.sum(), 1.0)
    assert np.allclose(chances[rv], 3 * chances[~rv][0]) and np.allclose(chances[~rv],
                                                                          chances[~rv][0])
    with pytest.raises(IVSegError, match="unknown name 'Aorta'; known: RV, Myo, LV"):
        VerseTask(None, TrainOptions(cases=1, structure_weights={"Aorta": 2.0}))
    with pytest.raises(IVSegError, match="above 0"):
        VerseTask(None, TrainOptions(cases=1, structure_weights={"RV": 0.0}))


def test_the_benchmark_reports_mode1_on_square_and_rectangular_fields_of_view_apart():
    from PromptEngines.verse.benchmark import _by_field_of_view

    results = [{"slices": 0.9, "rectangular_fov": False}, {"slices": 0.7, "rectangular_fov": False},
               {"slices": 0.4, "rectangular_fov": True}]
    assert _by_field_of_view(results) == pytest.approx(
        {"slice_dice_square_fov": 0.8, "slice_dice_rectangular_fov": 0.4})
    assert _by_field_of_view(results[:2]) == pytest.approx({"slice_dice_square_fov": 0.8})
