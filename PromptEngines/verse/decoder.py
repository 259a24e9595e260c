"""VerSe's query decoder: object queries (learnt, 4 per class) and click queries attend to
the pixel features of one level per layer, round robin 1/8 -> 1/4 -> 1/2 twice; the pixels
then attend to all queries, and each layer's mask head predicts the mask (deep supervision).

Masked attention by side: object and positive click queries see only where the current mask
is >= 0.5, negative click queries only where it is < 0.5 (a query that would see nothing sees
everything). The first layer of Mode 2 takes that mask from the previous result's
probability, thresholded once (the reference applies a second sigmoid there, which blocks
nothing). A layer's pixel features reach the next layer through a learnt resampling (2x2
transposed convolution up, 4x4 strided convolution down), and the click queries' semantic
half through a linear layer; the semantic queries are read again from the pixel features
after each round.

Modes (the paper's names): 1 = object queries only (automatic), 2 = object and click queries
(correction of the automatic result), 3 = click queries only."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .clicks import SemanticClickEncoder, SparseClickEncoder, polarity_lists
from .config import VerseConfig
from .layers import (CrossAttentionLayer, FFNLayer, PixelFFN, SelfAttentionLayer,
                     SimpleMaskDecoder, sine_position, to_map, to_sequence)


class Upsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(dim, dim, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


class Downsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.downsample = nn.Conv2d(dim, dim, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x)


def _layers(build, count: int) -> nn.ModuleList:
    return nn.ModuleList(build() for _ in range(count))


def _attention_mask(blocked: torch.Tensor | None, heads: int, queries: int):
    """(B, H*W) blocked pixels -> (B*heads, queries, H*W); a sample with every pixel blocked
    is left unmasked."""
    if blocked is None:
        return None
    blocked = blocked & ~blocked.all(dim=1, keepdim=True)
    return blocked[:, None, None].expand(-1, heads, queries, -1).flatten(0, 1)


class QueryDecoder(nn.Module):
    def __init__(self, config: VerseConfig):
        super().__init__()
        dim, heads, n = config.hidden_dim, config.heads, config.layers
        self.heads, self.layers = heads, n
        self.queries_per_class = config.queries_per_class
        for side in ("", "pos_", "neg_"):
            setattr(self, f"{side}transformer_self_attention_layers",
                    _layers(lambda: SelfAttentionLayer(dim, heads), n))
            setattr(self, f"{side}transformer_cross_attention_layers",
                    _layers(lambda: CrossAttentionLayer(dim, heads), n))
            setattr(self, f"{side}transformer_ffn_layers",
                    _layers(lambda: FFNLayer(dim, config.ffn_dim), n))
        self.transformer_feature_query_cross_attention_layers = _layers(
            lambda: CrossAttentionLayer(dim, heads), n)
        self.transformer_pixel_ffn_layers = _layers(lambda: PixelFFN(dim), n)
        self.query_feat = nn.Embedding(config.classes * config.queries_per_class, dim)
        self.query_embed = nn.Embedding(config.classes * config.queries_per_class, dim)
        self.level_embed = nn.Embedding(len(config.scales), dim)
        self.simple_decoders = _layers(lambda: SimpleMaskDecoder(dim, config.mask_head_channels),
                                       len(config.scales))
        self.sample_layer_list = nn.ModuleList(
            Downsample(dim) if i % len(config.scales) == 0 else Upsample(dim)
            for i in range(1, n))
        self.res_query_layer_list = _layers(lambda: nn.Linear(dim, dim), n - 1)
        # Ours, persistent (the reference draws both at random on every call).
        self.sparse_clicks = SparseClickEncoder(dim, config.image_size)
        self.semantic_clicks = SemanticClickEncoder(dim, config.click_mlp_hidden, config.scales)

    def forward(self, features: list[torch.Tensor], structure: torch.Tensor | None,
                points: torch.Tensor | None, labels: torch.Tensor | None,
                previous: torch.Tensor | None) -> list[torch.Tensor]:
        """Fused pixel features (B, C, h, w) coarse first; `structure` (B,) 1-based class
        indices or None; clicks (B, K, 2) (row, col) in the model's slice with labels (B, K)
        or None; the previous result's probability (B, 1, S, S) (Mode 2) -> each layer's
        logits (B, 1, h, w)."""
        sizes = [tuple(f.shape[-2:]) for f in features]
        b = features[0].shape[0]
        positions = [to_sequence(sine_position(b, *size, f.shape[1], device=f.device))
                     for f, size in zip(features, sizes)]
        pixels = [to_sequence(f) + self.level_embed.weight[i]
                  for i, f in enumerate(features)]
        objects = self._object_queries(structure) if structure is not None else None
        clicks = self._click_queries(pixels, sizes, points, labels) \
            if points is not None and points.shape[1] else None
        if objects is None and clicks is None:
            raise ValueError("VerSe needs a structure, clicks or both")
        blocked = None
        if objects is not None and clicks is not None and previous is not None:
            prior = F.interpolate(previous.float(), size=sizes[0], mode="bilinear",
                                  align_corners=False).flatten(1)
            blocked = (prior < 0.5, prior >= 0.5)
        outputs, carried, carried_clicks = [], None, None
        for i in range(self.layers):
            level = i % len(sizes)
            pixel = pixels[level]
            if i > 0:
                pixel = pixel + to_sequence(self.sample_layer_list[i - 1](
                    to_map(carried, sizes[(i - 1) % len(sizes)])))
            queries, embeds = [], []
            if objects is not None:
                output, embed = objects
                mask = _attention_mask(None if blocked is None else blocked[0], self.heads,
                                       len(output))
                output = self.transformer_cross_attention_layers[i](
                    output, pixel, mask, positions[level], embed)
                output = self.transformer_self_attention_layers[i](output, embed)
                output = self.transformer_ffn_layers[i](output)
                objects = (output, embed)
                queries.append(output)
                embeds.append(embed)
            if clicks is not None:
                carried_clicks = self._click_layer(i, level, pixel, positions[level], clicks,
                                                   carried_clicks, blocked, queries, embeds)
            pixel = self.transformer_feature_query_cross_attention_layers[i](
                pixel, torch.cat(queries), None, torch.cat(embeds), positions[level])
            pixel = self.transformer_pixel_ffn_layers[i](pixel, sizes[level])
            pixels[level] = carried = pixel
            logits = self.simple_decoders[level](to_map(pixel, sizes[level]))
            outputs.append(logits)
            blocked = self._blocked(logits, sizes[(level + 1) % len(sizes)],
                                    binarise=objects is None)
            if clicks is not None and level == len(sizes) - 1 and i < self.layers - 1:
                # After each round (but the last) the semantic queries are read again.
                clicks = clicks[:2] + tuple(
                    (points, self.semantic_clicks(pixels, sizes, points))
                    for points, _ in clicks[2:])
        return outputs

    def _object_queries(self, structure: torch.Tensor):
        """The structure's queries and their embeddings, (Q, B, C) each."""
        rows = (structure.long() - 1)[:, None] * self.queries_per_class \
            + torch.arange(self.queries_per_class, device=structure.device)
        return (self.query_feat.weight[rows].permute(1, 0, 2),
                self.query_embed.weight[rows].permute(1, 0, 2))

    def _click_queries(self, pixels, sizes, points, labels):
        """(sparse positive, sparse negative, (positive points, semantic queries per level),
        (negative points, semantic queries per level))."""
        (pos_points, pos_labels), (neg_points, neg_labels) = polarity_lists(points, labels)
        return (self.sparse_clicks(pos_points, pos_labels),
                self.sparse_clicks(neg_points, neg_labels),
                (pos_points, self.semantic_clicks(pixels, sizes, pos_points)),
                (neg_points, self.semantic_clicks(pixels, sizes, neg_points)))

    def _click_layer(self, i, level, pixel, position, clicks, carried, blocked, queries,
                     embeds):
        """Positive and negative click queries through layer i (appended to `queries`);
        returns their semantic halves, carried to the next layer."""
        sparse_pos, sparse_neg, (_, semantic_pos), (_, semantic_neg) = clicks
        carried_out = []
        for side, sparse, semantic, side_blocked in (
                ("pos_", sparse_pos, semantic_pos[level], None if blocked is None else blocked[0]),
                ("neg_", sparse_neg, semantic_neg[level], None if blocked is None else blocked[1])):
            if i > 0:
                semantic = semantic + self.res_query_layer_list[i - 1](
                    carried[len(carried_out)])
            output = torch.cat((sparse, semantic))
            embed = sparse.repeat(2, 1, 1)
            mask = _attention_mask(side_blocked, self.heads, len(output))
            output = getattr(self, f"{side}transformer_cross_attention_layers")[i](
                output, pixel, mask, position, embed)
            output = getattr(self, f"{side}transformer_self_attention_layers")[i](output, embed)
            output = getattr(self, f"{side}transformer_ffn_layers")[i](output)
            carried_out.append(output[len(sparse):])
            queries.append(output)
            embeds.append(embed)
        return carried_out

    @staticmethod
    def _blocked(logits: torch.Tensor, size, binarise: bool):
        """Where the next layer's foreground and background queries may not look, (B, H*W)
        each: from the logits resized (with object queries) or from the binary mask resized
        (clicks only), as the reference."""
        logits = logits.detach()
        if binarise:
            resized = F.interpolate((logits.sigmoid() > 0.5).float(), size=size,
                                    mode="bilinear", align_corners=False).flatten(1)
            return resized < 0.5, resized > 0.5
        probability = F.interpolate(logits, size=size, mode="bilinear",
                                    align_corners=False).sigmoid().flatten(1)
        return probability < 0.5, ~(probability < 0.5)
