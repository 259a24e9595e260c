"""UTNet, the image encoder (Gao et al., MICCAI 2021, as configured by VerSe): pre-activation
residual convolutions, each downsampling followed by a transformer block whose keys and
values are bilinearly reduced to 8x8, with a learned 2D relative-position bias. Only the
encoder half runs (its features at 1/2, 1/4 and 1/8); the reference also builds a decoder
half it never calls, whose keys the checkpoint loader accounts for by name."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VerseConfig


def conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """BN-ReLU-conv twice, plus a BN-ReLU-1x1 shortcut when the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(inputs, outputs, stride)
        self.bn1 = nn.BatchNorm2d(inputs)
        self.conv2 = conv3x3(outputs, outputs)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.BatchNorm2d(inputs), nn.ReLU(),
                                          nn.Conv2d(inputs, outputs, 1, stride=stride,
                                                    bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, no bias."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.depthwise = nn.Conv2d(inputs, inputs, 3, padding=1, groups=inputs, bias=False)
        self.pointwise = nn.Conv2d(inputs, outputs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class RelativePositionBias(nn.Module):
    """One bias per head and relative offset on the reduced (size x size) key grid, each
    query pixel taking the bias of the reduced cell it falls in."""

    def __init__(self, heads: int, size: int):
        super().__init__()
        self.heads, self.size = heads, size
        self.relative_position_bias_table = nn.Parameter(
            torch.randn((2 * size - 1) ** 2, heads) * 0.02)
        cells = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size),
                                           indexing="ij")).flatten(1)           # 2, s*s
        offsets = (cells[:, :, None] - cells[:, None, :]).permute(1, 2, 0) + size - 1
        self.register_buffer("relative_position_index",
                             offsets[..., 0] * (2 * size - 1) + offsets[..., 1])

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(1, heads, height*width, size*size)."""
        s = self.size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(s, s, s * s, self.heads)
        bias = bias.repeat_interleave(height // s, dim=0).repeat_interleave(width // s, dim=1)
        return bias.reshape(height * width, s * s, self.heads).permute(2, 0, 1)[None]


class LinearAttention(nn.Module):
    """Self-attention of every pixel to keys and values bilinearly reduced to size x size.
    Channels are laid out (dim_head, heads) as the reference's rearrange does."""

    def __init__(self, dim: int, heads: int, reduce_size: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head, self.reduce_size = heads, dim // heads, reduce_size
        self.to_qkv = SeparableConv(dim, 3 * dim)
        self.to_out = SeparableConv(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)
        self.relative_position_encoding = RelativePositionBias(heads, reduce_size)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, _, h, w = t.shape
        return t.reshape(b, self.dim_head, self.heads, h * w).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=1)
        if h != self.reduce_size:
            k, v = (F.interpolate(t, size=self.reduce_size, mode="bilinear", align_corners=True)
                    for t in (k, v))
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        attention = q @ k.transpose(-1, -2) + self.relative_position_encoding(h, w)
        attention = self.attn_drop((attention * self.dim_head ** -0.5).softmax(dim=-1))
        out = (attention @ v).permute(0, 3, 1, 2).reshape(b, self.dim_head * self.heads, h, w)
        return self.proj_drop(self.to_out(out))


class BasicTransBlock(nn.Module):
    """BN-attention with a residual, then BN-ReLU-1x1 conv with a residual."""

    def __init__(self, dim: int, heads: int, reduce_size: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(dim)
        self.attn = LinearAttention(dim, heads, reduce_size, dropout)
        self.bn2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attn(self.bn1(x)) + x
        return self.mlp(F.relu(self.bn2(out))) + out


class DownBlock(nn.Module):
    """A strided BasicBlock (halves the size, doubles the channels) and a transformer block."""

    def __init__(self, inputs: int, outputs: int, config: VerseConfig):
        super().__init__()
        self.blocks = nn.Sequential(
            BasicBlock(inputs, outputs, stride=2),
            BasicTransBlock(outputs, config.encoder_heads, config.reduce_size,
                            config.encoder_dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class UTNetEncoder(nn.Module):
    def __init__(self, config: VerseConfig):
        super().__init__()
        base = config.base_channels
        self.inc = nn.Sequential(BasicBlock(config.in_channels, base), BasicBlock(base, base))
        self.down1 = DownBlock(base, 2 * base, config)
        self.down2 = DownBlock(2 * base, 4 * base, config)
        self.down3 = DownBlock(4 * base, 8 * base, config)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Features at 1/8, 1/4, 1/2 (coarse first, the decoder's level order)."""
        half = self.down1(self.inc(image))
        quarter = self.down2(half)
        return [self.down3(quarter), quarter, half]
