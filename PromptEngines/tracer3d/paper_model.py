"""tracer3d's paper configuration: SAM ViT-b (or ScribblePrompt-SAM, same layout) as the
slice segmenter, with the method's offset MLP on SAM's image embedding.

The tracker works on fixed tiles around the point: for SAM, 256 pixels on a 128-pixel grid of
the padded slice, so its encoding never depends on the prompt (a point is always at least 64
pixels inside its tile) and each tile is encoded once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.sam import build_sam_vit_b, resize_sam, sam_input
from .model import OffsetHead


class SamTracer(nn.Module):
    def __init__(self, image_size: int = 256, max_offset: float = 8.0, sam=None):
        super().__init__()
        self.sam = resize_sam(sam if sam is not None else build_sam_vit_b(), image_size)
        self.crop = image_size
        self.stride = image_size // 2
        self.offset_head = OffsetHead(256, 128, max_offset)
        self.config = {"kind": "paper", "image_size": image_size, "max_offset": max_offset}

    def encode(self, tiles: torch.Tensor) -> list[torch.Tensor]:
        """(N, 1, 256, 256) normalised tiles -> SAM image embeddings (N, 256, 16, 16)."""
        return [self.sam.image_encoder(sam_input(tiles))]

    def decode(self, crops, points, previous_logits=None):
        """SAM's prompt encoder (point, previous logits as mask input) and mask decoder,
        multimask output, the mask with the best predicted IoU. One image per prompt: SAM's
        decoder repeats a single image over prompts, so tiles are decoded one by one."""
        embeddings = crops[0]
        low_size = 4 * embeddings.shape[-1]
        logits, confidences = [], []
        for k in range(embeddings.shape[0]):
            coords = points[k:k + 1, None, [1, 0]]                    # SAM wants (x, y)
            labels = torch.ones(1, 1, dtype=torch.int64, device=points.device)
            mask_input = None
            if previous_logits is not None:
                mask_input = F.interpolate(previous_logits[k:k + 1], size=(low_size, low_size),
                                           mode="bilinear", align_corners=False)
            sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=None,
                                                    masks=mask_input)
            low, iou = self.sam.mask_decoder(
                image_embeddings=embeddings[k:k + 1], image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True)
            best = int(iou[0].argmax())
            logits.append(low[:, best:best + 1])
            confidences.append(iou[0, best])
        logits = F.interpolate(torch.cat(logits), size=(self.crop, self.crop), mode="bilinear",
                               align_corners=False)
        return logits, torch.stack(confidences), embeddings

    def offset(self, bottleneck):
        return self.offset_head(bottleneck)
