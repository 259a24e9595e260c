"""verse's held-out evaluation during training (`ivseg train`'s model card): Mode 1 per
structure and Mode 3 after a few clicks on held-out stacks, on the model's grid."""
from __future__ import annotations

import numpy as np
import torch

from ..data.synthetic.cardiac import CARDIAC_LABELS
from ..evaluation.metrics import dice
from .config import HELD_OUT_FIRST_SEED, STRUCTURE_CLASSES
from .simulated_clicks import next_click, padded
from .stacks import stack_case


def evaluate_modes(model, stacks: int = 3, first_seed: int = HELD_OUT_FIRST_SEED,
                   clicks: int = 3) -> dict:
    """Held-out stacks: Mode 1 Dice per structure (over the slices that show it; VerSe only)
    and Mode 3 Dice after `clicks` clicks (mean over slice-structure pairs), on the model's
    grid."""
    size = model.config.image_size
    automatic = model.config.architecture == "verse"
    per_structure = {name: [] for name in STRUCTURE_CLASSES}
    mode3 = []
    with torch.no_grad():
        for seed in range(first_seed, first_seed + stacks):
            images, labels = stack_case(seed, 10, 192, size)
            features = model.encode(images)
            for name, index in STRUCTURE_CLASSES.items():
                truth = (labels == CARDIAC_LABELS[name]).numpy()
                shown = [k for k in range(len(truth)) if truth[k].any()]
                if automatic:
                    structure = torch.full((len(images),), index)
                    logits = model.full_size(model.decode(features, structure)[-1])
                    predicted = logits[:, 0].numpy() > 0
                    per_structure[name] += [dice(predicted[k], truth[k]) for k in shown]
                k = shown[len(shown) // 2]
                mode3.append(_clicks_only(model, [f[k:k + 1] for f in features], truth[k],
                                          clicks))
    mode1 = {f"mode1_dice_{name}": float(np.mean(d)) for name, d in per_structure.items() if d}
    return {**mode1, f"mode3_dice_at_{clicks}": float(np.mean(mode3)), "stacks": stacks,
            "first_seed": first_seed}


def _clicks_only(model, features, truth, count: int) -> float:
    previous, clicks = torch.zeros(1, 1, *truth.shape), []
    for _ in range(count):
        click = next_click(previous[0, 0].numpy() > 0.5, truth)
        if click is None:
            break
        clicks.append(click)
        logits = model.decode(features, None, *padded([clicks]), previous)[-1]
        previous = model.full_size(logits).sigmoid()
    return dice(previous[0, 0].numpy() > 0.5, truth)

