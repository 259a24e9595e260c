"""multimodal's paper configuration loads the official SAM-HQ ViT-b and open_clip ViT-B-32
files strictly; a file with wrong keys, or the wrong file, gets a clear error. Randomly
initialised models saved in the official key layouts stand in for the real files. The
decoder is SAM-HQ's own (same logits as its stock decoder, image by image), batched."""
import pytest
import torch
import torch.nn.functional as F

from PromptEngines.errors import CheckpointError
from PromptEngines.multimodal.paper_model import (HQ_PARTS, PaperMultimodal, build_clip,
                                                   build_sam_hq_vit_b, command_embeddings,
                                                   load_clip)
from PromptEngines.multimodal.psm import PSM_VARIANTS, PromptSequenceModule
from PromptEngines.prompts import TEXT_COMMANDS
from official_weights import save_random, with_renamed_key

SIZE = 256           # SAM's input in these tests (the crop, unscaled): fast on a CPU


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sam_hq_file(tmp_path_factory):
    return save_random(tmp_path_factory, build_sam_hq_vit_b, "sam_hq_vit_b.pth")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return save_random(tmp_path_factory, build_clip, "open_clip_pytorch_model.bin")


@pytest.fixture(scope="module")
def model(sam_hq_file, clip_file):
    torch.manual_seed(1)
    return PaperMultimodal(sam_hq_checkpoint=sam_hq_file[0], clip_checkpoint=clip_file[0],
                           image_size=SIZE).eval()


@pytest.fixture(scope="module")
def features(model):
    torch.manual_seed(2)
    with torch.no_grad():
        return model.encode(torch.rand(2, 1, 256, 256))


POINTS = torch.tensor([[[100.0, 90.0], [30.0, 200.0], [128.0, 5.0]],
                       [[10.0, 10.0], [50.0, 60.0], [70.0, 80.0]]])
LABELS = torch.tensor([[1, 0, 1], [1, 1, 0]])
COMMANDS = torch.tensor([[0, -1, 3], [-1, -1, 4]])


def test_official_layouts_load_strictly(model, sam_hq_file, clip_file):
    _, sam = sam_hq_file
    _, clip = clip_file
    official = sam.state_dict()
    assert len(official) == 339 and len(clip.state_dict()) == 302
    assert sum(any(part in k for part in HQ_PARTS) for k in official) == 25
    loaded = model.sam.state_dict()
    assert loaded.keys() == official.keys()
    for key, value in official.items():
        if key != "image_encoder.pos_embed":
            assert torch.equal(loaded[key], value), key
    assert loaded["image_encoder.pos_embed"].shape == (1, SIZE // 16, SIZE // 16, 768)
    assert torch.equal(loaded["mask_decoder.hf_token.weight"],
                       official["mask_decoder.hf_token.weight"])
    # The text tower is dropped after giving its five embeddings: those of the saved CLIP.
    assert not any("token_embedding" in k or k.startswith("visual") for k in model.state_dict())
    assert torch.equal(model.command_embeddings, command_embeddings(clip))
    fresh = build_clip()
    key = "transformer.resblocks.0.attn.in_proj_weight"
    assert not torch.equal(fresh.state_dict()[key], clip.state_dict()[key])
    load_clip(fresh, clip_file[0])
    assert torch.equal(fresh.state_dict()[key], clip.state_dict()[key])
    # Frozen parts and the portable config.
    assert model.config == {"kind": "paper", "psm": "last_text", "image_size": SIZE,
                            "quick_gelu": False}
    assert all(p.requires_grad for p in model.parameters())       # freezing is the trainer's
    assert not any(name.startswith("command_embeddings") for name, _ in model.named_parameters())
    for name in model.PRETRAINED_KEPT:
        model.get_submodule(name)


def test_wrong_keys_and_wrong_files_are_named(sam_hq_file, clip_file, tmp_path):
    bad = with_renamed_key(sam_hq_file[0], "mask_decoder.hf_token.weight",
                           "mask_decoder.hq_token.weight", tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"renamed\.pth does not match Sam: "
                                              r"1 missing keys: mask_decoder\.hf_token\.weight; "
                                              r"1 unexpected keys: mask_decoder\.hq_token\.weight"):
        PaperMultimodal(sam_hq_checkpoint=bad, image_size=SIZE)
    state = torch.load(sam_hq_file[0], weights_only=True)
    plain_sam = tmp_path / "sam_vit_b_01ec64.pth"         # SAM's layout: no HQ parts
    torch.save({k: v for k, v in state.items() if not any(p in k for p in HQ_PARTS)}, plain_sam)
    with pytest.raises(CheckpointError, match="SAM checkpoint without SAM-HQ's decoder"):
        PaperMultimodal(sam_hq_checkpoint=plain_sam, image_size=SIZE)
    with pytest.raises(CheckpointError, match="open_clip_pytorch_model.bin is a CLIP "
                                              "checkpoint, not a SAM-HQ ViT-b one"):
        PaperMultimodal(sam_hq_checkpoint=clip_file[0], image_size=SIZE)
    clip = build_clip()
    with pytest.raises(CheckpointError, match="sam_hq_vit_b.pth is a SAM checkpoint, "
                                              "not an open_clip ViT-B-32 one"):
        load_clip(clip, sam_hq_file[0])
    state = torch.load(clip_file[0], weights_only=True)
    state["text_proj"] = state.pop("text_projection")
    torch.save(state, tmp_path / "clip_renamed.bin")
    with pytest.raises(CheckpointError, match=r"1 missing keys: text_projection; "
                                              r"1 unexpected keys: text_proj$"):
        load_clip(clip, tmp_path / "clip_renamed.bin")
    with pytest.raises(CheckpointError, match="weights file not found"):
        PaperMultimodal(clip_checkpoint=tmp_path / "absent.bin", image_size=SIZE)


def test_encode_is_sam_hqs_encoder(model, features):
    from PromptEngines.backbones.sam import sam_input

    torch.manual_seed(2)
    images = torch.rand(2, 1, 256, 256)
    with torch.no_grad():
        embeddings, interm = model.sam.image_encoder(sam_input(images, SIZE))
    assert features[0].shape == (2, 256, 16, 16) and features[1].shape == (2, 16, 16, 768)
    assert torch.equal(features[0], embeddings) and torch.equal(features[1], interm[0])


def test_decode_batches_images_as_sam_hq_decodes_them_one_by_one(model, features):
    """Each image has its own K-step sequence; the batched decode equals SAM-HQ's stock
    decoder (hq_token_only) run on one image at a time with the same prompt tokens."""
    torch.manual_seed(3)
    mask = torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        logits, iou = model.decode(features, POINTS, LABELS, COMMANDS, mask)
        best_logits, best_iou = model.decode(features, POINTS, LABELS, COMMANDS, mask,
                                             multimask=True)
        prompt = model.sam.prompt_encoder
        for k in range(2):
            texts, has_text = model.text_tokens(COMMANDS[k:k + 1])
            sparse = model.psm(model._point_tokens(POINTS[k:k + 1], LABELS[k:k + 1]),
                               texts, has_text)
            # SAM's prompt encoder gives the same point and padding tokens.
            sams, dense = prompt(points=(POINTS[k:k + 1].flip(-1), LABELS[k:k + 1]), boxes=None,
                                 masks=F.interpolate(mask[k:k + 1], size=(64, 64),
                                                     mode="bilinear"))
            # (To rounding: SAM encodes them beside its padding point.)
            torch.testing.assert_close(sams[:, :3], model._point_tokens(POINTS[k:k + 1],
                                                                        LABELS[k:k + 1]))
            assert torch.equal(sams[:, 3:], model._padding(1))
            for multimask, (ours, our_iou) in ((False, (logits, iou)),
                                               (True, (best_logits, best_iou))):
                low, expected_iou = model.sam.mask_decoder(
                    features[0][k:k + 1], prompt.get_dense_pe(),
                    torch.cat([sparse, sams[:, 3:]], 1), dense, multimask_output=multimask,
                    hq_token_only=True, interm_embeddings=features[1][k:k + 1][None])
                expected = F.interpolate(low, size=(256, 256), mode="bilinear")
                torch.testing.assert_close(ours[k:k + 1], expected, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(our_iou[k], expected_iou[0, 0], atol=1e-5, rtol=1e-5)
    assert torch.equal(logits, best_logits) and not torch.equal(iou, best_iou)


def test_shapes_text_and_mask_paths(model, features):
    with torch.no_grad():
        logits, iou = model.decode(features, POINTS, LABELS, COMMANDS)
        with_mask, _ = model.decode(features, POINTS, LABELS, COMMANDS, torch.randn(2, 1, 256, 256))
        other, _ = model.decode(features, POINTS, LABELS, torch.tensor([[0, -1, 1], [-1, -1, 2]]))
        silent, _ = model.decode(features, POINTS, LABELS, torch.full((2, 3), -1))
        command = model.predict_command(features, POINTS[:, :1], torch.randn(2, 1, 256, 256))
        no_mask = model.predict_command(features, POINTS[:, :1], None)
        # One image, several prompt sets.
        shared, _ = model.decode([f[:1] for f in features], POINTS, LABELS, COMMANDS)
        first, _ = model.decode([f[:1] for f in features], POINTS[:1], LABELS[:1], COMMANDS[:1])
    assert logits.shape == with_mask.shape == (2, 1, 256, 256) and iou.shape == (2,)
    assert command.shape == no_mask.shape == (2, len(TEXT_COMMANDS))
    for tensor in (logits, iou, with_mask, command, no_mask):
        assert torch.isfinite(tensor).all()
    assert (logits - with_mask).abs().max() > 1e-4                  # the mask prompt is used
    assert (logits - other).abs().amax(dim=(1, 2, 3)).min() > 1e-4   # each image's last text
    assert (logits - silent).abs().amax(dim=(1, 2, 3)).min() > 1e-4
    assert (command - no_mask).abs().max() > 1e-5
    assert shared.shape == (2, 1, 256, 256)
    torch.testing.assert_close(shared[:1], first, atol=1e-5, rtol=1e-5)
    table = model.command_embeddings
    assert table.shape == (5, 512)
    assert torch.cdist(table, table)[~torch.eye(5, dtype=torch.bool)].min() > 1e-3


def test_every_psm_variant_decodes_and_a_config_rebuilds_the_model(model, features):
    with torch.no_grad():
        for variant in PSM_VARIANTS:
            model.psm, kept = PromptSequenceModule(model.dim, variant), model.psm
            try:
                logits, iou = model.decode(features, POINTS, LABELS, COMMANDS)
            finally:
                model.psm = kept
            assert logits.shape == (2, 1, 256, 256) and torch.isfinite(logits).all(), variant
    # Built by name (no official files: random weights, as training from scratch starts);
    # our checkpoint's config and state rebuild it, command embeddings included.
    torch.manual_seed(4)
    built = PaperMultimodal(psm="lstm", image_size=SIZE).eval()
    assert isinstance(built.psm.lstm, torch.nn.LSTM)
    config = dict(built.config)
    assert config.pop("kind") == "paper"
    rebuilt = PaperMultimodal(**config).eval()
    rebuilt.load_state_dict(built.state_dict(), strict=True)
    assert torch.equal(rebuilt.command_embeddings, built.command_embeddings)
    with torch.no_grad():
        expected, _ = built.decode(features, POINTS, LABELS, COMMANDS)
        again, _ = rebuilt.decode(features, POINTS, LABELS, COMMANDS)
    assert torch.equal(expected, again)


def test_each_training_phase_trains_the_papers_parts(model):
    """(1) image encoder + HQ decoder (+ the text Linear), (2) the TPP, (3) PSM + decoder."""
    from PromptEngines.multimodal.train import train_only

    def trained():
        return {".".join(n.split(".")[:2]) for n, p in model.named_parameters()
                if p.requires_grad}
    try:
        train_only(model, 1)
        assert trained() == {"sam.image_encoder", "sam.mask_decoder", "text_projection.weight",
                             "text_projection.bias"}
        train_only(model, 2)
        assert trained() == {"tpp_token.weight", "tpp_head.0", "tpp_head.2", "tpp_head.4"}
        train_only(model, 3)
        assert {"sam.mask_decoder", "psm.no_text"} <= trained() <= {
            "sam.mask_decoder", "psm.no_text", "psm.attention"}
    finally:
        model.requires_grad_(True)
