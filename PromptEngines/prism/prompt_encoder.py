"""PRISM's 3D prompt encoder: clicks (scribble voxels are clicks), box corners and the previous
logits become tokens and a dense map; a two-way transformer (SAM's, on the flattened token
cube) lets the tokens and the image embedding attend to each other. In the reference the
transformer, the mask tokens and the IoU token live here, not in the decoder."""
from __future__ import annotations

import math

import torch
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import nn
from torch.nn import functional as F

from .config import PrismConfig
from .layers import LayerNorm3d


class RandomFourier3D(nn.Module):
    """Random Fourier features of a 3D position in [0, 1]^3: [sin, cos, sin] of 2 pi (2p - 1) G
    (the reference repeats the sine: kept, its weights expect it)."""

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, features))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([coords.sin(), coords.cos(), coords.sin()], dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """(C, g, g, g) for the token cube. Quirk of the reference kept for its weights: cell
        [a0, a1, a2] encodes ((a1 + .5) / g, (a0 + .5) / g, (a2 + .5) / g), while a click
        at voxel (d0, d1, d2) encodes (d0, d1, d2) in that order."""
        centres = (torch.arange(size, device=self.positional_encoding_gaussian_matrix.device)
                   + 0.5) / size
        a0, a1, a2 = torch.meshgrid(centres, centres, centres, indexing="ij")
        return self.encode(torch.stack([a1, a0, a2], dim=-1)).permute(3, 0, 1, 2)


class PromptEncoder3D(nn.Module):
    def __init__(self, config: PrismConfig):
        super().__init__()
        dim = config.prompt_dim
        self.image_size, self.grid_size = config.image_size, config.grid
        self.pe_layer = RandomFourier3D(dim // 3)
        # 0 negative click, 1 positive click, 2 and 3 the box's corners.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        quarter = config.mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, quarter, 2, stride=2), LayerNorm3d(quarter), nn.GELU(),
            nn.Conv3d(quarter, config.mask_in_chans, 2, stride=2),
            LayerNorm3d(config.mask_in_chans), nn.GELU(),
            nn.Conv3d(config.mask_in_chans, dim, 1))
        self.no_mask_embed = nn.Embedding(1, dim)          # in the layout; a mask is always given
        self.transformer = TwoWayTransformer(config.transformer_depth, dim,
                                             config.transformer_heads, config.transformer_mlp)
        self.mask_tokens = nn.Embedding(config.outputs + 1, dim)
        self.iou_token = nn.Embedding(1, dim)

    def _points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Clicks (B, N, 3) voxel indices (d0, d1, d2) of the cube, labels 1 / 0 (-1: none)."""
        coords = coords.float() + 0.5
        if pad:                                  # no box: a not-a-point token closes the list
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        embedded = self.pe_layer.encode(coords / self.image_size)
        labels = labels[..., None]
        embedded = torch.where(labels == -1, self.not_a_point_embed.weight, embedded)
        embedded = embedded + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
        return embedded + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)

    def _box(self, box: torch.Tensor) -> torch.Tensor:
        """(B, 6): low corner and high corner + 1, voxel indices (d0, d1, d2)."""
        corners = self.pe_layer.encode((box.float().reshape(-1, 2, 3) + 0.5) / self.image_size)
        return torch.stack([corners[:, 0] + self.point_embeddings[2].weight[0],
                            corners[:, 1] + self.point_embeddings[3].weight[0]], dim=1)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer.grid(self.grid_size)[None]

    def forward(self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                box: torch.Tensor | None, previous: torch.Tensor):
        """`previous`: the last logits at the mask input size (B, 1, 4g, 4g, 4g). Returns the
        transformed tokens [iou, masks..., prompts...] and image embedding."""
        sparse = self._points(coords, labels, pad=box is None)
        if box is not None:
            sparse = torch.cat([sparse, self._box(box)], dim=1)
        batch = embedding.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])[None]
        tokens = torch.cat([tokens.expand(batch, -1, -1), sparse], dim=1)
        source = embedding + self.mask_downscaling(previous)
        position = self.dense_pe().expand(batch, -1, -1, -1, -1)
        # SAM's transformer flattens (B, C, H, W): a cube flattened to (B, C, D, H*W) gives the
        # same token order.
        queries, keys = self.transformer(source.flatten(3), position.flatten(3), tokens)
        return queries, keys.transpose(1, 2).reshape(embedding.shape)

    @staticmethod
    def mask_input(logits: torch.Tensor, size: int) -> torch.Tensor:
        """The previous logits (B, 1, S, S, S) at the mask input size (nearest, as the
        reference's caller does)."""
        return F.interpolate(logits, size=(size,) * 3, mode="nearest")
