"""SAM's image encoder run without waiting for the host.

segment-anything's attention builds its relative-position index on the CPU (`torch.arange`)
in every block, so on a GPU each of the 12 blocks copies it over and waits for the GPU
before launching the rest of the block, and the encoder cannot be captured in a CUDA graph.
`image_embeddings` runs the same modules with the same ops in the same order (so the same
result, bit for bit on the CPU), with the index made on the encoder's own device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def image_embeddings(encoder, x: torch.Tensor) -> torch.Tensor:
    """`encoder(x)` for segment-anything's `ImageEncoderViT`."""
    x = encoder.patch_embed(x)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for block in encoder.blocks:
        x = vit_block(block, x)
    return encoder.neck(x.permute(0, 3, 1, 2))


def vit_block(block, x: torch.Tensor) -> torch.Tensor:
    """One block of SAM's ViT (windowed or global attention), as the encoder runs it."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        height, width = x.shape[1], x.shape[2]
        x, padded = window_partition(x, block.window_size)
    x = _attention(block.attn, x)
    if block.window_size > 0:
        x = window_unpartition(x, block.window_size, padded, (height, width))
    x = shortcut + x
    return x + block.mlp(block.norm2(x))


def _attention(attn, x: torch.Tensor) -> torch.Tensor:
    batch, height, width, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, height * width, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, batch * attn.num_heads, height * width, -1).unbind(0)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    if attn.use_rel_pos:
        scores = _add_relative_positions(scores, q, attn.rel_pos_h, attn.rel_pos_w,
                                         height, width)
    scores = scores.softmax(dim=-1)
    x = (scores @ v).view(batch, attn.num_heads, height, width, -1)
    return attn.proj(x.permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1))


def _relative_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """(size, size, C): the embedding of each query-key offset along one axis, the table
    interpolated (linearly, as SAM does) when it was made for another size."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.reshape(1, table.shape[0], -1).permute(0, 2, 1),
                              size=length, mode="linear").reshape(-1, length).permute(1, 0)
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + (size - 1)]


def _add_relative_positions(scores, q, table_h, table_w, height: int, width: int):
    """MViTv2's decomposed relative positions, as SAM adds them (queries and keys on the
    same grid)."""
    rel_h, rel_w = _relative_table(height, table_h), _relative_table(width, table_w)
    batch, _, dim = q.shape
    grid_q = q.reshape(batch, height, width, dim)
    along_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h)
    along_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w)
    scores = (scores.view(batch, height, width, height, width)
              + along_h[:, :, :, :, None] + along_w[:, :, :, None, :])
    return scores.view(batch, height * width, height * width)
