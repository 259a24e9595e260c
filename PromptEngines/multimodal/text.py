"""The five text commands as the models see them: CLIP's BPE tokens, and the tiny
configuration's text tower.

The paper embeds a command with CLIP's text tower (open_clip ViT-B-32, width 512) and maps it
to the prompt width with one Linear. The tiny configuration keeps the same tokens (open_clip's
tokenizer, bundled, offline) and replaces the 63 M-parameter tower with a bag of token
embeddings (hashed into a small table) and a small MLP: five fixed commands need no language
model, and the method's Linear to the prompt width stays as it is.
"""
from __future__ import annotations

import torch
from torch import nn

from ..prompts import TEXT_COMMANDS

CONTEXT = 77                 # CLIP's token context


def command_tokens() -> torch.Tensor:
    """(5, 77) open_clip ViT-B-32 token ids of TEXT_COMMANDS, in that order."""
    import open_clip              # 3 s to import: only when a model is built, never at load

    return open_clip.get_tokenizer("ViT-B-32")(list(TEXT_COMMANDS))


def placeholder_tokens() -> torch.Tensor:
    """Zeros in the tokens' shape, for a model whose checkpoint holds the real ones (no
    open_clip needed to load it)."""
    return torch.zeros(len(TEXT_COMMANDS), CONTEXT, dtype=torch.long)


class BagOfTokens(nn.Module):
    """Tiny text tower: the mean embedding of a command's tokens (ids hashed into `buckets`)
    through a two-layer MLP -> (N, width). The token ids are a buffer, so a saved model
    loads without open_clip."""

    def __init__(self, width: int = 64, buckets: int = 1024, tokens: torch.Tensor | None = None):
        super().__init__()
        self.buckets = buckets
        self.register_buffer("tokens", command_tokens() if tokens is None
                             else tokens.clone(), persistent=True)
        self.embedding = nn.Embedding(buckets, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self) -> torch.Tensor:
        """The five commands' embeddings, (5, width)."""
        present = (self.tokens > 0).to(self.embedding.weight.dtype)
        summed = (self.embedding(self.tokens % self.buckets) * present[..., None]).sum(1)
        return self.mlp(summed / present.sum(1, keepdim=True))


def text_tokens(table: torch.Tensor, commands: torch.Tensor):
    """Per-step text tokens from a (5, D) table of command embeddings: commands (B, K) with
    -1 for "no text" -> tokens (B, K, D) (zero where absent) and has_text (B, K)."""
    has_text = commands >= 0
    tokens = table[commands.clamp(min=0)]
    return tokens * has_text[..., None].to(tokens.dtype), has_text
