"""PRISM's mask decoder: a UNet up path from the transformed image embedding through the
encoder's skips to full size, where each mask token's hypernetwork vector weighs the last
features into one candidate mask; a head predicts each candidate's Dice (the confidence the
selector picks by). The corrective refinement network sits here too, as in the reference."""
from __future__ import annotations

import torch
from torch import nn

from .config import PrismConfig
from .layers import MLP, UpCat
from .refine import Refine


class UNetDecoder(nn.Module):
    def __init__(self, features: tuple[int, ...]):
        super().__init__()
        f0, f1, f2, f3, f4 = features
        self.upcat_4 = UpCat(f4, f3, f3)
        self.upcat_3 = UpCat(f3, f2, f2)
        self.upcat_2 = UpCat(f2, f1, f1)
        self.upcat_1 = UpCat(f1, f0, f0, halves=False)
        self.final_conv = nn.Conv3d(f0, 2, 1)       # in the layout; the reference never runs it

    def forward(self, embedding: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        full, half, quarter, eighth = skips
        x = self.upcat_4(embedding, eighth)
        x = self.upcat_3(x, quarter)
        x = self.upcat_2(x, half)
        return self.upcat_1(x, full)


class MaskDecoder3D(nn.Module):
    def __init__(self, config: PrismConfig):
        super().__init__()
        dim, width = config.prompt_dim, config.cnn_features[0]
        self.outputs = config.outputs
        self.decoder = UNetDecoder(config.cnn_features)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, width, 3) for _ in range(config.outputs + 1))
        self.iou_prediction_head = MLP(dim, config.iou_hidden, config.outputs + 1, 3,
                                       sigmoid=True)
        if config.refine:
            self.refine = Refine(config.refine_channels)

    def forward(self, tokens: torch.Tensor, embedding: torch.Tensor, skips: list[torch.Tensor]):
        """Candidate logits (B, outputs, S, S, S) and their predicted Dice (B, outputs); the
        first mask token (the single-output one) is computed and left out, as in the
        reference's multiple-output mode."""
        features = self.decoder(embedding, skips)
        b, c = features.shape[:2]
        mask_tokens = tokens[:, 1:2 + self.outputs]
        hyper = torch.stack([mlp(mask_tokens[:, i])
                             for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        masks = (hyper @ features.view(b, c, -1)).view(b, -1, *features.shape[2:])
        scores = self.iou_prediction_head(tokens[:, 0])
        return masks[:, 1:], scores[:, 1:]
