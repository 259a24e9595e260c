"""The small 3D modules PRISM's parts share, named as the reference code's (MONAI's BasicUNet
blocks, SAM's MLP), so an official checkpoint's keys land on them."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm3d(nn.Module):
    """Layer norm over the channels of each voxel (B, C, D, H, W)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class _NormAct(nn.Sequential):
    """MONAI's ADN in N-D-A order: instance norm (affine), no dropout, LeakyReLU 0.1."""

    def __init__(self, channels: int):
        super().__init__()
        self.add_module("N", nn.InstanceNorm3d(channels, affine=True))
        self.add_module("A", nn.LeakyReLU(0.1))


class ConvBlock(nn.Sequential):
    """Conv3d 3x3x3 (bias), instance norm, LeakyReLU: keys `conv.*`, `adn.N.*`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("conv", nn.Conv3d(in_channels, out_channels, 3, padding=1))
        self.add_module("adn", _NormAct(out_channels))


class TwoConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("conv_0", ConvBlock(in_channels, out_channels))
        self.add_module("conv_1", ConvBlock(out_channels, out_channels))


class Down(nn.Module):
    """Max-pool by 2, then two convolutions."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convs = TwoConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(F.max_pool3d(x, 2))


class _Deconv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)


class UpCat(nn.Module):
    """Transposed convolution of the deeper feature, concatenated after the skip, then two
    convolutions (`halves`: the upsampling halves the channels)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 halves: bool = True):
        super().__init__()
        up = in_channels // 2 if halves else in_channels
        self.upsample = _Deconv(in_channels, up)
        self.convs = TwoConv(skip_channels + up, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([skip, self.upsample(x)], dim=1))


class MLP(nn.Module):
    """Linear layers with ReLU between them (SAM's; keys `layers.i`)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int,
                 sigmoid: bool = False):
        super().__init__()
        sizes = [in_dim] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [out_dim]))
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid else x
