"""tracer3d's paper configuration: SAM ViT-b (or ScribblePrompt-SAM, same layout) as the
slice segmenter, with the method's offset MLP on SAM's image embedding.

The tracker works on windows around the point. SAM sees fixed 256-pixel tiles on a 128-pixel
grid of the padded slice, so its encoding never depends on the prompt (a point is always at
least 64 pixels inside some tile) and each tile is encoded once, when first needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.sam import build_sam_vit_b, resize_sam, sam_input
from .model import OffsetHead


class SliceTiles:
    """One padded slice and the SAM embeddings of the tiles asked for so far."""

    def __init__(self, image: torch.Tensor):
        self.image = image                       # (1, H, W)
        self.embeddings: dict[tuple[int, int], torch.Tensor] = {}


def _tile(image, y, x, size):
    """A size x size tile; zero-padded where it runs past the slice's edge."""
    tile = image[:, y:y + size, x:x + size]
    return F.pad(tile, (0, size - tile.shape[-1], 0, size - tile.shape[-2]))


class SamTracer(nn.Module):
    def __init__(self, image_size: int = 256, max_offset: float = 8.0, sam=None):
        super().__init__()
        self.sam = resize_sam(sam if sam is not None else build_sam_vit_b(), image_size)
        self.crop = image_size
        self.stride = image_size // 2
        self.offset_head = OffsetHead(256, 128, max_offset)
        self.config = {"kind": "paper", "image_size": image_size, "max_offset": max_offset}

    def encode_slices(self, slices: torch.Tensor) -> list[SliceTiles]:
        return [SliceTiles(s) for s in slices]

    def crop_features(self, entries, origins, size):
        missing = [(e, o) for e, o in zip(entries, origins) if tuple(o) not in e.embeddings]
        if missing:
            tiles = torch.stack([_tile(e.image, y, x, size) for e, (y, x) in missing])
            embeddings = self.sam.image_encoder(sam_input(tiles))
            for (entry, origin), embedding in zip(missing, embeddings):
                entry.embeddings[tuple(origin)] = embedding
        return [torch.stack([e.embeddings[tuple(o)] for e, o in zip(entries, origins)])]

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
