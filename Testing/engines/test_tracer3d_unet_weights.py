"""tracer3d on ScribblePrompt-UNet: the official checkpoint's layout loads strictly (a randomly
initialised UNet saved in that layout stands in for `ScribblePrompt_unet_v1_nf192_res128.pt`),
wrong keys are named, the decode feeds the UNet ScribblePrompt's five channels, fine-tuning
keeps the contracting half, and the tracker traces with it."""
import pytest
import torch
import torch.nn.functional as F

from PromptEngines.backbones.scribbleprompt_unet import ScribblePromptUNet
from PromptEngines.errors import CheckpointError, IVSegError
from PromptEngines.tracer3d.engine import Tracer3DEngine
from PromptEngines.tracer3d.build import build_tracer
from PromptEngines.tracer3d.unet_model import UNetTracer
from official_weights import fine_tune, save_random, with_renamed_key

# The official state dict's keys (ScribblePrompt's network.py: downs, ups with parameter-free
# upsampling at even places, bottleneck, final_conv; each convolution followed by a PReLU).
OFFICIAL_KEYS = sorted(
    [f"{block}.conv.{layer}.{name}"
     for block in [f"downs.{i}" for i in range(4)] + [f"ups.{i}" for i in (1, 3, 5, 7)]
     + ["bottleneck"]
     for layer, name in ((0, "weight"), (0, "bias"), (1, "weight"))]
    + ["final_conv.conv.0.weight", "final_conv.conv.0.bias"])


@pytest.fixture(scope="module")
def official_layout(tmp_path_factory):
    return save_random(tmp_path_factory, ScribblePromptUNet,
                       "ScribblePrompt_unet_v1_nf192_res128.pt")


def test_official_layout_keys_and_size(official_layout):
    _, unet = official_layout
    state = unet.state_dict()
    assert sorted(state) == OFFICIAL_KEYS
    assert state["downs.0.conv.0.weight"].shape == (192, 5, 3, 3)
    assert state["ups.1.conv.0.weight"].shape == (192, 384, 3, 3)
    assert state["final_conv.conv.0.weight"].shape == (1, 192, 1, 1)
    assert round(sum(v.numel() for v in state.values()) / 1e6, 1) == 4.0


def test_official_checkpoint_loads_strictly_and_wrong_keys_are_named(official_layout, tmp_path):
    path, original = official_layout
    model = Tracer3DEngine(weights=path, device="cpu").model
    assert isinstance(model, UNetTracer) and (model.crop, model.stride) == (128, 64)
    for key, value in original.state_dict().items():
        assert torch.equal(model.unet.state_dict()[key], value), key
    bad = with_renamed_key(path, "ups.1.conv.1.weight", "ups.1.conv.2.weight",
                           tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys: ups\.1\.conv\.1\.weight; "
                                              r"1 unexpected keys: ups\.1\.conv\.2\.weight"):
        Tracer3DEngine(weights=bad)


def test_decode_feeds_scribbleprompts_five_channels(official_layout):
    """Image in [0, 1], empty box, the click one-hot in the positive map, empty negative map,
    the previous logits; at tile 64 all of it resized to the UNet's 128² (the click to its
    pixel there) and the logits back to 64."""
    _, unet = official_layout
    model = UNetTracer(tile=64, unet=unet).eval()
    torch.manual_seed(1)
    tiles = torch.rand(2, 1, 64, 64) * 1.4 - 0.2                 # beyond [0, 1]: clipped
    previous = torch.randn(2, 1, 64, 64)
    points = torch.tensor([[10.0, 20.0], [33.4, 50.6]])
    with torch.no_grad():
        crops = model.encode(tiles)
        logits, confidence, bottleneck = model.decode(crops, points, previous)
        resize = lambda x: F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
        image = resize(tiles.clamp(0, 1))
        positive = torch.zeros(2, 1, 128, 128)
        positive[0, 0, 20, 40] = positive[1, 0, 67, 102] = 1      # (p + 0.5) * 2 - 0.5, rounded
        empty = torch.zeros_like(image)
        expected, expected_bottleneck = unet(torch.cat([image, empty, positive, empty,
                                                        resize(previous)], 1))
    assert torch.equal(crops[0], image)
    torch.testing.assert_close(logits, F.interpolate(expected, size=(64, 64), mode="bilinear",
                                                     align_corners=False))
    assert torch.equal(bottleneck, expected_bottleneck) and bottleneck.shape == (2, 192, 8, 8)
    probability = torch.sigmoid(logits)
    inside = probability > 0.5
    for k in range(2):
        mean_inside = probability[k][inside[k]].mean() if inside[k].any() else torch.tensor(0.0)
        torch.testing.assert_close(confidence[k], mean_inside)


def test_fine_tuning_official_weights_keeps_the_contracting_half(official_layout, tmp_path):
    config = {"kind": "scribbleprompt_unet", "unet_checkpoint": str(official_layout[0])}
    out = tmp_path / "unet.pt"
    task, changed = fine_tune(config, crop=128, jitter=32.0, out=out, batch_size=2)
    assert "unet_checkpoint" not in task.model_config()
    assert task.checkpoint_extras()["initial_weights"]["frozen"] == ["unet.downs"]
    assert changed == {"unet.ups", "unet.bottleneck", "unet.final_conv", "offset_head"}
    # The trained file loads back as this configuration.
    model = Tracer3DEngine(weights=out, device="cpu").model
    assert isinstance(model, UNetTracer) and model.config["tile"] == 128


def test_the_tracker_traces_with_it():
    from PromptEngines.tracer3d.timing import speed

    torch.manual_seed(0)
    model = build_tracer({"kind": "scribbleprompt_unet"}).eval()
    report = speed(model, shape=(12, 256, 256), oracle=True)
    assert report["traced_slices"] >= 12 and report["tiles_encoded"] > 0


def test_bad_configurations_are_named():
    with pytest.raises(IVSegError, match=r"tile \(63 pixels\) must be even"):
        UNetTracer(tile=63)
    with pytest.raises(IVSegError, match="trains on 128-pixel crops .* not 64"):
        UNetTracer(crop=64)
    with pytest.raises(IVSegError, match="unknown tracer3d model kind 'unet'"):
        build_tracer({"kind": "unet"})
