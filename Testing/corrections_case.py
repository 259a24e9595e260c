"""A traced mask made wrong the two ways a one-click trace goes wrong, for the tests of the
correction commands end to end (panel, prompts files): a terminal branch missed, and the
neighbouring vessel leaked into through a thin bridge."""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from PromptEngines.data.regions import deepest_point
from PromptEngines.multimodal.defects import make_defect


@dataclass
class LeakAndMissedBranch:
    mask: np.ndarray           # bool: the trace without the branch, with the leak
    branch: np.ndarray         # bool: the branch taken away
    branch_point: tuple        # (z, y, x) voxel in the branch's middle
    leak: np.ndarray           # bool: the neighbouring vessel and the bridge to it
    leak_point: tuple          # (z, y, x) voxel in the neighbour's middle
    bridge: np.ndarray         # bool


def leak_and_missed_branch(traced, neighbour, spacing) -> LeakAndMissedBranch:
    traced, neighbour = np.asarray(traced) > 0, np.asarray(neighbour) > 0
    missed = make_defect("missing_branch", traced, np.random.default_rng(0))
    kept = missed.mask
    # The bridge: from the kept voxel nearest the neighbour straight to the neighbour, one
    # voxel thick around the line (about a millimetre: thinner than either vessel).
    distance, nearest = ndimage.distance_transform_edt(~neighbour, sampling=spacing,
                                                       return_indices=True)
    a = np.unravel_index(np.argmin(np.where(kept, distance, np.inf)), traced.shape)
    b = nearest[(slice(None),) + tuple(a)]
    line = np.zeros(traced.shape, bool)
    for t in np.linspace(0.0, 1.0, 4 * int(np.abs(np.subtract(b, a)).max()) + 2):
        line[tuple(np.round(np.add(a, t * np.subtract(b, a))).astype(int))] = True
    bridge = ndimage.binary_dilation(line, ndimage.generate_binary_structure(3, 1)) & ~kept
    leak = (neighbour | bridge) & ~kept
    return LeakAndMissedBranch(kept | leak, missed.region, tuple(missed.point), leak,
                               deepest_point(neighbour, spacing), bridge)
