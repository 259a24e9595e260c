"""PRISM's training losses (per iteration): for each candidate mask Dice + cross-entropy and
10 x the squared error of boundary maps (|m - avgpool(m)|), the predicted Dice's squared error
against the candidate's true Dice, and the same structural terms for the refined mask."""
from __future__ import annotations

import torch
from torch.nn import functional as F

BOUNDARY_WEIGHT = 10.0


def boundary(probability: torch.Tensor) -> torch.Tensor:
    return (probability - F.avg_pool3d(probability, 3, stride=1, padding=1)).abs()


def dice(probability: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per sample (B,), over (B, 1, S, S, S) maps."""
    dims = tuple(range(1, probability.dim()))
    overlap = (probability * truth).sum(dims)
    return (2 * overlap + 1.0) / (probability.sum(dims) + truth.sum(dims) + 1.0)


def structural(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    return ((1 - dice(probability, truth)).mean()
            + F.binary_cross_entropy_with_logits(logits, truth)
            + BOUNDARY_WEIGHT * F.mse_loss(boundary(probability), boundary(truth)))


def iteration_loss(prediction, refined_logits, truth: torch.Tensor) -> tuple[torch.Tensor, dict]:
    candidates, scores = prediction.candidates, prediction.scores
    loss = torch.zeros((), device=truth.device)
    true_dice = []
    for k in range(candidates.shape[1]):
        logits = candidates[:, k:k + 1]
        loss = loss + structural(logits, truth)
        true_dice.append(dice((logits > 0).float(), truth).detach())
    true_dice = torch.stack(true_dice, dim=1)
    loss = loss + F.mse_loss(scores, true_dice)
    if refined_logits is not None:
        loss = loss + structural(refined_logits, truth)
    chosen = true_dice[torch.arange(len(true_dice)), prediction.chosen]
    return loss, {"dice_selected": float(chosen.mean()),
                  "dice_best": float(true_dice.max(1)[0].mean())}
