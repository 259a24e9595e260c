"""multimodal's tiny configuration, Prompt Sequence Module, crops and training phases."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from PromptEngines.multimodal.correction import Step, paste, run_step, sequence_inputs
from PromptEngines.multimodal.crops import crop_origin, normalised
from PromptEngines.multimodal.psm import PSM_VARIANTS, PromptSequenceModule
from PromptEngines.multimodal.text import text_tokens
from PromptEngines.multimodal.tiny_model import TinyConfig, TinyMultimodal
from PromptEngines.multimodal.train import TrainOptions, train_only
from PromptEngines.prompts import TEXT_COMMANDS


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyMultimodal().eval()


def test_a_new_psm_passes_tokens_through_so_phase_one_sees_them_as_they_are():
    torch.manual_seed(0)
    points, texts = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    has_text = torch.tensor([[True, False, True], [False, False, False]])
    for variant in PSM_VARIANTS:
        psm = PromptSequenceModule(16, variant, heads=4)
        filled = torch.where(has_text[..., None], texts, psm.no_text)
        expected = {"none": torch.cat([points, filled], 1),
                    "lstm": points + filled,
                    "self_text": torch.cat([points, filled], 1),
                    "last_text": torch.cat([points, filled[:, -1:]], 1)}.get(variant)
        out = psm(points, texts, has_text)
        if variant == "cross":       # cross-attention is its only way to the text: live
            assert out.shape == points.shape and not torch.allclose(out, points)
        else:
            assert torch.allclose(out, expected, atol=1e-6), variant
    with pytest.raises(ValueError, match="unknown PSM variant 'gru'"):
        PromptSequenceModule(16, "gru")


def test_the_psm_aggregates_once_trained():
    """Non-zero outputs: in `last_text` every point token is changed by the last text."""
    torch.manual_seed(0)
    psm = PromptSequenceModule(16, "last_text", heads=4)
    for parameter in psm.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    points, texts = torch.randn(1, 2, 16), torch.randn(1, 2, 16)
    with_text = psm(points, texts, torch.tensor([[False, True]]))
    without = psm(points, texts, torch.tensor([[False, False]]))
    assert not torch.allclose(with_text[:, :2], without[:, :2])


def test_text_tokens_are_the_commands_rows_and_zero_without_text():
    table = torch.arange(10.0).reshape(5, 2)
    tokens, has_text = text_tokens(table, torch.tensor([[4, -1, 0]]))
    assert torch.equal(tokens[0], torch.tensor([[8.0, 9.0], [0.0, 0.0], [0.0, 1.0]]))
    assert has_text.tolist() == [[True, False, True]]


def test_tiny_model_shapes_and_the_text_changes_the_mask(model):
    torch.manual_seed(1)
    images = torch.rand(2, 1, 256, 256)
    points = torch.tensor([[[100.0, 120.0], [30.0, 40.0]], [[10.0, 20.0], [200.0, 200.0]]])
    labels = torch.tensor([[0, 1], [1, 1]])
    # The default PSM (last_text) reads the last step's text: the step being made.
    commands = torch.tensor([[-1, 3], [2, 0]])
    with torch.no_grad():
        features = model.encode(images)
        assert [tuple(f.shape) for f in features] == [(2, 64, 16, 16), (2, 16, 128, 128)]
        logits, iou = model.decode(features, points, labels, commands)
        assert logits.shape == (2, 1, 256, 256) and iou.shape == (2,)
        other, _ = model.decode(features, points, labels, torch.tensor([[-1, 4], [2, 1]]))
        earlier, _ = model.decode(features, points, labels, torch.tensor([[1, 3], [4, 0]]))
        prompt = torch.full((2, 1, 256, 256), -4.0)
        with_mask, _ = model.decode(features, points, labels, commands, prompt)
        commands = model.predict_command(features, points[:, :1], prompt)
    assert torch.isfinite(logits).all() and commands.shape == (2, len(TEXT_COMMANDS))
    assert (logits - other).abs().max() > 1e-4            # the command reaches the decoder
    assert torch.equal(logits, earlier)                   # earlier texts: not in last_text
    assert (logits - with_mask).abs().max() > 1e-4        # so does the mask prompt
    rows = model.command_table()
    assert rows.shape == (5, 64) and torch.cdist(rows, rows).fill_diagonal_(1).min() > 1e-3


def test_finer_image_tokens_keep_every_output_the_crops_size():
    """token_stride 4: 64 x 64 image tokens over the 256 crop, as the paper's SAM sees the
    crop upsampled to 1024 (16 there: the shipped weights' layout, unchanged)."""
    from PromptEngines.multimodal.tiny_parts import halvings

    torch.manual_seed(0)
    fine = TinyMultimodal(TinyConfig(token_stride=4)).eval()
    coarse = TinyMultimodal().eval()
    assert set(fine.state_dict()) == set(coarse.state_dict())      # the same parts, finer
    assert fine.config["token_stride"] == 4 and TinyConfig.from_dict(fine.config).token_stride == 4
    images, points = torch.rand(2, 1, 256, 256), torch.tensor([[[60.0, 70.0]], [[100.0, 9.0]]])
    with torch.no_grad():
        features = fine.encode(images)
        logits, iou = fine.decode(features, points, torch.ones(2, 1, dtype=torch.long),
                                  torch.tensor([[1], [-1]]), torch.zeros(2, 1, 256, 256))
        commands = fine.predict_command(features, points, torch.zeros(2, 1, 256, 256))
    assert features[0].shape == (2, 64, 64, 64) and features[1].shape == (2, 16, 128, 128)
    assert logits.shape == (2, 1, 256, 256) and iou.shape == (2,) and commands.shape == (2, 5)
    assert torch.isfinite(logits).all() and not torch.equal(logits[0], logits[1])
    with torch.no_grad():
        middle = TinyMultimodal(TinyConfig(token_stride=8)).eval()
        features = middle.encode(images)
        logits, _ = middle.decode(features, points, torch.ones(2, 1, dtype=torch.long),
                                  torch.tensor([[1], [-1]]), torch.zeros(2, 1, 256, 256))
    assert features[0].shape == (2, 64, 32, 32) and logits.shape == (2, 1, 256, 256)
    assert halvings(8, 3) == [2, 2, 2] and halvings(2, 3) == [2, 1, 1]
    with pytest.raises(ValueError, match="token_stride must be 4, 8 or 16 crop pixels, not 12"):
        TinyMultimodal(TinyConfig(token_stride=12))


def test_config_round_trips_and_bad_crops_are_refused():
    config = TinyConfig(psm="cross")
    assert TinyConfig.from_dict(TinyMultimodal(config).config) == config
    with pytest.raises(ValueError, match="multiple of 16"):
        TinyMultimodal(TinyConfig(crop=200))


def test_crops_stay_inside_the_slice_and_normalise_to_unit_range():
    assert crop_origin((5, 300), 256, (320, 320)) == (0, 64)
    assert crop_origin((100, 100), 256, (120, 80)) == (-28, -28)      # smaller: centred, padded
    crop = np.array([[0.0, 10.0], [20.0, 1000.0]])
    out = normalised(crop, np.array([[True, True], [True, False]]))
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() <= 1.0 and out[1, 1] == 0


def test_sequence_inputs_keep_the_steps_in_the_crop_in_crop_pixels():
    steps = [Step((10.0, 10.0), 0), Step((600.0, 600.0), 1), Step((100.0, 90.0), 4)]
    points, labels, commands = sequence_inputs(steps, (0, 0), 256)
    assert points.tolist() == [[[10.0, 10.0], [100.0, 90.0]]]
    assert commands.tolist() == [[0, 4]] and labels.tolist() == [[1, 1]]
    assert Step.text((1, 2), "remove") == Step((1, 2), 4, 1)


def test_a_step_changes_only_its_crop_and_repeats_bit_for_bit(model):
    rng = np.random.default_rng(0)
    image = rng.random((300, 420)).astype(np.float32)
    mask = rng.random((300, 420)) > 0.7
    steps = [Step((150.0, 400.0))]                      # a plain click: may add or take
    first, iou = run_step(model, image, mask, steps)
    again, _ = run_step(model, image, mask, steps)
    assert np.array_equal(first, again) and np.isfinite(iou)
    origin = crop_origin((150.0, 400.0), 256, image.shape)
    assert origin == (22, 164)
    outside = np.ones(mask.shape, bool)
    outside[22:278, 164:420] = False
    assert np.array_equal(first[outside], mask[outside])
    assert not np.array_equal(first[~outside], mask[~outside])


def test_paste_clips_a_crop_that_reaches_past_the_slice():
    slice_ = np.zeros((10, 10), np.uint8)
    crop = np.ones((16, 16), bool)
    valid = np.zeros((16, 16), bool)
    valid[3:, 3:] = True
    out = paste(slice_, crop, (-3, -3), valid)
    assert out.sum() == 100 and out.dtype == np.uint8


def test_each_phase_trains_its_own_parts(model):
    options = TrainOptions(phase_steps=(10, 12))
    assert [options.phase(s) for s in (0, 9, 10, 11, 12, 99)] == [1, 1, 2, 2, 3, 3]
    train_only(model, 1)
    assert trained_prefixes(model) == {
        "image_encoder.stem", "image_encoder.down", "prompt_encoder.labels",
        "prompt_encoder.no_mask", "prompt_encoder.mask_downscaling", "text_tower.embedding",
        "text_tower.mlp", "text_projection.weight", "text_projection.bias",
        "mask_decoder.output_tokens", "mask_decoder.transformer", "mask_decoder.output_upscaling",
        "mask_decoder.embedding_encoder", "mask_decoder.compress_early",
        "mask_decoder.embedding_maskfeature", "mask_decoder.hf_mlp", "mask_decoder.iou_head"}
    train_only(model, 2)
    assert trained_prefixes(model) == {"mask_decoder.cls_token", "mask_decoder.cls_head"}
    train_only(model, 3)
    assert trained_prefixes(model) == {
        "psm.no_text", "psm.attention", "mask_decoder.output_tokens", "mask_decoder.transformer",
        "mask_decoder.output_upscaling", "mask_decoder.embedding_encoder",
        "mask_decoder.compress_early", "mask_decoder.embedding_maskfeature",
        "mask_decoder.hf_mlp", "mask_decoder.iou_head"}
    # With tpp_trains "decoder" phase 2 trains the whole decoder, the encoders frozen.
    train_only(model, 2, "decoder")
    assert trained_prefixes(model) == {
        "mask_decoder.output_tokens", "mask_decoder.transformer", "mask_decoder.output_upscaling",
        "mask_decoder.embedding_encoder", "mask_decoder.compress_early",
        "mask_decoder.embedding_maskfeature", "mask_decoder.hf_mlp", "mask_decoder.iou_head",
        "mask_decoder.cls_token", "mask_decoder.cls_head"}
    train_only(model, 1)


def test_phase_two_options_are_checked_and_scale_only_its_learning_rate():
    from PromptEngines.errors import IVSegError
    from PromptEngines.multimodal.train import MultimodalTask

    with pytest.raises(IVSegError, match="tpp_trains must be one of cls, decoder, not 'all'"):
        TrainOptions(tpp_trains="all")
    for bad in ("4", 0, -1.0, float("nan"), True):
        with pytest.raises(IVSegError, match="tpp_lr_scale must be a number above 0"):
            TrainOptions(tpp_lr_scale=bad)
    task = MultimodalTask.__new__(MultimodalTask)          # lr_scale reads the options only
    task.options = TrainOptions(phase_steps=(10, 12), tpp_lr_scale=4.0)
    assert [task.lr_scale(s) for s in (9, 10, 11, 12)] == [1.0, 4.0, 4.0, 1.0]


def test_command_weights_draw_that_commands_defects_more_often_and_are_checked(monkeypatch):
    from PromptEngines.errors import IVSegError
    from PromptEngines.multimodal import samples
    from PromptEngines.multimodal.defects import DEFECT_KINDS
    from PromptEngines.multimodal.train import kind_chances

    drawn = []
    monkeypatch.setattr(samples, "make_defect", lambda kind, *_, **__: drawn.append(kind))

    def kinds(chances, count=3000):
        drawn.clear()
        rng, picture = np.random.default_rng(5), SimpleNamespace(truth=None, image=None)
        for _ in range(count):
            assert samples.one_defect_sample(picture, rng, 256, kind_chances=chances) is None
        return np.array([DEFECT_KINDS.index(k) for k in drawn])

    plain = kinds(None)                  # no weights: the draw of the first weights, exactly
    assert np.array_equal(plain, np.random.default_rng(5).integers(len(DEFECT_KINDS), size=3000))
    assert kind_chances({}) is None
    weighted = kinds(kind_chances({"extend": 3.0}))
    shares = np.bincount(weighted, minlength=len(DEFECT_KINDS)) / len(weighted)
    branch = DEFECT_KINDS.index("missing_branch")             # fixed by "extend"
    assert abs(shares[branch] - 3 / 7) < 0.03
    assert np.all(np.abs(np.delete(shares, branch) - 1 / 7) < 0.03)
    with pytest.raises(IVSegError, match="unknown name 'grow'; known: make thinner, make "
                                         "thicker, make a connection, extend, remove"):
        TrainOptions(command_weights={"grow": 2.0})
    for bad in (0, -1.0, float("inf"), "3", True):
        with pytest.raises(IVSegError, match="weight of 'extend' must be a number above 0"):
            TrainOptions(command_weights={"extend": bad})


def test_defect_weight_weighs_the_pixels_the_mask_has_wrong_and_is_checked():
    from PromptEngines.errors import IVSegError
    from PromptEngines.multimodal.train import defect_weights, mask_loss

    truth = torch.zeros(1, 1, 8, 8)
    truth[..., 2:6, 3] = 1.0
    mask = truth.clone()
    mask[..., 4:6, 3] = 0.0                          # two pixels of a branch missing
    batch = {"mask": mask, "truth": truth}
    assert defect_weights(batch, 0.0) is None         # plain BCE, as the paper
    weights = defect_weights(batch, 4.0)
    assert weights.shape == truth.shape and int((weights == 5.0).sum()) == 2
    assert torch.equal(weights[..., 4:6, 3], torch.full((1, 1, 2), 5.0))
    assert int((weights == 1.0).sum()) == 62
    logits = torch.zeros_like(truth)                 # every pixel's BCE is log 2
    plain, _ = mask_loss(logits, torch.zeros(1), truth)
    weighted, _ = mask_loss(logits, torch.zeros(1), truth, weights)
    assert torch.isclose(weighted, plain * (62 + 2 * 5) / 64)
    for bad in (-1.0, float("nan"), "4", True):
        with pytest.raises(IVSegError, match="defect_weight must be a number of 0 or more"):
            TrainOptions(defect_weight=bad)



def test_surround_weight_weighs_the_right_pixels_around_a_defect_and_is_checked():
    from PromptEngines.errors import IVSegError
    from PromptEngines.multimodal.train import SURROUND_PX, defect_weights

    size = 2 * SURROUND_PX + 12
    truth = torch.zeros(1, 1, size, size)
    truth[..., :, 5] = 1.0                           # a vessel down the picture
    mask = truth.clone()
    mask[..., 20:22, 5] = 0.0                        # two of its pixels missing
    batch = {"mask": mask, "truth": truth}
    weights = defect_weights(batch, 4.0, 2.0)
    assert torch.equal(weights[..., 20:22, 5], torch.full((1, 1, 2), 5.0))
    # right pixels within SURROUND_PX rows and columns of the defect: 3; beyond: 1
    assert float(weights[0, 0, 20 - SURROUND_PX, 5 + SURROUND_PX]) == 3.0
    assert float(weights[0, 0, 21 + SURROUND_PX, 0]) == 3.0
    assert float(weights[0, 0, 19 - SURROUND_PX, 5]) == 1.0
    assert float(weights[0, 0, 20, 6 + SURROUND_PX]) == 1.0
    around = (2 * SURROUND_PX + 2) * (SURROUND_PX + 6) - 2
    assert int((weights == 3.0).sum()) == around
    assert int((weights == 1.0).sum()) == size * size - around - 2
    assert torch.equal(defect_weights(batch, 4.0, 0.0), defect_weights(batch, 4.0))
    assert torch.equal(defect_weights(batch, 0.0, 2.0)[..., 20:22, 5], torch.ones(1, 1, 2))
    for bad in (-1.0, float("nan"), "4", True):
        with pytest.raises(IVSegError, match="surround_weight must be a number of 0 or more"):
            TrainOptions(surround_weight=bad)

def trained_prefixes(model) -> set:
    return {".".join(n.split(".")[:2]) for n, p in model.named_parameters() if p.requires_grad}


def test_training_the_command_predictor_leaves_every_mask_as_it_was(model):
    """Phase 2 trains the CLS token and head only; a decoded mask never sees them."""
    torch.manual_seed(3)
    images, points = torch.rand(1, 1, 256, 256), torch.tensor([[[60.0, 70.0]]])
    labels, commands = torch.ones(1, 1, dtype=torch.long), torch.tensor([[2]])
    with torch.no_grad():
        features = model.encode(images)
        before, _ = model.decode(features, points, labels, commands)
        classes = model.predict_command(features, points)
        model.mask_decoder.cls_token.weight.add_(1.0)
        model.mask_decoder.cls_head[0].weight.mul_(2.0)
        after, _ = model.decode(features, points, labels, commands)
        changed = model.predict_command(features, points)
    assert torch.equal(before, after) and not torch.allclose(classes, changed)


def test_an_ablation_starts_from_a_checkpoint_all_but_its_psm(tmp_path):
    """train.start_from: every parameter but the PSM's from the checkpoint (the ablations
    re-run phase 3 from the same weights); another model config is refused by name."""
    from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
    from PromptEngines.errors import IVSegError
    from PromptEngines.multimodal.train import start_from

    torch.manual_seed(1)
    trained = TinyMultimodal()
    path = tmp_path / "phase2.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "multimodal", "config": trained.config,
                "model": trained.state_dict()}, path)
    torch.manual_seed(2)
    variant = TinyMultimodal(TinyConfig(psm="lstm"))
    psm_before = {k: v.clone() for k, v in variant.psm.state_dict().items()}
    start_from(variant, str(path))
    ours, theirs = variant.state_dict(), trained.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if not k.startswith("psm."))
    assert all(torch.equal(variant.psm.state_dict()[k], v) for k, v in psm_before.items())
    with pytest.raises(IVSegError, match="differs from this run's"):
        start_from(TinyMultimodal(TinyConfig(depth=1)), str(path))
    older = {k: v for k, v in trained.config.items() if k != "token_stride"}
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "multimodal", "config": older,
                "model": trained.state_dict()}, path)        # written before token_stride
    start_from(TinyMultimodal(TinyConfig(psm="lstm")), str(path))
    with pytest.raises(IVSegError, match="differs from this run's"):
        start_from(TinyMultimodal(TinyConfig(token_stride=8)), str(path))


def test_a_step_keeps_only_the_changes_that_reach_its_point():
    """near_the_point: changes within REACH_PX of the point, and what connects to them (a
    rim along the vessel, a branch added whole), are kept; a change elsewhere in the crop
    is not."""
    from PromptEngines.multimodal.correction import REACH_PX, near_the_point

    before = np.zeros((64, 64), bool)
    before[30:34, :] = True                                   # a vessel across the crop
    after = before.copy()
    after[28:30, :] = True                                    # thicker along its whole length
    after[20:28, 5:8] = True                                  # a branch leaving the rim
    after[34:36, 22:26] = True                                # the other rim, near
    after[34:40, 50:53] = True                                # a branch elsewhere
    after[50:55, 50:55] = True                                # a blob far away
    after[31, 60:64] = False                                  # a nick far away
    kept = near_the_point(before, after, (29, 20))
    assert kept[28:30, :].all() and kept[20:28, 5:8].all()    # connected through the rim
    assert kept[34:36, 22:26].all() and not kept[34:40, 50:53].any()
    assert not kept[50:55, 50:55].any() and kept[31, 60:64].all()
    assert np.array_equal(near_the_point(before, before, (29, 20)), before)
    lonely = before.copy()
    lonely[10, 20] = True
    assert near_the_point(before, lonely, (10 + REACH_PX, 20))[10, 20]
    assert not near_the_point(before, lonely, (11 + REACH_PX, 20))[10, 20]


def test_a_step_does_only_what_its_command_means_and_thins_both_walls():
    """"make thinner" / "remove" only take pixels away and "make thicker" / "make a
    connection" / "extend" only add, whatever else the model drew; thinner and thicker reach
    the clicked vessel's far wall, beyond REACH_PX of a point on its near wall (a vessel
    drawn 20 pixels wide), but not another vessel as far away."""
    from PromptEngines.multimodal.correction import REACH_PX, near_the_point

    before = np.zeros((80, 80), bool)
    before[20:40, :] = True                      # a thick vessel across the crop: rows 20-39
    before[55:58, :] = True                      # another vessel below it
    after = before.copy()
    after[20:24, 10:50] = False                  # the near wall's rim thinned ...
    after[36:40, 10:50] = False                  # ... and the far wall's, 16 pixels away
    after[55:58, 10:50] = False                  # the other vessel wrongly taken away
    after[10:20, 30:33] = True                   # and a branch drawn at the near wall
    point = (21, 30)                             # on the near wall
    assert (36 - point[0]) > REACH_PX            # the far rim is beyond the window
    thinner = near_the_point(before, after, point, command="make thinner")
    assert not thinner[20:24, 10:50].any() and not thinner[36:40, 10:50].any()
    assert thinner[24:36].all() and thinner[55:58].all() and not thinner[10:20].any()
    # Without a command the far rim stays (not reached) and the branch is drawn.
    plain = near_the_point(before, after, point)
    assert plain[36:40, 10:50].all() and plain[10:20, 30:33].all()
    # "make thicker" adds the branch's pixels and takes nothing away.
    thicker = near_the_point(before, after, point, command="make thicker")
    assert thicker[10:20, 30:33].all() and np.array_equal(thicker & before, before)
    # "remove" takes away, near the point only; "extend" only adds.
    removed = near_the_point(before, after, point, command="remove")
    assert not removed[20:24, 10:50].any() and removed[36:40, 10:50].all()
    assert not removed[10:20].any()
    extended = near_the_point(before, after, point, command="extend")
    assert extended[10:20, 30:33].all() and extended[20:24, 10:50].all()


def test_a_connection_adds_one_bridge_at_the_point():
    """"make a connection": the added piece at the point joins the two pieces; another
    pixel the model adds near the point (on a neighbour's wall) is not kept."""
    from PromptEngines.multimodal.correction import near_the_point

    before = np.zeros((60, 60), bool)
    before[29:32, 0:26] = True
    before[29:32, 32:60] = True                  # a gap at columns 26-31
    before[20:23, 0:60] = True                   # a neighbour above
    bridged = before.copy()
    bridged[29:32, 26:32] = True                 # the bridge
    after = bridged.copy()
    after[23, 33] = True                         # a stray pixel on the neighbour's wall
    connected = near_the_point(before, after, (30, 28), command="make a connection")
    assert np.array_equal(connected, bridged)
