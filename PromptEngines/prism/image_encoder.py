"""PRISM's hybrid image encoder: a 3D ViT and a CNN (UNet encoder) side by side. After blocks
2, 5 and 8 the ViT's tokens are upsampled and added to the CNN's skips at 1/2, 1/4 and 1/8 of
the cube; after the last block a neck maps them to the prompt dimension, added to the CNN's
bottleneck. Returns the image embedding (B, prompt_dim, g, g, g) and the skips the mask
decoder climbs back up with."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import PrismConfig
from .layers import Down, LayerNorm3d, TwoConv


class PatchEmbed3D(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(1, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)          # (B, D, H, W, C): channels last


def _relative(table: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size, head_dim): the table's row for every query-key offset along one axis."""
    offsets = torch.arange(size, device=table.device)
    return table[offsets[:, None] - offsets[None, :] + size - 1]


class Attention3D(nn.Module):
    """Multi-head attention over a cube of tokens with decomposed relative positions (one
    table per axis, MViTv2 / SAM)."""

    def __init__(self, dim: int, heads: int, size: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // heads
        for axis in "dhw":
            setattr(self, f"rel_pos_{axis}", nn.Parameter(torch.zeros(2 * size - 1, head_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, _ = x.shape
        n = d * h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, n, -1).unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        grid = q.reshape(b * self.heads, d, h, w, -1)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", grid, _relative(self.rel_pos_d, d))
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", grid, _relative(self.rel_pos_h, h))
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", grid, _relative(self.rel_pos_w, w))
        # The reference broadcasts the three terms as written below, which (on a cube) lines
        # them up with other key axes than SAM's 2D original would; its weights were trained
        # with it, so it is kept exactly.
        scores = (scores.view(-1, d, h, w, d, h, w) + rel_d[:, :, :, :, None, None]
                  + rel_h[:, :, :, None, :, None] + rel_w[:, :, :, None, None, :]).view(-1, n, n)
        out = (scores.softmax(dim=-1) @ v).view(b, self.heads, d, h, w, -1)
        return self.proj(out.permute(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, -1))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Block3D(nn.Module):
    """A transformer block; `window` > 0: attention within windows of that many tokens a
    side, the token cube zero-padded to a multiple of it first (the reference pads the 8^3
    grid to one 14^3 window and attends over the padding too, unmasked: kept, as its weights
    were trained so)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, grid: int, window: int):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention3D(dim, heads, window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            x = self._windowed(x)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        s = self.window
        pads = [(s - n % s) % s for n in (d, h, w)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        nd, nh, nw = ((n + p) // s for n, p in zip((d, h, w), pads))
        windows = (x.view(b, nd, s, nh, s, nw, s, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
                   .reshape(-1, s, s, s, c))
        out = self.attn(windows).view(b, nd, nh, nw, s, s, s, c)
        out = out.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, nd * s, nh * s, nw * s, c)
        return out[:, :d, :h, :w]


class _UpStage(nn.Module):
    """Conv 3^3 (no bias), LN, GELU, transposed conv 2^3 (x2), LN, GELU: `single_up.i`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.single_up = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            LayerNorm3d(out_channels), nn.GELU(),
            nn.ConvTranspose3d(out_channels, out_channels, 2, stride=2),
            LayerNorm3d(out_channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single_up(x)


class _FusionNeck(nn.Module):
    """The ViT's tokens up to a CNN skip: one doubling per stage (`up.j`)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.up = nn.ModuleList(_UpStage(a, b) for a, b in zip(channels, channels[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.up:
            x = stage(x)
        return x


class CNNEncoder(nn.Module):
    """MONAI BasicUNet's encoder: conv_0 at full size, then four max-pool + two-conv stages."""

    def __init__(self, features: tuple[int, ...]):
        super().__init__()
        self.conv_0 = TwoConv(1, features[0])
        for index in range(1, 5):
            setattr(self, f"down_{index}", Down(features[index - 1], features[index]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.conv_0(x)]
        for index in range(1, 5):
            features.append(getattr(self, f"down_{index}")(features[-1]))
        return features                                   # full size .. 1/16


class HybridEncoder(nn.Module):
    def __init__(self, config: PrismConfig):
        super().__init__()
        grid, dim = config.grid, config.embed_dim
        self.fusion_blocks = config.fusion_blocks
        self.patch_embed = PatchEmbed3D(config.patch_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block3D(dim, config.heads, config.mlp_ratio, grid,
                    0 if index in config.global_blocks else config.window_size)
            for index in range(config.depth))
        out = config.prompt_dim
        self.neck = nn.Sequential(nn.Conv3d(dim, out, 1, bias=False), LayerNorm3d(out), nn.GELU(),
                                  nn.Conv3d(out, out, 3, padding=1, bias=False), LayerNorm3d(out),
                                  nn.GELU())
        skips = list(config.cnn_features[1:4])            # the skips at 1/2, 1/4, 1/8
        # Neck j reaches skip j from the token grid: through the deeper skips' widths.
        self.neck_list = nn.ModuleList(
            _FusionNeck([dim] + skips[::-1][:3 - j]) for j in range(3))
        self.cnn_encoder = CNNEncoder(config.cnn_features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, S, S, S) -> embedding (B, prompt_dim, g, g, g) and the decoder's skips
        [full size, 1/2, 1/4, 1/8]."""
        cnn = self.cnn_encoder(image)
        skips = [cnn[0]]
        x = self.patch_embed(image) + self.pos_embed
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.fusion_blocks:
                stage = len(skips) - 1
                skips.append(self.neck_list[stage](x.permute(0, 4, 1, 2, 3)) + cnn[stage + 1])
        embedding = self.neck(x.permute(0, 4, 1, 2, 3)) + cnn[4]
        return embedding, skips
