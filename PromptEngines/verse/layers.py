"""The decoder's building blocks, in the reference's (Mask2Former's) layout: post-norm
attention and FFN layers on sequence-first tensors (L, B, C), the sine position encoding of
a feature map, the pixel FFN (a residual block with an ECA channel gate) and the small mask
head that turns a level's pixel features into logits."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position(batch: int, height: int, width: int, channels: int,
                  device=None) -> torch.Tensor:
    """DETR's normalised sine encoding, (B, channels, H, W): half for y, half for x."""
    features = channels // 2
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = (y / (height + 1e-6) * 2 * math.pi)[:, None].expand(height, width)
    x = (x / (width + 1e-6) * 2 * math.pi)[None, :].expand(height, width)
    steps = torch.arange(features, dtype=torch.float32, device=device)
    steps = 10000 ** (2 * (steps // 2) / features)

    def encode(t):
        t = t[..., None] / steps
        return torch.stack((t[..., 0::2].sin(), t[..., 1::2].cos()), dim=-1).flatten(2)

    position = torch.cat((encode(y), encode(x)), dim=-1).permute(2, 0, 1)
    return position[None].expand(batch, -1, -1, -1)


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        _xavier(self)

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        q = x + position
        return self.norm(x + self.self_attn(q, q, value=x)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        _xavier(self)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None,
                memory_position: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """`mask` (B*heads, len(x), len(memory)): True where x may not look."""
        attended = self.multihead_attn(x + position, memory + memory_position, value=memory,
                                       attn_mask=mask)[0]
        return self.norm(x + attended)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        _xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class CAResBlock(nn.Module):
    """ReLU-conv twice, gated per channel by ECA (a 1D conv over the pooled channels)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        t = int((abs(math.log2(dim)) + 1) // 2)
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(x))))
        gate = self.conv(out.mean(dim=(2, 3))[:, None]).sigmoid()        # B, 1, C
        return out * gate[:, 0, :, None, None] + x


class PixelFFN(nn.Module):
    """CAResBlock on sequence-first pixel features (H*W, B, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = CAResBlock(dim)

    def forward(self, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return to_sequence(self.conv(to_map(pixels, size)))


def to_map(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H*W, B, C) -> (B, C, H, W)."""
    return pixels.view(*size, *pixels.shape[1:]).permute(2, 3, 0, 1)


def to_sequence(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (H*W, B, C)."""
    return features.flatten(2).permute(2, 0, 1)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class SimpleMaskDecoder(nn.Module):
    """A level's pixel features (B, C, h, w) -> mask logits (B, 1, h, w)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.initial_conv = nn.Conv2d(dim, channels, 3, padding=1)
        self.res_blocks = nn.ModuleList([ResBlock(channels), ResBlock(channels)])
        self.final_conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.initial_conv(x))
        for block in self.res_blocks:
            x = block(x)
        return self.final_conv(x)
