"""The pixel fuser: each encoder level projected to the decoder's width, plus its sine
position and the mask & click encoding at that scale (the 3-channel click map through
strided convs: 1/2, 1/4, 1/8)."""
from __future__ import annotations

import torch
from torch import nn

from .config import VerseConfig
from .layers import sine_position


def _down(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=2, padding=1), nn.ReLU(),
                         nn.GroupNorm(32, outputs))


class MaskClickEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.down1 = _down(3, dim)
        self.down2 = _down(dim, dim)
        self.down3 = _down(dim, dim)

    def forward(self, click_map: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> encodings at 1/8, 1/4, 1/2."""
        half = self.down1(click_map)
        quarter = self.down2(half)
        return [self.down3(quarter), quarter, half]


class PixelFuser(nn.Module):
    def __init__(self, config: VerseConfig):
        super().__init__()
        dim = config.hidden_dim
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, dim, 1), nn.GroupNorm(32, dim))
            for channels in config.level_channels)
        for projection in self.input_proj:
            nn.init.xavier_uniform_(projection[0].weight)
            nn.init.zeros_(projection[0].bias)
        self.mask_downsamplelayer = MaskClickEncoder(dim)

    def forward(self, features: list[torch.Tensor], click_map: torch.Tensor):
        """Image features and the click map -> the decoder's pixel features, coarse first."""
        clicks = self.mask_downsamplelayer(click_map.float())
        fused = []
        for projection, x, c in zip(self.input_proj, features, clicks):
            b, _, h, w = x.shape
            position = sine_position(b, h, w, c.shape[1], device=x.device)
            fused.append(projection(x.float()) + position + c)
        return fused
