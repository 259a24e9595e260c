"""Synthetic short-axis stacks as VerSe's training and evaluation see them: each slice
prepared exactly as the engine prepares it, the labels on the same grid."""
from __future__ import annotations

from ..data.synthetic.cardiac import cardiac_volume
from .slices import labels_to_model, normalised, to_model


def stack_case(seed: int, slices: int, size: int, model_size: int):
    """(slices as the model sees them (S, 1, M, M), labels on that grid (S, M, M))."""
    case = cardiac_volume(seed, slices=slices, size=size)
    return (to_model(normalised(case.volume.array), model_size),
            labels_to_model(case.labels, model_size))
