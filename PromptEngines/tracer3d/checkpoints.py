"""tracer3d's weights files: our checkpoints (tiny or a paper config, written by `ivseg
train`) or an official backbone's state dict, told apart by what the file holds."""
from __future__ import annotations

from pathlib import Path

import torch

from ..backbones.checkpoint import is_checkpoint, our_model, read_weights_file, state_dict_of
from ..backbones.sam import is_sam_state_dict, load_sam
from ..backbones.scribbleprompt_unet import (is_scribbleprompt_unet_state_dict,
                                             load_scribbleprompt_unet)
from ..errors import CheckpointError
from .build import build_tracer
from .descriptor import TRACER3D
from .paper_model import SamTracer
from .unet_model import UNetTracer

DEFAULT_WEIGHTS = TRACER3D.weights_path


def load_model(path: str | Path, device: str = "cpu", sam_image_size: int = 256):
    """Our checkpoint (tiny or a paper config), or an official state dict: SAM /
    ScribblePrompt-SAM ViT-b (the SAM paper configuration) or ScribblePrompt-UNet, with an
    untrained offset MLP (it starts at "no movement", so tracing falls back to
    confidence-guided refinement until trained)."""
    path = Path(path)
    loaded = read_weights_file(path)
    if is_checkpoint(loaded):
        model, checkpoint = our_model(loaded, path.name, TRACER3D.name, build_tracer)
    else:
        model = _official_model(state_dict_of(loaded, path.name), path, sam_image_size)
        checkpoint = {"config": model.config, "trace_options": {},
                      "note": "official weights; offset MLP untrained"}
    # Channels-last: the tiny decoder's small convolutions run about a fifth faster on CPU.
    model.eval().to(device, memory_format=torch.channels_last)
    return model, checkpoint


def _official_model(state: dict, path: Path, sam_image_size: int):
    if is_sam_state_dict(state):
        return SamTracer(sam_image_size, sam=load_sam(path, sam_image_size, state))
    if is_scribbleprompt_unet_state_dict(state):
        return UNetTracer(unet=load_scribbleprompt_unet(path, state))
    raise CheckpointError(f"{path.name} is neither a tracer3d checkpoint nor a SAM ViT-b or "
                          "ScribblePrompt-UNet state dict (no image_encoder.* or downs.* keys)")
