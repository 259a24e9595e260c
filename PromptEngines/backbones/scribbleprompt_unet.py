"""ScribblePrompt-UNet (Wong et al., ECCV 2024) as a slice backbone: tracer3d's second paper
configuration (the MIDL paper reports its method on this backbone too).

A plain UNet on 128² inputs of 5 channels: the image in [0, 1], a box mask, a positive and a
negative click/scribble map, and the previous prediction's logits. Four levels of one 3×3
convolution (192 channels) + PReLU with 2× max-pooling, a 192-channel bottleneck at 8×8,
bilinear upsampling (corners aligned) concatenated after the skip, one 3×3 convolution + PReLU
per level, and a 1×1 output convolution; no normalisation layers, 4.0 M parameters. Module
names follow the official checkpoint (`ScribblePrompt_unet_v1_nf192_res128.pt`, a plain state
dict), so it loads strictly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_strict, read_state_dict

INPUT_SIZE = 128
CHANNELS = ("image", "box", "positive", "negative", "previous logits")


def is_scribbleprompt_unet_state_dict(state: dict) -> bool:
    return "downs.0.conv.0.weight" in state and "final_conv.conv.0.weight" in state


class _Conv(nn.Module):
    """A convolution and, except for the output layer, a PReLU: keys `conv.0.*`, `conv.1.*`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, activation: bool = True):
        super().__init__()
        layers = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)]
        if activation:
            layers.append(nn.PReLU())
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.conv(x)


class ScribblePromptUNet(nn.Module):
    def __init__(self, width: int = 192, levels: int = 4, in_channels: int = len(CHANNELS)):
        super().__init__()
        self.downs = nn.ModuleList(_Conv(c_in, width, 3)
                                   for c_in in [in_channels] + [width] * (levels - 1))
        self.bottleneck = _Conv(width, width, 3)
        # Upsampling and convolution alternate, as in the official module list (ups.1, ups.3...).
        self.ups = nn.ModuleList()
        for _ in range(levels):
            self.ups.append(nn.UpsamplingBilinear2d(scale_factor=2))
            self.ups.append(_Conv(2 * width, width, 3))
        self.final_conv = _Conv(width, 1, 1, activation=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 5, 128, 128) -> logits (N, 1, 128, 128) and the bottleneck (N, 192, 8, 8)."""
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = bottleneck = self.bottleneck(x)
        for upsample, conv, skip in zip(self.ups[0::2], self.ups[1::2], reversed(skips)):
            x = conv(torch.cat([skip, upsample(x)], dim=1))
        return self.final_conv(x), bottleneck


def load_scribbleprompt_unet(path: str | Path, state: dict | None = None) -> ScribblePromptUNet:
    """The official checkpoint at `path` (or its `state`, already read), loaded strictly
    (wrong keys are named)."""
    unet = ScribblePromptUNet()
    load_strict(unet, read_state_dict(path) if state is None else state, Path(path).name)
    return unet
