"""Clicks as VerSe takes them.

Clicks are (row, col) pixels of the 256^2 slice with a label: 1 positive, 0 negative, -1 no
click (padding). Like the reference, every click gives one entry to each of two equally long
lists: itself to its own polarity's list and a dummy to the other's; the decoder's positive
and negative click queries are built from these lists. Two kinds of query per entry:
- sparse: SAM's random-Fourier encoding of the position plus a learnt polarity embedding
  (a dummy gets the "not a point" embedding only);
- semantic: the pixel features at the click (the pixel itself at 1/8, the mean of its 3x3
  neighbourhood at 1/4 and 1/2; zeros for a dummy), through a small MLP per level.
The reference creates both encoders anew, at random, on every call; here they are modules of
the model, trained and saved with it.

`click_map` draws the mask & click encoder's input: [positive disks, negative disks,
previous mask], disks of radius 1 pixel."""
from __future__ import annotations

import math

import torch
from torch import nn

DUMMY = -10          # the reference's position of a padding entry (outside every level)


def polarity_lists(points: torch.Tensor, labels: torch.Tensor):
    """(B, K, 2) points and (B, K) labels -> the positive and negative lists, each
    ((B, K, 2) points, (B, K) labels) with dummies where the click is of the other polarity
    or absent."""
    dummy = torch.full_like(points, DUMMY)
    lists = []
    for polarity in (1, 0):
        own = labels == polarity
        lists.append((torch.where(own[..., None], points, dummy),
                      torch.where(own, labels, torch.full_like(labels, -1))))
    return lists


class SparseClickEncoder(nn.Module):
    """SAM's prompt encoder for points (random Fourier position + polarity embedding)."""

    def __init__(self, dim: int, image_size: int):
        super().__init__()
        self.image_size = image_size
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, dim // 2))
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, dim) for _ in range(2)])
        self.not_a_point_embed = nn.Embedding(1, dim)

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K, 2), (B, K) -> queries (K, B, dim)."""
        coords = (points.float() + 0.5) / self.image_size * 2 - 1
        coords = 2 * math.pi * coords @ self.positional_encoding_gaussian_matrix
        encoded = torch.cat((coords.sin(), coords.cos()), dim=-1)
        real = (labels >= 0)[..., None]
        encoded = torch.where(real, encoded, self.not_a_point_embed.weight)
        encoded = encoded + torch.where(labels[..., None] == 1, self.point_embeddings[1].weight,
                                        self.point_embeddings[0].weight) * real
        return encoded.permute(1, 0, 2)


class SemanticClickEncoder(nn.Module):
    """The pixel features at each click, per level, through that level's MLP."""

    def __init__(self, dim: int, hidden: int, scales: tuple[int, ...]):
        super().__init__()
        self.scales = scales
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                                nn.Linear(hidden, dim)) for _ in scales)

    def forward(self, pixels: list[torch.Tensor], sizes, points: torch.Tensor):
        """Per level: (K, B, dim) queries from the pixel features (H*W, B, dim)."""
        coarsest = max(self.scales)
        return [mlp(self._pick(level, size, points, scale, scale == coarsest)).permute(1, 0, 2)
                for level, size, scale, mlp in zip(pixels, sizes, self.scales, self.mlps)]

    @staticmethod
    def _pick(pixels: torch.Tensor, size, points: torch.Tensor, scale: int,
              single_pixel: bool) -> torch.Tensor:
        """(B, K, dim): the feature under each point (`single_pixel`, the coarsest level,
        unless it is all zeros) or the mean of its 3x3 neighbourhood within the map; zeros
        outside it."""
        h, w = size
        maps = pixels.view(h, w, *pixels.shape[1:]).permute(2, 0, 1, 3)      # B, h, w, C
        cells = torch.round(points.float() / scale).long()                   # B, K, 2
        inside = ((cells >= 0).all(-1) & (cells[..., 0] < h) & (cells[..., 1] < w))
        rows, cols = cells[..., 0].clamp(0, h - 1), cells[..., 1].clamp(0, w - 1)
        batch = torch.arange(len(maps), device=maps.device)[:, None]
        # The 3x3 mean: a box sum over the zero-padded map, divided by the cells inside it.
        padded = nn.functional.pad(maps.permute(0, 3, 1, 2), (1, 1, 1, 1))
        sums = nn.functional.avg_pool2d(padded, 3, stride=1, divisor_override=1)
        counts = (((rows + 2).clamp(max=h) - (rows - 1).clamp(min=0))
                  * ((cols + 2).clamp(max=w) - (cols - 1).clamp(min=0)))
        mean = sums.permute(0, 2, 3, 1)[batch, rows, cols] / counts[..., None]
        if single_pixel:
            pixel = maps[batch, rows, cols]
            mean = torch.where((pixel.sum(-1) != 0)[..., None], pixel, mean)
        return torch.where(inside[..., None], mean, torch.zeros_like(mean))


def click_map(points: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor,
              size: int) -> torch.Tensor:
    """(B, 3, size, size): disks of radius 1 at positive and negative clicks, and the
    previous mask's probability (B, 1, size, size) or zeros."""
    b = points.shape[0]
    disks = torch.zeros(b, 2, size, size, device=previous.device)
    grid = torch.arange(size, device=previous.device)
    for polarity, channel in ((1, 0), (0, 1)):
        chosen = labels == polarity                                         # B, K
        if not chosen.any():
            continue
        dy = (grid[None, None, :] - points[..., 0:1]) ** 2                  # B, K, size
        dx = (grid[None, None, :] - points[..., 1:2]) ** 2
        near = (dy[..., :, None] + dx[..., None, :]) <= 1                   # B, K, size, size
        disks[:, channel] = (near & chosen[..., None, None]).any(dim=1).float()
    return torch.cat((disks, previous), dim=1)
