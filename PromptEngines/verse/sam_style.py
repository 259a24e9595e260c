"""The benchmark's points-only SAM-style baseline: segment-anything's own prompt encoder,
two-way transformer and mask decoder on a small convolutional image encoder (1/16, as SAM's
embedding), trained by `ivseg train --engine verse` on the same stacks with the same clicks
(its config file names `"architecture": "sam-style"`). Points are SAM's (x, y) pixel
coordinates; the previous result enters as SAM's low-resolution mask prompt, as in SAM's
iterative training. It takes clicks only: no structure queries."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VerseConfig

EMBEDDING_STRIDE = 16


def _conv(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU())


class SamStyle(nn.Module):
    def __init__(self, config: VerseConfig):
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

        super().__init__()
        self.config = config
        dim, base, size = config.hidden_dim, config.base_channels, config.image_size
        grid = size // EMBEDDING_STRIDE
        widths = (config.in_channels, base, 2 * base, 4 * base, 8 * base)
        self.image_encoder = nn.Sequential(
            *(_conv(a, b, 2) for a, b in zip(widths, widths[1:])),
            _conv(8 * base, 8 * base, 1), nn.Conv2d(8 * base, dim, 1))
        self.prompt_encoder = PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                                            input_image_size=(size, size), mask_in_chans=16)
        self.mask_decoder = MaskDecoder(
            transformer_dim=dim, transformer=TwoWayTransformer(
                depth=2, embedding_dim=dim, num_heads=config.heads, mlp_dim=config.ffn_dim),
            iou_head_hidden_dim=dim)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std), persistent=False)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        image = image.expand(-1, self.config.in_channels, -1, -1)
        return [self.image_encoder((image - self.pixel_mean) / self.pixel_std)]

    def decode(self, features, structure=None, points=None, labels=None,
               previous=None) -> list[torch.Tensor]:
        """The same call as VerSe's: one mask (B, 1, S/4, S/4) from the clicks."""
        if structure is not None:
            raise ValueError("the SAM-style baseline takes clicks only, no structure")
        if points is None or not points.shape[1]:
            raise ValueError("the SAM-style baseline needs clicks")
        (embedding,) = features
        xy = points.flip(-1).float()                       # (row, col) -> SAM's (x, y)
        mask = None
        if previous is not None:
            logits = torch.logit(previous.float().clamp(1e-4, 1 - 1e-4))
            mask = F.interpolate(logits, size=self.prompt_encoder.mask_input_size,
                                 mode="area")
        sparse, dense = self.prompt_encoder((xy, labels), None, mask)
        position = self.prompt_encoder.get_dense_pe()
        # SAM's decoder takes one image (with any number of prompt sets): one call each.
        masks = [self.mask_decoder(embedding[b:b + 1], position, sparse[b:b + 1],
                                   dense[b:b + 1], multimask_output=False)[0]
                 for b in range(len(embedding))]
        return [torch.cat(masks)]

    def full_size(self, logits: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
