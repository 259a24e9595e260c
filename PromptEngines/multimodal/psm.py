"""The Prompt Sequence Module (Lim & Lee, MICCAI 2025): how the prompts of every step so far
become the sparse tokens the mask decoder attends to.

A sequence of K steps arrives as point tokens (B, K, D) (SAM's point embedding of each step's
click, its label included) and text tokens (B, K, D) (each step's command embedding, mapped
to the prompt width; `has_text` (B, K) False where a step has no command). The paper
compares five ways of aggregating them; `last_text` (self-attention over all points + only
the last text) is the method's default:

    none       every point and text token, concatenated (no aggregation)
    lstm       an LSTM over the steps (point + text), its outputs added to them
    cross      the points attend to the texts (query: points; key/value: texts)
    self_text  self-attention over all texts, then concatenated with the points
    last_text  self-attention over all points and the last step's text
"""
from __future__ import annotations

import torch
from torch import nn

PSM_VARIANTS = ("none", "lstm", "cross", "self_text", "last_text")
DEFAULT_PSM = "last_text"


class _Attention(nn.Module):
    """Pre-norm multi-head attention with a residual and a feed-forward block."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_query, self.norm_memory = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def start_as_identity(self) -> None:
        """Zero outputs: a new module passes its tokens through unchanged, so a decoder
        trained before the PSM (the paper's phase 1) is undisturbed when it joins."""
        for layer in (self.attention.out_proj, self.mlp[-1]):
            nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)

    def forward(self, query, memory):
        q, m = self.norm_query(query), self.norm_memory(memory)
        attended, _ = self.attention(q, m, m, need_weights=False)
        query = query + attended
        return query + self.mlp(self.norm_mlp(query))


class PromptSequenceModule(nn.Module):
    """(point tokens, text tokens, has_text) of K steps -> sparse tokens (B, T, D). A step
    without text carries a learned "no command" token instead (as SAM pads points with its
    not-a-point embedding), so the decoder never needs a padding mask."""

    def __init__(self, dim: int, variant: str = DEFAULT_PSM, heads: int = 8):
        super().__init__()
        if variant not in PSM_VARIANTS:
            raise ValueError(f"unknown PSM variant {variant!r}; known: {', '.join(PSM_VARIANTS)}")
        self.variant = variant
        self.no_text = nn.Parameter(torch.zeros(dim))
        if variant == "lstm":
            self.lstm = nn.LSTM(dim, dim, batch_first=True)
            self.lstm_out = nn.Linear(dim, dim)
            nn.init.zeros_(self.lstm_out.weight), nn.init.zeros_(self.lstm_out.bias)
        elif variant != "none":
            self.attention = _Attention(dim, heads)
            if variant != "cross":      # cross-attention is how "cross" sees text at all
                self.attention.start_as_identity()

    def forward(self, points: torch.Tensor, texts: torch.Tensor,
                has_text: torch.Tensor) -> torch.Tensor:
        texts = torch.where(has_text[..., None], texts, self.no_text.to(texts.dtype))
        if self.variant == "none":
            return torch.cat([points, texts], 1)
        if self.variant == "lstm":
            steps = points + texts
            return steps + self.lstm_out(self.lstm(steps)[0])
        if self.variant == "cross":
            return self.attention(points, texts)
        if self.variant == "self_text":
            return torch.cat([points, self.attention(texts, texts)], 1)
        # last_text: all points and the last step's text, attending to each other.
        tokens = torch.cat([points, texts[:, -1:]], 1)
        return self.attention(tokens, tokens)
