"""VerSe's loss: 5 x Dice + 5 x BCE on every decoder layer's mask (deep supervision), each
upsampled to the slice's size; Dice with +1 smoothing, both averaged over the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

DICE_WEIGHT = 5.0
BCE_WEIGHT = 5.0


def mask_loss(outputs: list[torch.Tensor], truth: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Layer logits (B, 1, h, w) and the truth (B, 1, S, S) in {0, 1}."""
    target = truth.flatten(1)
    dice_total, bce_total = 0.0, 0.0
    for logits in outputs:
        logits = F.interpolate(logits, size=truth.shape[-2:], mode="bilinear",
                               align_corners=False).flatten(1)
        probability = logits.sigmoid()
        overlap = 2 * (probability * target).sum(-1)
        dice_total = dice_total + (1 - (overlap + 1) / (probability.sum(-1)
                                                        + target.sum(-1) + 1)).mean()
        bce_total = bce_total + F.binary_cross_entropy_with_logits(logits, target)
    loss = DICE_WEIGHT * dice_total + BCE_WEIGHT * bce_total
    return loss, {"dice_loss": float(dice_total.detach()), "bce_loss": float(bce_total.detach())}
