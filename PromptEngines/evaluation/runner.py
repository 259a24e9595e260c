"""Simulated-user evaluation: an engine, synthetic cases and clicks at the largest error.

Seeds from 1000 up are held out: training draws its synthetic cases below that.
"""
from __future__ import annotations

import time

import numpy as np

from ..data.synthetic.cta import vessel_volume
from ..registry import get_engine
from ..errors import PromptError
from ..prompts import Point
from . import metrics
from .simulated_user import centre_click

HELD_OUT_FIRST_SEED = 1000


def click_session(engine, image, truth, spacing, clicks: int) -> dict:
    """Clicks at the centre of the largest error, one after another; Dice after each.
    A click the engine refuses (e.g. nothing stands out there) leaves the mask as it was."""
    engine.set_image(image, spacing)
    curve, refused, seconds = [], 0, []
    for _ in range(clicks):
        click = centre_click(engine.mask, truth, spacing)
        if click is not None:
            started = time.perf_counter()
            try:
                engine.run(Point(click.position, click.label))
            except PromptError:
                refused += 1
            seconds.append(time.perf_counter() - started)
        curve.append(metrics.dice(engine.mask, truth))
    return {"dice_curve": curve, "refused_clicks": refused,
            "seconds_per_click": float(np.mean(seconds)) if seconds else 0.0,
            "final": metrics.summary(engine.mask, truth, spacing)}


def evaluate_clicks(engine_name: str, cases: int = 5, clicks: int = 5,
                    first_seed: int = HELD_OUT_FIRST_SEED, weights=None, device=None) -> dict:
    engine = get_engine(engine_name, weights, device)
    per_case = []
    for seed in range(first_seed, first_seed + cases):
        case = vessel_volume(seed)
        result = click_session(engine, case.volume.array, case.label,
                               case.volume.spacing_zyx, clicks)
        result["seed"] = seed
        per_case.append(result)
    curves = np.array([c["dice_curve"] for c in per_case])
    summary = {"dice_curve": curves.mean(axis=0).tolist(),
               "noc85": float(np.mean([metrics.noc(c, 0.85, clicks) for c in curves])),
               "noc90": float(np.mean([metrics.noc(c, 0.90, clicks) for c in curves]))}
    return {"engine": engine_name, "cases": cases, "clicks": clicks, "summary": summary,
            "per_case": per_case}
