"""tracer3d on ScribblePrompt-UNet: the method's offset MLP on the UNet's bottleneck.

The UNet takes its prompts as input channels, so nothing of it runs ahead of the prompt: a
tile's "encoding" is the tile itself, clipped to [0, 1] and resized to the UNet's 128² (tiles
of `tile` slice pixels on a grid of half that, as for SAM), and each decode runs the whole
UNet (4 M parameters, about 35 GFLOPs at 128²; 150 ms on 2 CPU threads). The click goes in as
ScribblePrompt's one-hot positive map; box and negative maps stay empty; the previous slice's
logits fill the mask channel. The UNet has no IoU head: its confidence is the mean
probability inside its own mask, which gates refinement as SAM's predicted IoU does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.scribbleprompt_unet import INPUT_SIZE, ScribblePromptUNet
from ..errors import IVSegError
from .model import OffsetHead


class UNetTracer(nn.Module):
    # Frozen when fine-tuning official weights: the contracting half. (The MIDL paper trains
    # SAM's mask decoder only; for a UNet the expanding half is its counterpart.)
    PRETRAINED_KEPT = ("unet.downs",)

    def __init__(self, tile: int = INPUT_SIZE, max_offset: float = 8.0, crop: int | None = None,
                 unet: ScribblePromptUNet | None = None):
        super().__init__()
        if tile % 2 or tile <= 0:
            raise IVSegError(f"the ScribblePrompt-UNet configuration's tile ({tile} pixels) "
                             "must be even and positive")
        if crop not in (None, tile):
            raise IVSegError(f"the ScribblePrompt-UNet configuration trains on {tile}-pixel "
                             f"crops (its tile), not {crop}: set train.crop to {tile}")
        self.unet = unet if unet is not None else ScribblePromptUNet()
        self.crop, self.stride = tile, tile // 2
        self.offset_head = OffsetHead(self.unet.bottleneck.conv[0].out_channels, 128, max_offset)
        self.config = {"kind": "scribbleprompt_unet", "tile": tile, "max_offset": max_offset}

    def _to_input_size(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.shape[-1] == INPUT_SIZE:
            return maps
        return F.interpolate(maps, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                             align_corners=False)

    def encode(self, tiles: torch.Tensor) -> list[torch.Tensor]:
        """(N, 1, tile, tile) normalised tiles -> the UNet's image channel (N, 1, 128, 128)."""
        return [self._to_input_size(tiles.clamp(0.0, 1.0))]

    def decode(self, crops, points, previous_logits=None):
        """points (N, 2) (y, x) in tile pixels -> logits (N, 1, tile, tile), confidence (N,),
        bottleneck (N, 192, 8, 8)."""
        image = crops[0]
        size = image.shape[-1]
        # The click's pixel on the UNet's grid (pixel centres, as the resize maps them).
        pixel = torch.round((points + 0.5) * (size / self.crop) - 0.5).clamp(0, size - 1)
        rows, cols = pixel[:, 0, None, None], pixel[:, 1, None, None]
        grid = torch.arange(size, device=image.device, dtype=points.dtype)
        positive = ((grid[:, None] == rows) & (grid[None, :] == cols))[:, None].to(image.dtype)
        empty = torch.zeros_like(image)
        previous = empty if previous_logits is None else self._to_input_size(previous_logits)
        logits, bottleneck = self.unet(torch.cat([image, empty, positive, empty, previous], 1))
        if self.crop != size:
            logits = F.interpolate(logits, size=(self.crop, self.crop), mode="bilinear",
                                   align_corners=False)
        probability = torch.sigmoid(logits)
        inside = (probability > 0.5).to(probability.dtype)
        confidence = ((probability * inside).sum(dim=(1, 2, 3))
                      / inside.sum(dim=(1, 2, 3)).clamp_min(1.0))
        return logits, confidence, bottleneck

    def offset(self, bottleneck):
        return self.offset_head(bottleneck)
