"""The paper configuration loads official SAM ViT-b checkpoints (also ScribblePrompt-SAM's,
same layout) strictly; a file with wrong keys gets a clear error, in Python and on the CLI.
A randomly initialised SAM saved in the official layout stands in for the real file."""
import numpy as np
import pytest
import torch

from PromptEngines.backbones.sam import build_sam_vit_b
from PromptEngines.cli import main
from PromptEngines.errors import CheckpointError
from PromptEngines.tracer3d.engine import Tracer3DEngine
from PromptEngines.tracer3d.paper_model import SamTracer
from official_weights import fine_tune, save_random, with_renamed_key


@pytest.fixture(scope="module")
def official_layout(tmp_path_factory):
    return save_random(tmp_path_factory, build_sam_vit_b, "sam_vit_b_01ec64.pth")


def test_official_layout_loads_strictly_and_runs_at_256(official_layout):
    path, original = official_layout
    engine = Tracer3DEngine(weights=path, device="cpu")
    model = engine.model
    assert isinstance(model, SamTracer) and model.crop == 256
    loaded = model.sam.state_dict()
    for key, value in original.state_dict().items():
        if key != "image_encoder.pos_embed":
            assert torch.equal(loaded[key], value), key
    assert loaded["image_encoder.pos_embed"].shape == (1, 16, 16, 768)
    # One decode on a tile: SAM's low-res mask comes back at the tile's size.
    with torch.no_grad():
        crops = model.encode(torch.rand(1, 1, 256, 256))
        logits, confidence, bottleneck = model.decode(crops, torch.tensor([[100.0, 90.0]]),
                                                      torch.zeros(1, 1, 256, 256))
    assert logits.shape == (1, 1, 256, 256) and confidence.shape == (1,)
    assert bottleneck.shape == (1, 256, 16, 16)
    assert model.offset(bottleneck).abs().max() == 0          # untrained head: no movement


def test_wrong_keys_are_named(official_layout, tmp_path, capsys):
    path, _ = official_layout
    bad = with_renamed_key(path, "mask_decoder.iou_token.weight",
                           "mask_decoder.extra_token.weight", tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys: mask_decoder\.iou_token\.weight; "
                                              r"1 unexpected keys: mask_decoder\.extra_token\.weight"):
        Tracer3DEngine(weights=bad)
    not_sam = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, not_sam)
    with pytest.raises(CheckpointError, match="neither a tracer3d checkpoint nor a SAM"):
        Tracer3DEngine(weights=not_sam)
    # On the command line: one line, exit status 2.
    volume = tmp_path / "v.nrrd"
    import SimpleITK as sitk
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)), str(volume))
    assert main(["trace", str(volume), "--seed-ras", "0", "0", "0", "--out", str(tmp_path / "o.seg.nrrd"),
                 "--engine", "tracer3d", "--weights", str(bad)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "missing keys: mask_decoder.iou_token.weight" in error[0]


def test_decode_batches_tiles_as_sam_decodes_them_one_by_one(official_layout):
    """Each tile has its own prompt; the batched decode must equal SAM's own decoder run on
    one image and one prompt at a time (mask with the best predicted IoU)."""
    import torch.nn.functional as F

    model = Tracer3DEngine(weights=official_layout[0], device="cpu").model
    sam = model.sam
    torch.manual_seed(1)
    points = torch.tensor([[100.0, 90.0], [64.0, 200.0], [128.0, 128.0]])
    previous = torch.randn(3, 1, 256, 256)
    with torch.no_grad():
        crops = model.encode(torch.rand(3, 1, 256, 256))
        logits, confidence, _ = model.decode(crops, points, previous)
        chosen = []
        for k in range(3):
            sparse, dense = sam.prompt_encoder(
                points=(points[k:k + 1, None, [1, 0]], torch.ones(1, 1, dtype=torch.int64)),
                boxes=None, masks=F.interpolate(previous[k:k + 1], size=(64, 64), mode="bilinear"))
            low, iou = sam.mask_decoder(image_embeddings=crops[0][k:k + 1],
                                        image_pe=sam.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse,
                                        dense_prompt_embeddings=dense, multimask_output=True)
            best = int(iou[0].argmax())
            chosen.append(best)
            expected = F.interpolate(low[:, best:best + 1], size=(256, 256), mode="bilinear")
            torch.testing.assert_close(logits[k:k + 1], expected, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(confidence[k], iou[0, best], atol=1e-5, rtol=1e-5)
    assert logits.shape == (3, 1, 256, 256) and logits.std() > 0


def test_prompt_embeddings_are_sams_own(official_layout):
    # Ours skip SAM's boolean-mask writes (a GPU wait each) and must give the same values.
    model = Tracer3DEngine(weights=official_layout[0], device="cpu").model
    coords = torch.tensor([[[90.0, 100.0]], [[200.0, 64.0]]])
    labels = torch.ones(2, 1, dtype=torch.int64)
    for masks in (None, torch.randn(2, 1, 64, 64)):
        with torch.no_grad():
            ours = model.prompt_embeddings(coords, masks)
            sams = model.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=masks)
        for mine, theirs in zip(ours, sams):
            assert mine.shape == theirs.shape and torch.equal(mine, theirs)


def test_paper_config_refuses_a_training_crop_other_than_its_input():
    from PromptEngines.errors import IVSegError

    with pytest.raises(IVSegError, match="trains on 256-pixel crops .* not 64: set train.crop to 256"):
        SamTracer(image_size=256, crop=64)


def test_paper_config_training_starts_from_the_official_checkpoint(official_layout, tmp_path):
    from PromptEngines.data.datasets import SyntheticVessels
    from PromptEngines.tracer3d.train import Tracer3DTask, TrainOptions

    path, original = official_layout
    model = {"kind": "paper", "image_size": 256, "sam_checkpoint": str(path)}
    task = Tracer3DTask(SyntheticVessels(1), TrainOptions(crop=256), model=model, batch_size=1)
    built = task.build_model()
    loaded = built.sam.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in original.state_dict().items()
               if k != "image_encoder.pos_embed")
    assert "sam_checkpoint" not in task.model_config()          # the saved config stays portable
    extras = task.checkpoint_extras()["initial_weights"]
    assert extras["file"] == path.name and len(extras["sha256"]) == 64
    from PromptEngines.training.model_card import render
    card = render({"engine": "tracer3d", "config": {"kind": "paper"}, "model": {},
                   **task.checkpoint_extras()}, path)
    assert f"| started from | `{path.name}` (sha256 `{extras['sha256']}`) |" in card
    assert "| kept frozen | `sam.image_encoder`, `sam.prompt_encoder` |" in card
    state = torch.load(path, weights_only=True)
    state.pop("mask_decoder.iou_token.weight")
    bad = tmp_path / "short.pth"
    torch.save(state, bad)
    task.config["sam_checkpoint"] = str(bad)
    with pytest.raises(CheckpointError, match=r"missing keys: mask_decoder\.iou_token\.weight"):
        task.build_model()


def test_offset_features_know_where_the_prompt_is(official_layout):
    """The offset MLP (and L_global) work on the decoder's image features after attending to
    the prompt; SAM's image embedding is one per tile whatever the point, so it could not
    say which vessel of the tile is being traced."""
    model = Tracer3DEngine(weights=official_layout[0], device="cpu").model
    torch.manual_seed(2)
    with torch.no_grad():
        crops = model.encode(torch.rand(1, 1, 256, 256))
        near = model.decode(crops, torch.tensor([[70.0, 80.0]]))[2]
        far = model.decode(crops, torch.tensor([[190.0, 170.0]]))[2]
    assert near.shape == far.shape == (1, 256, 16, 16)
    assert not torch.equal(near, crops[0]) and (near - far).abs().max() > 1e-2


def test_fine_tuning_official_weights_trains_only_the_decoder_and_offset_mlp(official_layout,
                                                                            tmp_path):
    config = {"kind": "paper", "image_size": 256, "sam_checkpoint": str(official_layout[0])}
    _, changed = fine_tune(config, crop=256, jitter=64.0, out=tmp_path / "paper.pt")
    assert changed == {"sam.mask_decoder", "offset_head"}


def test_small_tiles_are_upsampled_to_sams_input_as_scribbleprompt_feeds_it(official_layout):
    """{"tile": T} < image_size: the tile is resized (bilinear) to SAM's input and the click
    scaled alike (ScribblePrompt-SAM's regime, 128-pixel images at 1024²; here 64 at 256);
    the mask comes back at the tile's size."""
    import torch.nn.functional as F

    from PromptEngines.backbones.sam import load_sam, sam_input

    model = SamTracer(image_size=256, tile=64, sam=load_sam(official_layout[0], 256)).eval()
    assert (model.crop, model.stride, model.config["tile"]) == (64, 32, 64)
    torch.manual_seed(3)
    tiles, previous = torch.rand(2, 1, 64, 64), torch.randn(2, 1, 64, 64)
    points = torch.tensor([[20.0, 30.0], [40.0, 12.0]])
    sam = model.sam
    with torch.no_grad():
        crops = model.encode(tiles)
        logits, confidence, _ = model.decode(crops, points, previous)
        upsampled = F.interpolate(tiles, size=(256, 256), mode="bilinear", align_corners=False)
        assert torch.equal(crops[0], sam.image_encoder(sam_input(upsampled)))
        for k in range(2):
            sparse, dense = sam.prompt_encoder(
                points=(points[k:k + 1, None, [1, 0]] * 4, torch.ones(1, 1, dtype=torch.int64)),
                boxes=None, masks=previous[k:k + 1])              # SAM's low-res size: 64
            low, iou = sam.mask_decoder(image_embeddings=crops[0][k:k + 1],
                                        image_pe=sam.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse,
                                        dense_prompt_embeddings=dense, multimask_output=True)
            best = int(iou[0].argmax())
            expected = F.interpolate(low[:, best:best + 1], size=(64, 64), mode="bilinear")
            torch.testing.assert_close(logits[k:k + 1], expected, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(confidence[k], iou[0, best], atol=1e-5, rtol=1e-5)
    assert logits.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("tile", [300, 62, 0])
def test_a_tile_sam_cannot_take_is_refused(tile):
    from PromptEngines.errors import IVSegError

    with pytest.raises(IVSegError, match=f"tile \\({tile} pixels\\) must be a multiple of 4 "
                                         "and at most its image_size \\(256\\)"):
        SamTracer(image_size=256, tile=tile)
