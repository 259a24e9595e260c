"""SAM ViT-b as a slice backbone (the paper configurations of tracer3d and multimodal).

Built from segment-anything's own modules, so official checkpoints (`sam_vit_b_01ec64.pth`,
ScribblePrompt's `ScribblePrompt_sam_v1_vit_b_res128.pt`: plain state dicts in SAM's key
layout) load strictly. The model is built at 1024², loaded, then optionally moved to a smaller
input (256²): the absolute position embedding is interpolated bicubically to the new token
grid, the prompt encoder's sizes follow, and the relative position tables interpolate
themselves inside SAM's attention.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import load_strict, read_state_dict

SAM_IMAGE_SIZE = 1024
PATCH = 16
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def build_sam_vit_b():
    from segment_anything import sam_model_registry

    return sam_model_registry["vit_b"](checkpoint=None)


def is_sam_state_dict(state: dict) -> bool:
    return any(k.startswith("image_encoder.patch_embed") for k in state)


def load_sam(path: str | Path, image_size: int = 256, state: dict | None = None):
    """An official SAM / ScribblePrompt-SAM ViT-b checkpoint, loaded strictly, then resized.
    `state`: the file's state dict when already read."""
    sam = build_sam_vit_b()
    load_strict(sam, read_state_dict(path) if state is None else state, Path(path).name)
    return resize_sam(sam, image_size)


def resize_sam(sam, image_size: int):
    """Run SAM at `image_size`² (a multiple of 16): interpolate the position embedding."""
    if image_size % PATCH:
        raise ValueError("SAM's input size must be a multiple of 16")
    tokens = image_size // PATCH
    encoder = sam.image_encoder
    if encoder.pos_embed is not None and encoder.pos_embed.shape[1] != tokens:
        grid = encoder.pos_embed.data.permute(0, 3, 1, 2)            # (1, C, 64, 64)
        resized = F.interpolate(grid, size=(tokens, tokens), mode="bicubic",
                                align_corners=False)
        encoder.pos_embed = torch.nn.Parameter(resized.permute(0, 2, 3, 1).contiguous())
    encoder.img_size = image_size
    sam.prompt_encoder.image_embedding_size = (tokens, tokens)
    sam.prompt_encoder.input_image_size = (image_size, image_size)
    sam.image_encoder_size = image_size
    return sam


def sam_input(slices: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Normalised grey slices (N, 1, S, S), ~[0, 1] -> SAM's 3-channel standardised input, as
    ScribblePrompt feeds it (clipped to [0, 1], resized bilinearly to `size`² if given, ×255,
    SAM mean/std)."""
    grey = slices.clamp(0.0, 1.0)
    if size is not None and grey.shape[-1] != size:
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    scaled = grey * 255.0
    # Channel by channel with Python numbers: tensors of SAM's mean and std would be copied
    # to the GPU at every call, each copy waiting for it.
    return torch.cat([(scaled - mean) / std for mean, std in zip(PIXEL_MEAN, PIXEL_STD)], dim=1)


def mlp(width: int, hidden: int, out: int, layers: int = 3) -> torch.nn.Sequential:
    """SAM's MLP (its IoU head, hypernetworks): `layers` Linear layers with ReLU between."""
    sizes = [width] + [hidden] * (layers - 1) + [out]
    parts: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        parts += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < layers - 1 else [])
    return torch.nn.Sequential(*parts)
