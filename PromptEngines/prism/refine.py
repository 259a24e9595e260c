"""PRISM's corrective refinement: a shallow network at half size on [image, the selected mask
binarised, every positive click so far, every negative click so far] predicts an error map
and a correction; the refined logits are error x correction + the mask's logits, back at full
size. It learns apart from the candidate network (its input mask is detached)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import TwoConv


class Refine(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.first_conv = nn.Conv3d(4, channels, 1)
        self.conv1 = TwoConv(channels, channels)
        self.conv2 = TwoConv(channels, channels)
        self.conv_error_map = nn.Conv3d(channels, 1, 1)
        self.conv_correction = nn.Conv3d(channels, 1, 1)

    @staticmethod
    def click_maps(shape, coords: torch.Tensor, labels: torch.Tensor):
        """Positive and negative click maps (B, 1, S, S, S) of all clicks so far (coords
        (B, N, 3) voxel indices; label 0 negative, any other positive)."""
        positive = torch.zeros(shape, device=coords.device)
        negative = torch.zeros(shape, device=coords.device)
        for b in range(shape[0]):
            for (z, y, x), label in zip(coords[b].long().tolist(), labels[b].tolist()):
                if label == -1:
                    continue
                (negative if label == 0 else positive)[b, 0, z, y, x] = 1.0
        return positive, negative

    def forward(self, image: torch.Tensor, logits: torch.Tensor, coords: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined logits and the error map, both (B, 1, S, S, S)."""
        logits = logits.detach()
        positive, negative = self.click_maps(image.shape, coords, labels)
        binary = (torch.sigmoid(logits) > 0.5).float()
        x = F.interpolate(torch.cat([image, binary, positive, negative], dim=1),
                          scale_factor=0.5, mode="trilinear")
        low = F.interpolate(logits, scale_factor=0.5, mode="trilinear")
        x = self.first_conv(x)
        x = x + self.conv1(x)
        x = x + self.conv2(x)
        error = self.conv_error_map(x)
        refined = error * self.conv_correction(x) + low
        up = dict(scale_factor=2, mode="trilinear")
        return F.interpolate(refined, **up), F.interpolate(error, **up)
