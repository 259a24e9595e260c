"""PRISM as one module in the reference's layout (`image_encoder`, `prompt_encoder`,
`mask_decoder`), and the calls an interaction makes: encode the cube once, then per iteration
prompt, decode the candidates, select the one of highest predicted Dice, refine it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import PrismConfig
from .image_encoder import HybridEncoder
from .mask_decoder import MaskDecoder3D
from .prompt_encoder import PromptEncoder3D


@dataclass
class Prediction:
    logits: torch.Tensor          # (B, 1, S, S, S): the selected candidate, refined if asked
    candidates: torch.Tensor      # (B, outputs, S, S, S)
    scores: torch.Tensor          # (B, outputs): each candidate's predicted Dice
    chosen: torch.Tensor          # (B,): the selected candidate's index
    error: torch.Tensor | None    # the refinement's error map, if refined


class Prism(nn.Module):
    def __init__(self, config: PrismConfig):
        super().__init__()
        self.config = config
        self.image_encoder = HybridEncoder(config)
        self.prompt_encoder = PromptEncoder3D(config)
        self.mask_decoder = MaskDecoder3D(config)

    def encode(self, image: torch.Tensor):
        """The cube's features, computed once per cube: (embedding, skips)."""
        return self.image_encoder(image)

    def predict(self, features, coords: torch.Tensor, labels: torch.Tensor,
                box: torch.Tensor | None, previous: torch.Tensor,
                select: bool = True) -> Prediction:
        """One iteration's candidates from this iteration's clicks (B, N, 3) (d0, d1, d2)
        voxel indices of the cube, labels (B, N), a box (B, 6) or None and the previous
        logits (B, 1, S, S, S); the selector picks the highest predicted Dice (`select`
        False: the first candidate, as a single-output model would)."""
        embedding, skips = features
        previous = self.prompt_encoder.mask_input(previous, self.config.mask_input_size)
        tokens, image = self.prompt_encoder(embedding, coords, labels, box, previous)
        candidates, scores = self.mask_decoder(tokens, image, skips)
        chosen = (scores.argmax(dim=1) if select else
                  torch.zeros(len(scores), dtype=torch.long, device=scores.device))
        logits = candidates[torch.arange(len(chosen)), chosen][:, None]
        return Prediction(logits, candidates, scores, chosen, None)

    def refine(self, image: torch.Tensor, prediction: Prediction, coords: torch.Tensor,
               labels: torch.Tensor) -> Prediction:
        """The corrective refinement of the selected mask, from every click so far."""
        logits, error = self.mask_decoder.refine(image, prediction.logits, coords, labels)
        return Prediction(logits, prediction.candidates, prediction.scores, prediction.chosen,
                          error)
