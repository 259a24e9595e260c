"""The tiny configuration's parts, each the small counterpart of a SAM / SAM-HQ module: an
image encoder that also returns early full-resolution features (SAM-HQ fuses the ViT's
early features for thin structures), SAM's prompt encoder (random Fourier positions, label
embeddings, a mask downscaler), the two-way transformer, and the HQ mask decoder with the
Text Prompt Predictor's CLS token."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.sam import mlp


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    groups = 4 if cout % 4 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(groups, cout), nn.GELU())


def halvings(stride: int, steps: int) -> list[int]:
    """`steps` factors, 2s then 1s, whose product is `stride` (the strides of down- or
    upscaling stages): 8 over 3 -> [2, 2, 2], 2 over 3 -> [2, 1, 1]."""
    count = int(math.log2(stride))
    if 2 ** count != stride or not 0 <= count <= steps:
        raise ValueError(f"a stride of {stride} cannot be made of {steps} halvings")
    return [2] * count + [1] * (steps - count)


class ImageEncoder(nn.Module):
    """(B, 1, S, S) -> [embedding (B, D, S/stride, S/stride) (SAM's grid at 16), early
    features (B, w0, S/2, S/2)]."""

    def __init__(self, widths, stride: int = 16):
        super().__init__()
        w0, w1, w2, dim = widths
        s1, s2, s3 = halvings(stride // 2, 3)
        self.stem = nn.Sequential(_conv(1, w0, 2), _conv(w0, w0))
        self.down = nn.Sequential(_conv(w0, w1, s1), _conv(w1, w1), _conv(w1, w2, s2),
                                  _conv(w2, w2), _conv(w2, dim, s3), _conv(dim, dim))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        early = self.stem(images)
        return [self.down(early), early]


class PositionEncoding(nn.Module):
    """SAM's random spatial frequencies: (y, x) in [0, 1] -> (..., D)."""

    def __init__(self, dim: int):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("gaussian", torch.randn(2, dim // 2, generator=generator))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        projected = 2 * math.pi * (2 * coords - 1) @ self.gaussian
        return torch.cat([projected.sin(), projected.cos()], -1)

    def grid(self, size: int) -> torch.Tensor:
        """(D, size, size): the encoding of each embedding pixel's centre."""
        device = self.gaussian.device
        centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        return self(torch.stack([yy, xx], -1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points (with labels: 1 positive, 0 negative, -1 padding) -> sparse tokens; the
    current mask's logits -> a dense embedding at the image embedding's size."""

    def __init__(self, dim: int, crop: int, stride: int = 16):
        super().__init__()
        self.crop = crop
        self.position = PositionEncoding(dim)
        self.labels = nn.Embedding(3, dim)            # padding, negative, positive
        self.no_mask = nn.Embedding(1, dim)
        s1, s2, s3, s4 = halvings(stride, 4)
        self.mask_downscaling = nn.Sequential(_conv(1, 4, s1), _conv(4, 8, s2), _conv(8, 16, s3),
                                              nn.Conv2d(16, dim, 3, s4, 1))

    def points(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        encoded = self.position((points + 0.5) / self.crop)
        encoded = encoded * (labels >= 0)[..., None].to(encoded.dtype)   # padding: no position
        return encoded + self.labels(labels + 1)

    def dense(self, mask_logits: torch.Tensor | None, batch: int, size: int) -> torch.Tensor:
        if mask_logits is None:
            return self.no_mask.weight.reshape(1, -1, 1, 1).expand(batch, -1, size, size)
        return self.mask_downscaling(mask_logits)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q, k, v):
        return self.attention(q, k, v, need_weights=False)[0]


class TwoWayLayer(nn.Module):
    """SAM's two-way block: tokens attend to themselves, tokens to the image, an MLP, and
    the image to the tokens; positions added to queries and keys at every attention."""

    def __init__(self, dim: int, heads: int, first: bool):
        super().__init__()
        self.first = first
        self.self_attention, self.token_to_image = _Attention(dim, heads), _Attention(dim, heads)
        self.image_to_token = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(self, tokens, image, token_pe, image_pe):
        q = tokens if self.first else tokens + token_pe
        tokens = self.norms[0]((self.self_attention(q, q, tokens) if self.first else
                                tokens + self.self_attention(q, q, tokens)))
        tokens = self.norms[1](tokens + self.token_to_image(tokens + token_pe, image + image_pe,
                                                            image))
        tokens = self.norms[2](tokens + self.mlp(tokens))
        image = self.norms[3](image + self.image_to_token(image + image_pe, tokens + token_pe,
                                                          tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int, heads: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayLayer(dim, heads, i == 0) for i in range(depth))
        self.final = _Attention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, image, image_pe, tokens):
        """image, image_pe (B, D, h, w); tokens (B, T, D) -> tokens, image (B, h*w, D)."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        tokens = self.norm(tokens + self.final(tokens + token_pe, image + image_pe, image))
        return tokens, image


class HQMaskDecoder(nn.Module):
    """SAM-HQ's decoder, one output mask (the HQ token's, as SAM-HQ for thin structures):
    output tokens [IoU, HQ, CLS] + the prompt tokens run through the two-way transformer;
    the HQ features are the refined embedding upscaled to half the crop's resolution, plus
    the unrefined embedding upscaled and the encoder's early features compressed; the mask
    is the HQ token's MLP output dotted with them, upsampled to the crop (SAM-HQ's mask is
    at a quarter of SAM's input). The Text Prompt Predictor's CLS token goes through a
    3-layer MLP to one logit per command."""

    def __init__(self, widths, heads: int, depth: int, commands: int, stride: int = 16):
        super().__init__()
        w0, w1, w2, dim = widths
        self.output_tokens = nn.Embedding(2, dim)            # IoU, HQ
        self.cls_token = nn.Embedding(1, dim)                # the Text Prompt Predictor's
        self.transformer = TwoWayTransformer(dim, heads, depth)
        self.output_upscaling = _upscaler(dim, (w2, w1, w0), stride // 2)
        self.embedding_encoder = _upscaler(dim, (w2, w1, w0), stride // 2)
        self.compress_early = nn.Sequential(_conv(w0, w0), nn.Conv2d(w0, w0, 3, 1, 1))
        self.embedding_maskfeature = nn.Sequential(_conv(w0, w0), nn.Conv2d(w0, w0, 3, 1, 1))
        self.hf_mlp = mlp(dim, dim, w0)
        self.iou_head = mlp(dim, dim, 1)
        self.cls_head = mlp(dim, dim, commands)

    def forward(self, embedding, early, image_pe, sparse, dense, classify: bool = False):
        """(logits (B,1,S,S), iou (B,)); with `classify`, the CLS token joins the output
        tokens and only its command logits (B, 5) are returned (a mask decoded never sees
        the CLS token, so training the predictor leaves masks as they were)."""
        batch, dim, h, w = embedding.shape
        own = self.output_tokens.weight
        if classify:
            own = torch.cat([own, self.cls_token.weight])
        tokens = torch.cat([own.expand(batch, -1, -1), sparse], 1)
        tokens, image = self.transformer(embedding + dense, image_pe.expand(batch, -1, -1, -1),
                                         tokens)
        if classify:
            return self.cls_head(tokens[:, 2])
        image = image.transpose(1, 2).reshape(batch, dim, h, w)
        features = (self.embedding_maskfeature(self.output_upscaling(image))
                    + self.embedding_encoder(embedding) + self.compress_early(early))
        weights = self.hf_mlp(tokens[:, 1])
        logits = torch.einsum("bc,bchw->bhw", weights, features)[:, None]
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        return logits, self.iou_head(tokens[:, 0])[:, 0]


def _upscaler(dim: int, widths, factor: int = 8) -> nn.Sequential:
    """x`factor` (8: three 2x2 transposed convolutions, SAM's output upscaling one step
    more); a smaller factor keeps the resolution in the last steps (3x3 convolutions)."""
    parts, cin = [], dim
    for i, (cout, scale) in enumerate(zip(widths, halvings(factor, len(widths)))):
        parts += [nn.ConvTranspose2d(cin, cout, 2, 2) if scale == 2 else
                  nn.Conv2d(cin, cout, 3, 1, 1)]
        if i < len(widths) - 1:
            parts += [nn.GroupNorm(4 if cout % 4 == 0 else 1, cout), nn.GELU()]
        cin = cout
    return nn.Sequential(*parts)
