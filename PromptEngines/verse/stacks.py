"""Synthetic short-axis stacks as VerSe's training and evaluation see them: each slice
prepared exactly as the engine prepares it, the labels on the same grid."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.synthetic.cardiac import cardiac_volume
from .slices import normalised, to_model


def stack_case(seed: int, slices: int, size: int, model_size: int):
    """(slices as the model sees them (S, 1, M, M), labels on that grid (S, M, M))."""
    case = cardiac_volume(seed, slices=slices, size=size)
    images = to_model(normalised(case.volume.array), model_size)
    labels = F.interpolate(torch.from_numpy(case.labels.astype(np.float32))[:, None],
                           size=(model_size, model_size), mode="nearest-exact")[:, 0]
    return images, labels.to(torch.uint8)
