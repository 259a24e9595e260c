"""tracer3d's paper configuration: SAM ViT-b (or ScribblePrompt-SAM, same layout) as the
slice segmenter, with the method's offset MLP on the mask decoder's prompt-conditioned image
features. Fine-tuned from official weights, only the mask decoder and the offset MLP learn.

The tracker works on fixed tiles around the point: for SAM at 256², 256 pixels on a 128-pixel
grid of the padded slice, so its encoding never depends on the prompt (a point is always at
least 64 pixels inside its tile) and each tile is encoded once. At 1024² a tile of 128 pixels,
upsampled, is ScribblePrompt-SAM's own regime (`tile`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.sam import build_sam_vit_b, resize_sam, sam_input
from ..backbones.sam_encoder import image_embeddings
from ..errors import IVSegError
from .model import OffsetHead


class SamTracer(nn.Module):
    """SAM as the tracker's slice model. `tile`: the slice pixels one tile covers (default
    `image_size`: SAM sees the slice unscaled). A smaller tile is upsampled to SAM's input as
    ScribblePrompt-SAM was trained (128-pixel images at 1024², clicks scaled alike):
    `{"image_size": 1024, "tile": 128}` runs its official checkpoint in its own regime."""

    # Frozen when fine-tuning official weights, as the method does: only the mask decoder
    # and the offset MLP learn.
    PRETRAINED_KEPT = ("sam.image_encoder", "sam.prompt_encoder")

    def __init__(self, image_size: int = 256, max_offset: float = 8.0, crop: int | None = None,
                 sam=None, tile: int | None = None):
        super().__init__()
        tile = image_size if tile is None else tile
        if tile % 4 or not 0 < tile <= image_size:
            raise IVSegError(f"the paper configuration's tile ({tile} pixels) must be a "
                             f"multiple of 4 and at most its image_size ({image_size})")
        if crop not in (None, tile):           # training crops are the tracker's tiles
            raise IVSegError(f"the paper configuration trains on {tile}-pixel crops "
                             f"(its tile), not {crop}: set train.crop to {tile}")
        self.sam = resize_sam(sam if sam is not None else build_sam_vit_b(), image_size)
        self.image_size, self.crop, self.stride = image_size, tile, tile // 2
        self.offset_head = OffsetHead(256, 128, max_offset)
        self.config = {"kind": "paper", "image_size": image_size, "tile": tile,
                       "max_offset": max_offset}

    def encode(self, tiles: torch.Tensor) -> list[torch.Tensor]:
        """(N, 1, tile, tile) normalised tiles -> SAM image embeddings (N, 256, size/16,
        size/16), tiles upsampled (bilinear) to SAM's input size first if smaller."""
        return [image_embeddings(self.sam.image_encoder, sam_input(tiles, self.image_size))]

    def decode(self, crops, points, previous_logits=None):
        """SAM's prompt encoder (point, previous logits as mask input) and mask decoder,
        multimask output, the mask with the best predicted IoU; one prompt per tile. The
        bottleneck (for the offset MLP and L_global) is the decoder's image features after
        its two-way attention with the prompt: where the prompted vessel is, which the image
        embedding alone (one per tile, whatever the point) cannot tell."""
        embeddings = crops[0]
        count, low_size = embeddings.shape[0], 4 * embeddings.shape[-1]
        # SAM wants (x, y). Flipped, not indexed with [1, 0]: a list index is Python data
        # copied to the GPU, a wait no CUDA graph can capture (graphs.host_waits).
        coords = points.flip(-1)[:, None]
        if self.crop != self.image_size:                # tile pixels -> SAM's input pixels
            coords = coords * (self.image_size / self.crop)
        mask_input = None
        if previous_logits is not None:
            mask_input = F.interpolate(previous_logits, size=(low_size, low_size),
                                       mode="bilinear", align_corners=False)
        sparse, dense = self.prompt_embeddings(coords, mask_input)
        low, iou, bottleneck = self._mask_decoder(embeddings + dense, sparse)
        best = iou.argmax(dim=1)
        rows = torch.arange(count, device=iou.device)
        logits = F.interpolate(low[rows, best][:, None], size=(self.crop, self.crop),
                               mode="bilinear", align_corners=False)
        return logits, iou[rows, best], bottleneck

    def _mask_decoder(self, image, sparse):
        """SAM's mask decoder with multimask output (its three masks and their predicted
        IoUs), run step by step for one prompt per tile (SAM's own repeats one image over
        all prompts) and to keep its prompt-conditioned image features."""
        decoder = self.sam.mask_decoder
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(image.shape[0], -1, -1), sparse], dim=1)
        position = self.sam.prompt_encoder.get_dense_pe().expand_as(image)
        tokens_out, image_out = decoder.transformer(image, position, tokens)
        features = image_out.transpose(1, 2).reshape(image.shape)
        upscaled = decoder.output_upscaling(features)
        mask_tokens = tokens_out[:, 1:1 + decoder.num_mask_tokens]
        weights = torch.stack([mlp(mask_tokens[:, k])
                               for k, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
        masks = (weights @ upscaled.flatten(2)).unflatten(2, upscaled.shape[-2:])
        iou = decoder.iou_prediction_head(tokens_out[:, 0])
        return masks[:, 1:], iou[:, 1:], features          # token 0: the single-mask output

    def prompt_embeddings(self, coords, mask_input=None):
        """SAM's prompt encoder for one positive point per tile (x, y), plus the padding
        point SAM adds when there is no box, and the mask input. Same values as
        `sam.prompt_encoder`, without its boolean-mask writes: each waits for the GPU (a
        nonzero), four times per decode."""
        encoder = self.sam.prompt_encoder
        count = coords.shape[0]
        # Encoded with the padding point beside it, as SAM does, so the values match bit
        # for bit (a one-point batch rounds differently).
        padded = torch.cat([coords + 0.5, torch.zeros_like(coords)], dim=1)
        encoded = encoder.pe_layer.forward_with_coords(padded, encoder.input_image_size)
        padding = encoder.not_a_point_embed.weight.expand(count, 1, -1)
        sparse = torch.cat([encoded[:, :1] + encoder.point_embeddings[1].weight, padding], dim=1)
        if mask_input is not None:
            return sparse, encoder.mask_downscaling(mask_input)
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return sparse, dense.expand(count, -1, *encoder.image_embedding_size)

    def offset(self, bottleneck):
        return self.offset_head(bottleneck)
