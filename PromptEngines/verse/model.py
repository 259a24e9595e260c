"""VerSe as one module in the reference's layout (`backbone`, `sem_seg_head.pixel_decoder`,
`sem_seg_head.predictor`), and the two calls an interaction makes: encode a slice's image
once, then decode it with a structure, clicks, a previous result or all three."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .clicks import click_map
from .config import VerseConfig
from .decoder import QueryDecoder
from .pixel_fuser import PixelFuser
from .utnet import UTNetEncoder


class Head(nn.Module):
    def __init__(self, config: VerseConfig):
        super().__init__()
        self.pixel_decoder = PixelFuser(config)
        self.predictor = QueryDecoder(config)


class Verse(nn.Module):
    def __init__(self, config: VerseConfig):
        super().__init__()
        self.config = config
        self.backbone = UTNetEncoder(config)
        self.sem_seg_head = Head(config)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std), persistent=False)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Slices (B, 1, S, S) scaled to [0, 1] -> UTNet features at 1/8, 1/4, 1/2 (computed
        once per slice: clicks do not change them)."""
        image = image.expand(-1, self.config.in_channels, -1, -1)
        return self.backbone((image - self.pixel_mean) / self.pixel_std)

    def decode(self, features: list[torch.Tensor], structure: torch.Tensor | None = None,
               points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               previous: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each decoder layer's logits (B, 1, h, w), the last the answer. `structure` (B,)
        1-based class indices; `points` (B, K, 2) (row, col) pixels of the S^2 slice with
        `labels` (B, K) (1, 0, -1 for none); `previous` (B, 1, S, S) the last result's
        probability (the click map's third channel; Mode 2's first attention mask)."""
        b, size = features[0].shape[0], self.config.image_size
        device = features[0].device
        if points is None:
            points = torch.zeros(b, 0, 2, dtype=torch.long, device=device)
            labels = torch.zeros(b, 0, dtype=torch.long, device=device)
        prior = previous if previous is not None else torch.zeros(b, 1, size, size,
                                                                   device=device)
        fused = self.sem_seg_head.pixel_decoder(features, click_map(points, labels, prior, size))
        return self.sem_seg_head.predictor(fused, structure, points, labels, previous)

    def forward(self, image: torch.Tensor, structure=None, points=None, labels=None,
                previous=None) -> list[torch.Tensor]:
        return self.decode(self.encode(image), structure, points, labels, previous)

    def full_size(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits at the slice's S^2 (bilinear, as the reference)."""
        size = self.config.image_size
        return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def build_model(config: VerseConfig) -> nn.Module:
    """VerSe, or the benchmark's SAM-style baseline (same calls: encode, decode, full_size)."""
    if config.architecture == "sam-style":
        from .sam_style import SamStyle       # segment-anything: loaded for the baseline only

        return SamStyle(config)
    return Verse(config)
