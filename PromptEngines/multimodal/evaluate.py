"""Correction sessions on held-out 2D vessel images, as the paper evaluates: an imperfect
starting mask (several defects built from the truth), then a simulated user's steps, each a
click at the centre of the largest remaining error with the command that fixes it
(`evaluation.simulated_user.text_command`); IoU and clDice after each step."""
from __future__ import annotations

import numpy as np

from ..evaluation import metrics
from ..evaluation.simulated_user import text_command
from .correction import Step, run_step
from .defects import imperfect_mask
from .samples import fundus_pictures

HELD_OUT_FIRST_SEED = 1000          # fundus seeds below are training pictures


def held_out_cases(cases: int, first_seed: int = HELD_OUT_FIRST_SEED, size: int = 320,
                   realism: str = "clinical"):
    """(picture, starting mask) pairs, deterministic by seed: ambiguous pictures by default
    (samples.fundus_pictures), where an automatic model's masks fail as in the paper."""
    out = []
    for picture in fundus_pictures(range(first_seed, first_seed + cases), size, realism):
        rng = np.random.default_rng([int(first_seed), len(out), 77])
        start, _ = imperfect_mask(picture.truth, rng, image=picture.image)
        out.append((picture, start))
    return out


def correction_session(model, image, truth, start, steps: int, with_text: bool = True,
                       device: str = "cpu") -> dict:
    """`steps` simulated steps from `start`; IoU and clDice after each (index 0: the start).
    `with_text` False: the same clicks without commands, labelled by the error's sign (a
    points-only SAM-style session)."""
    mask, sequence = np.asarray(start, bool), []
    ious, cldices = [metrics.iou(mask, truth)], [metrics.cldice(mask, truth)]
    for _ in range(steps):
        found = text_command(mask[None], truth[None])
        if found is None:
            ious.append(ious[-1]), cldices.append(cldices[-1])
            continue
        command, click = found
        point = tuple(float(p) for p in click.position[1:])
        sequence.append(Step.text(point, command) if with_text
                        else Step(point, -1, click.label))
        mask = run_step(model, image, mask, sequence, device)[0] > 0
        ious.append(metrics.iou(mask, truth)), cldices.append(metrics.cldice(mask, truth))
    return {"iou": ious, "cldice": cldices}


def evaluate_corrections(model, cases: int = 8, steps: int = 5,
                         first_seed: int = HELD_OUT_FIRST_SEED) -> dict:
    """The trainer's held-out check: mean IoU before and after `steps` steps, and the share
    of cases that end below their start."""
    device = str(next(model.parameters()).device)
    runs = [correction_session(model, picture.image, picture.truth, start, steps, device=device)
            for picture, start in held_out_cases(cases, first_seed)]
    start = np.array([r["iou"][0] for r in runs])
    end = np.array([r["iou"][-1] for r in runs])
    return {"mean_iou_start": float(start.mean()), f"mean_iou_at_{steps}": float(end.mean()),
            "worse_fraction": float((end < start).mean()), "cases": cases,
            "first_seed": first_seed}
