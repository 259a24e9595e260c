"""One-click tracing on held-out synthetic vessel volumes: the tracer's own evaluation."""
from __future__ import annotations

import time

import numpy as np

from ..data.synthetic.cta import vessel_volume
from ..evaluation import metrics
from .normalise import click_normalised
from .tracking import SliceTracer, TraceOptions

HELD_OUT_FIRST_SEED = 1000


def trace_case(model, case, options, device: str = "cpu") -> tuple[np.ndarray, float]:
    """The traced mask from the case's seed click, and the seconds it took (normalisation
    included)."""
    started = time.perf_counter()
    volume = click_normalised(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    tracer = SliceTracer(model, volume, options, device,
                         spacing=case.volume.spacing_zyx)
    mask = np.zeros(case.volume.shape, bool)
    for result in tracer.trace(case.seed_index[1:], case.seed_index[0]):
        mask[result.z, result.rows, result.cols] |= result.mask
    return mask, time.perf_counter() - started


def case_report(mask, case, seconds) -> dict:
    report = metrics.summary(mask, case.label, case.volume.spacing_zyx)
    report["distractor_fraction"] = metrics.fraction_on(mask, case.distractor)
    report["seconds"] = seconds
    return report


def traced_report(model, case, options, device: str = "cpu") -> dict:
    """Trace the case from its click and measure the result."""
    mask, seconds = trace_case(model, case, options, device)
    return case_report(mask, case, seconds)


def evaluate_tracer(model, trace_options: dict | None = None, cases: int = 4,
                    first_seed: int = HELD_OUT_FIRST_SEED) -> dict:
    options = TraceOptions(**(trace_options or {}))
    device = str(next(model.parameters()).device)       # where the trainer left the model
    reports = []
    for seed in range(first_seed, first_seed + cases):
        case = vessel_volume(seed)
        try:
            mask, seconds = trace_case(model, case, options, device)
        except Exception as error:          # a refused click counts as an empty result
            mask, seconds = np.zeros(case.volume.shape, bool), 0.0
            print(f"held-out case {seed}: {error}")
        reports.append(case_report(mask, case, seconds))
    keys = ("dice", "cldice", "hd95_mm", "betti0_error", "distractor_fraction", "seconds")
    summary = {f"median_{k}": float(np.median([r[k] for r in reports])) for k in keys}
    summary.update(cases=cases, first_seed=first_seed)
    return summary
