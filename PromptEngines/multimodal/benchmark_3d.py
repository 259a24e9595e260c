"""multimodal in 3D: one step, one defect, on held-out synthetic CTA volumes, and the time of
a 3D "remove" / "extend" at 256 x 256 x 200.

Each case is a volume's vessel tree (the truth) with one defect of a kind built in 3D as the
2D benchmark builds it (defects.py; isotropic voxels, as the defects are made in voxels;
a thinner/thicker stretch spans ALONG_MM around its centre, the reach those commands have),
then one engine step at the defect's centre with the command that fixes it. Per command: the
share of the defect fixed, the share of cases with at least half fixed, and the cases where
voxels farther than AWAY_MM from the defect were made wrong (every command, "remove" and
"extend" included, which act along the clicked vessel: they may change far voxels of it, but
not wrongly).
"""
from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from ..data.synthetic.cta import vessel_volume
from ..errors import PromptError
from ..prompts import MaskPrompt, Text
from .along_vessel import ALONG_MM
from .defects import DEFECT_COMMANDS, DEFECT_KINDS, make_defect

FIRST_SEED = 1000          # held out: training volumes are seeds from 0
SPACING_MM = 0.7
SHAPE = (64, 96, 96)
AWAY_MM = 5.0
SPEED_SHAPE = (200, 256, 256)


def defect_cases(per_command: int, first_seed: int = FIRST_SEED):
    """Yields (kind, case, defect) until each kind has `per_command` cases, one defect of
    each kind per volume (volumes that offer no place for a kind are skipped for it)."""
    extent = ALONG_MM / SPACING_MM
    counts = dict.fromkeys(DEFECT_KINDS, 0)
    seed = first_seed
    while min(counts.values()) < per_command:
        case = vessel_volume(seed, SHAPE, (SPACING_MM,) * 3)
        truth = case.label > 0
        for index, kind in enumerate(DEFECT_KINDS):
            if counts[kind] >= per_command:
                continue
            rng = np.random.default_rng([seed, index])
            defect = make_defect(kind, truth, rng, image=case.volume.array,
                                 local_extent=(0.6 * extent, extent))
            if defect is not None:
                counts[kind] += 1
                yield kind, case, defect
        seed += 1


def text_step(engine, image, spacing, mask, position, command: str):
    """(the mask (bool) after one text step at `position` through the engine, from `mask` on
    `image`; the step's seconds). A refused step leaves the mask as it was."""
    engine.set_image(np.asarray(image, np.float32), spacing)
    engine.run(MaskPrompt(np.asarray(mask, np.uint8)))
    started = time.perf_counter()
    try:
        after = engine.run(Text(command, tuple(float(c) for c in position))) > 0
    except PromptError:
        after = np.asarray(mask, bool)
    return after, time.perf_counter() - started


def one_step(engine, case, defect) -> tuple[np.ndarray, float]:
    """The mask after the defect's command at its point, and the step's seconds."""
    return text_step(engine, case.volume.array, case.volume.spacing_zyx, defect.mask,
                     defect.point, defect.command)


def score(after, truth, defect, spacing) -> dict:
    wrong = after != truth
    away = ndimage.distance_transform_edt(~defect.region, sampling=spacing) > AWAY_MM
    made_wrong = wrong & (defect.mask == truth) & away
    return {"fixed": 1.0 - float(wrong[defect.region].mean()),
            "made_wrong_away": int(made_wrong.sum())}


def one_step_one_defect_3d(engine, per_command: int) -> dict:
    rows = {kind: [] for kind in DEFECT_KINDS}
    for kind, case, defect in defect_cases(per_command):
        after, seconds = one_step(engine, case, defect)
        row = score(after, case.label > 0, defect, case.volume.spacing_zyx)
        rows[kind].append(row | {"seconds": seconds})
    results = {}
    for kind, done in rows.items():
        fixed = np.array([r["fixed"] for r in done])
        results[DEFECT_COMMANDS[kind]] = {
            "cases": len(done), "mean_fixed": float(fixed.mean()),
            "half_fixed_share": float((fixed >= 0.5).mean()),
            "cases_made_wrong_away": int(sum(r["made_wrong_away"] > 0 for r in done)),
            "median_seconds": float(np.median([r["seconds"] for r in done]))}
    return {"spacing_mm": SPACING_MM, "shape": list(SHAPE), "first_seed": FIRST_SEED,
            "per_command": results}


def speed_3d(engine, repeats: int = 3) -> dict:
    """Seconds of a 3D "remove" (a false piece) and "extend" (a missing branch) at
    SPEED_SHAPE, the median of `repeats` each, after one untimed run."""
    case = vessel_volume(FIRST_SEED, SPEED_SHAPE)
    truth = case.label > 0
    out = {"shape": list(SPEED_SHAPE), "spacing_zyx": [float(s) for s in
                                                        case.volume.spacing_zyx]}
    for kind in ("false_positive", "missing_branch"):
        defect = make_defect(kind, truth, np.random.default_rng(0), image=case.volume.array)
        times = [one_step(engine, case, defect)[1] for _ in range(repeats + 1)]
        out[f"median_{DEFECT_COMMANDS[kind]}_seconds"] = float(np.median(times[1:]))
    return out
