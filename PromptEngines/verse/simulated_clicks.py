"""The next click of a simulated user on one slice: in the largest error component (false
negatives and false positives, 8-connected; a tie goes to the false negatives), at a random
pixel deeper than a third of its greatest depth (training: VerSe's interior, with a random
pixel of it as augmentation) or at its deepest pixel (evaluation: deterministic). The
reference clicks at the interior's centre of mass, 4-connected, a tie to the false positives."""
from __future__ import annotations

import numpy as np

from ..evaluation.simulated_user import centre_click, interior_click


def next_click(prediction: np.ndarray, truth: np.ndarray, rng=None):
    """((row, col), label) or None when the slice is right."""
    click = (interior_click(prediction, truth, rng) if rng is not None
             else centre_click(prediction, truth))
    return None if click is None else (tuple(click.position), click.label)


def padded(per_sample: list[list], device=None):
    """Clicks of each sample as (B, K, 2) points and (B, K) labels, padded with no-click
    entries (label -1) to one length."""
    import torch                    # here: the click simulation itself is numpy only

    length = max(1, max(len(c) for c in per_sample))
    points = np.full((len(per_sample), length, 2), -10, np.int64)
    labels = -np.ones((len(per_sample), length), np.int64)
    for b, clicks in enumerate(per_sample):
        for i, (pixel, label) in enumerate(clicks):
            points[b, i], labels[b, i] = pixel, label
    return torch.from_numpy(points).to(device), torch.from_numpy(labels).to(device)
