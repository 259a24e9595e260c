"""Builders of tracer3d's models by config kind (as segment-anything's build_sam.py): the
tiny model, SAM ViT-b (the paper configuration) and ScribblePrompt-UNet."""
from __future__ import annotations

from torch import nn

from ..backbones.sam import SAM_IMAGE_SIZE, load_sam
from ..backbones.scribbleprompt_unet import load_scribbleprompt_unet
from ..errors import IVSegError
from .model import TinyConfig, TinyTracer
from .paper_model import SamTracer
from .unet_model import UNetTracer

# Config keys naming the official weights a model starts from (training only).
START_KEYS = ("sam_checkpoint", "unet_checkpoint")


def build_tracer(config: dict | None = None):
    """The tiny configuration (default), or a paper one: {"kind": "paper"} (SAM ViT-b) or
    {"kind": "scribbleprompt_unet"}. "sam_checkpoint" / "unet_checkpoint": PATH starts it
    from an official SAM or ScribblePrompt-SAM / ScribblePrompt-UNet checkpoint (loaded
    strictly); the built model's config never holds that path."""
    config = dict(config or {})
    kind = config.pop("kind", "tiny")
    if kind == "paper":
        start = config.pop("sam_checkpoint", None)      # fine-tune from official weights
        return SamTracer(**config, sam=load_sam(start, SAM_IMAGE_SIZE) if start else None)
    if kind == "scribbleprompt_unet":
        start = config.pop("unet_checkpoint", None)
        return UNetTracer(**config, unet=load_scribbleprompt_unet(start) if start else None)
    if kind != "tiny":
        raise IVSegError(f"unknown tracer3d model kind {kind!r}: tiny, paper or "
                         "scribbleprompt_unet")
    if "widths" in config:
        config["widths"] = tuple(config["widths"])
    return TinyTracer(TinyConfig(**config))


def freeze_pretrained(model) -> nn.Module:
    """Keep what the method keeps of official weights (the model's PRETRAINED_KEPT) out of
    training."""
    for name in model.PRETRAINED_KEPT:
        model.get_submodule(name).requires_grad_(False)
    return model
