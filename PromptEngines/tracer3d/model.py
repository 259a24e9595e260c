"""tracer3d's networks: a promptable 2D slice segmenter and the offset MLP.

The slice segmenter follows SAM's split: an image encoder that never sees a prompt (so all
slices of a volume are encoded in batches before tracing), a prompt encoder (the clicked
point as a Gaussian heatmap plus the previous slice's mask logits, as dense embeddings added
to the image features, like SAM's dense prompt path), and a light mask decoder run on a
crop around the point. The decoder's bottleneck features of slice i-1 feed the offset MLP,
which predicts where the vessel's centre moves on slice i (Zhang, Yu, Xue, MIDL 2026).

The tiny configuration is small enough to train on 2 CPU cores from our synthetic data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinyConfig:
    widths: tuple[int, int, int] = (8, 24, 48)   # full, 1/2, 1/4 resolution
    crop: int = 64                               # decoder window (pixels, multiple of 4)
    heatmap_sigma: float = 2.0                   # point prompt spread (pixels)
    max_offset: float = 8.0                      # offset MLP range (pixels per slice)
    offset_hidden: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.GELU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.GELU())


class ImageEncoder(nn.Module):
    """Three-scale CNN features of a normalised slice; prompt-independent."""

    def __init__(self, widths):
        super().__init__()
        w1, w2, w3 = widths
        self.stage1 = conv_block(1, w1)
        self.stage2 = conv_block(w1, w2)
        self.stage3 = conv_block(w2, w3)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stage1(image)
        f2 = self.stage2(F.max_pool2d(f1, 2))
        f3 = self.stage3(F.max_pool2d(f2, 2))
        return [f1, f2, f3]


class PromptEncoder(nn.Module):
    """Point heatmap + previous-slice logits -> a dense embedding at 1/4 resolution."""

    def __init__(self, width: int, sigma: float):
        super().__init__()
        self.sigma = sigma
        self.embed = nn.Sequential(
            nn.Conv2d(2, 16, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(16, width, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(width, width, 1))
        self.no_mask = nn.Parameter(torch.zeros(1, 1, 1, 1))   # learned stand-in for "none"

    def heatmap(self, points: torch.Tensor, size: int) -> torch.Tensor:
        """Gaussian bump at each (y, x) point; differentiable in the point, so the
        segmentation loss trains the offset MLP through it."""
        grid = torch.arange(size, dtype=points.dtype, device=points.device)
        dy = (grid[None, :] - points[:, :1]) ** 2
        dx = (grid[None, :] - points[:, 1:]) ** 2
        return torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * self.sigma ** 2))[:, None]

    def forward(self, points, previous_logits, size: int) -> torch.Tensor:
        heat = self.heatmap(points, size)
        if previous_logits is None:
            previous = self.no_mask.expand(points.shape[0], 1, size, size)
        else:
            previous = torch.tanh(previous_logits / 4.0)        # bounded, keeps the sign
        return self.embed(torch.cat([heat, previous], dim=1))


class MaskDecoder(nn.Module):
    """Fuse prompt and image features at 1/4, upsample with skips to a full-resolution mask;
    a confidence head predicts the mask's IoU (as SAM's IoU head does)."""

    def __init__(self, widths):
        super().__init__()
        w1, w2, w3 = widths
        self.bottleneck = conv_block(w3, w3)
        self.up2 = conv_block(w3 + w2, w2)
        self.up1 = conv_block(w2 + w1, w1)
        self.to_logits = nn.Conv2d(w1, 1, 1)
        self.confidence = nn.Sequential(nn.Linear(w3, 32), nn.GELU(), nn.Linear(32, 1))

    def forward(self, features, prompt_embedding):
        f1, f2, f3 = features
        bottleneck = self.bottleneck(f3 + prompt_embedding)
        x = F.interpolate(bottleneck, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.up2(torch.cat([x, f2], dim=1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.up1(torch.cat([x, f1], dim=1))
        confidence = torch.sigmoid(self.confidence(bottleneck.mean(dim=(2, 3))))[:, 0]
        return self.to_logits(x), confidence, bottleneck


class OffsetHead(nn.Module):
    """Net_offset: bottleneck features of slice i-1 -> displacement (dy, dx) of the vessel
    centre on slice i, in pixels, bounded by `max_offset`."""

    def __init__(self, width: int, hidden: int, max_offset: float):
        super().__init__()
        self.max_offset = max_offset
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(width * 16, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2))
        nn.init.zeros_(self.mlp[-1].weight)       # start as "no movement"
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(bottleneck, 4)
        return self.max_offset * torch.tanh(self.mlp(pooled))


class TinyTracer(nn.Module):
    """The tiny configuration: encoder, prompt encoder, mask decoder and offset MLP."""

    stride = 16          # tile grid: a point is at most 8 px off a tile's centre (training jitter)

    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        if config.crop % 4:
            raise ValueError("the crop must be a multiple of 4")
        self.config = config.to_dict() | {"kind": "tiny"}
        self.crop = config.crop
        self.image_encoder = ImageEncoder(config.widths)
        self.prompt_encoder = PromptEncoder(config.widths[2], config.heatmap_sigma)
        self.mask_decoder = MaskDecoder(config.widths)
        self.offset_head = OffsetHead(config.widths[2], config.offset_hidden, config.max_offset)

    def encode(self, tiles: torch.Tensor) -> list[torch.Tensor]:
        """(N, 1, S, S) normalised tiles -> their three feature maps (prompt-independent)."""
        return self.image_encoder(tiles)

    def decode(self, feature_crops, points, previous_logits=None):
        """points: (K, 2) (y, x) in crop pixels -> logits (K,1,S,S), confidence, bottleneck."""
        embedding = self.prompt_encoder(points, previous_logits, self.crop)
        return self.mask_decoder(feature_crops, embedding)

    def offset(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.offset_head(bottleneck)
