"""`ivseg bench --engine prism`: iterative correction on held-out volumes, through the engine
as the panel drives it (the cube placed around the user's first prompt, resampled, pasted
back; Dice over the whole volume).

Cases: faint tumours in an organ crossed by vessels (`organ_tumour_volume`, seeds from 1000)
and vessel segments (the tree within 20 mm of a vessel voxel of a CTA volume, seeds from
1000). A simulated user makes 11 iterations; each looks at the error inside the cube the
engine works in:
- PRISM-ultra: the truth's box at iteration 1 (kept), one click drawn from FN or FP and a
  scribble along the largest error's skeleton every iteration; selector and refinement on;
  corrections local (`local_correction.py`), as the engine runs by default;
- PRISM-ultra, whole-cube output: the same with the model's output taken over the whole
  cube at every iteration, as the paper;
- points only (PRISM-plain): one click per iteration, no box, no scribbles;
- no refinement / single output (no confidence): ultra's prompts with that part off;
- regiongrow: ultra's prompts (scribble points as seeds) to the baseline.
Per row: median Dice after 1 and 11 iterations, and the share of cases whose Dice never
drops by more than 0.01 from one iteration to the next. Speed: one interaction on a 128^3
volume on `threads` CPU threads (the first, which encodes the cube, and the later ones).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.cta import vessel_volume
from ..data.regions import within_mm
from ..data.synthetic.organ_tumour import LABELS, organ_tumour_volume
from ..descriptor import BenchSettings
from ..errors import PromptError
from ..evaluation.tables import markdown_table, save_results
from ..prompts import Box, Point, Scribble
from .engine import PrismEngine
from .simulated_prompts import error_clicks, error_scribble, truth_box
from .train import HELD_OUT_FIRST_SEED

ITERATIONS = 11
TUMOURS, VESSEL_SEGMENTS = 14, 8
SEGMENT_MM = 20.0
DROP = 0.01


def held_out_cases(tumours: int = TUMOURS, segments: int = VESSEL_SEGMENTS) -> list[dict]:
    cases = []
    for seed in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + tumours):
        case = organ_tumour_volume(seed)
        cases.append({"name": f"tumour {seed}", "image": case.volume.array,
                      "spacing": case.volume.spacing_zyx,
                      "truth": case.labels == LABELS["tumour"]})
    for seed in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + segments):
        case = vessel_volume(seed)
        rng = np.random.default_rng(seed)
        voxels = np.argwhere(case.label)
        centre = voxels[rng.integers(len(voxels))]
        near = within_mm(case.label.shape, centre, case.volume.spacing_zyx, SEGMENT_MM)
        cases.append({"name": f"vessel segment {seed}", "image": case.volume.array,
                      "spacing": case.volume.spacing_zyx, "truth": (case.label > 0) & near})
    return cases


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1))


def _within(engine, truth: np.ndarray) -> np.ndarray:
    """Where the user's corrections can go: the engine's cube once it has one."""
    region = getattr(engine, "working_region", None)
    if region is None:
        return np.ones(truth.shape, bool)
    inside = np.zeros(truth.shape, bool)
    inside[region] = True
    return inside


def session_curve(engine, case: dict, rng, box: bool, scribbles: bool,
                  iterations: int = ITERATIONS) -> list[float]:
    """Dice over the volume after each iteration of the simulated user."""
    truth = case["truth"]
    engine.set_image(case["image"], case["spacing"])
    curve = []
    for iteration in range(iterations):
        mask = engine.mask > 0
        inside = _within(engine, truth)
        prompts = []
        if box and iteration == 0:
            low_high = truth_box(truth)
            prompts.append(Box(tuple(low_high[:3]), tuple(v - 1 for v in low_high[3:])))
        for voxel, label in error_clicks(truth & inside, mask & inside, 1, rng):
            prompts.append(Point(tuple(float(v) for v in voxel), label))
        if scribbles:
            stroke = error_scribble(truth & inside, mask & inside, rng)
            if len(stroke) >= 2:
                prompts.append(Scribble(tuple(tuple(float(v) for v in p) for p, _ in stroke),
                                        stroke[0][1]))
        for prompt in prompts:
            try:
                engine.run(prompt)
            except PromptError:
                pass                       # refused (e.g. regiongrow finds no contrast)
        curve.append(dice(engine.mask > 0, truth))
    return curve


def rows(weights) -> dict:
    from ..regiongrow.engine import RegionGrowEngine

    return {"PRISM-ultra (points + box + scribbles)":
                (lambda: PrismEngine(weights=weights, device="cpu"), True, True),
            "PRISM-ultra, whole-cube output (paper)":
                (lambda: PrismEngine(weights=weights, device="cpu", local_corrections=False),
                 True, True),
            "points only (PRISM-plain)":
                (lambda: PrismEngine(weights=weights, device="cpu"), False, False),
            "no refinement": (lambda: PrismEngine(weights=weights, device="cpu", refine=False),
                              True, True),
            "single output (no confidence)":
                (lambda: PrismEngine(weights=weights, device="cpu", select=False), True, True),
            "regiongrow (same prompts)": (lambda: RegionGrowEngine(), True, True)}


def summarise(curves: list[list[float]]) -> dict:
    array = np.asarray(curves)
    steady = [bool(np.all(np.diff(c) >= -DROP)) for c in array]
    return {"median_dice_curve": [float(v) for v in np.median(array, axis=0)],
            "median_dice_1": float(np.median(array[:, 0])),
            f"median_dice_{array.shape[1]}": float(np.median(array[:, -1])),
            "never_drops_share": float(np.mean(steady)), "per_case": array.tolist()}


def interaction_speed(weights, repeats: int = 6, device: str = "cpu") -> dict:
    """One interaction on a 128^3 volume (1 mm voxels): the first (cube encoded) and later."""
    case = organ_tumour_volume(HELD_OUT_FIRST_SEED, shape=(128, 128, 128))
    centre = tuple(np.argwhere(case.labels == LABELS["tumour"]).mean(axis=0))
    gpu = device.startswith("cuda")

    def fresh_engine():
        made = PrismEngine(weights=weights, device=device)
        made.set_image(case.volume.array, (1.0, 1.0, 1.0))
        return made

    def timed(prompt) -> float:
        started = time.perf_counter()
        engine.run(prompt)
        if gpu:
            torch.cuda.synchronize(torch.device(device))
        return time.perf_counter() - started

    if gpu:                 # CUDA's one-time start-up and kernel choices stay out of the times
        engine = fresh_engine()
        timed(Point(centre, 1))
        timed(Point(centre, 0))
    engine = fresh_engine()

    first = timed(Point(centre, 1))
    later = [timed(Point(tuple(np.asarray(centre) + (0, index % 3, 1)), index % 2))
             for index in range(repeats)]
    return {"first_interaction_s": first, "later_interaction_s": float(np.median(later)),
            "volume": [128, 128, 128]}


def run(settings: BenchSettings) -> dict:
    torch.set_num_threads(settings.threads)
    weights = settings.weights or PrismEngine.descriptor.weights_path
    cases = held_out_cases() if settings.cases is None else held_out_cases(
        settings.cases - settings.cases // 3, settings.cases // 3)
    results = {"weights": str(weights), "threads": settings.threads, "iterations": ITERATIONS,
               "cases": [c["name"] for c in cases], "rows": {}}
    for name, (make, box, scribbles) in rows(weights).items():
        engine = make()
        curves = [session_curve(engine, case, np.random.default_rng(index), box, scribbles)
                  for index, case in enumerate(cases)]
        results["rows"][name] = summarise(curves)
    if settings.speed:
        results["speed"] = interaction_speed(weights)
    return save_results(settings.out, "prism", results, plot)


def table(results: dict) -> str:
    n = results["iterations"]
    body = [[name, f"{r['median_dice_1']:.3f}", f"{r[f'median_dice_{n}']:.3f}",
             f"{100 * r['never_drops_share']:.0f} %"] for name, r in results["rows"].items()]
    text = markdown_table(["method", "Dice after 1", f"Dice after {n}",
                           f"never drops > {DROP}"], body)
    if "speed" in results:
        speed = results["speed"]
        text += (f"\n\nOne interaction at 128³ on {results['threads']} CPU threads: first "
                 f"{speed['first_interaction_s']:.2f} s (cube encoded), later "
                 f"{speed['later_interaction_s']:.2f} s.")
    return text


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for name, r in results["rows"].items():
        curve = r["median_dice_curve"]
        axes[0].plot(range(1, len(curve) + 1), curve, "o-", ms=3, label=name)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("median Dice")
    axes[0].legend(fontsize=7)
    for axis, name in zip(axes[1:], list(results["rows"])[:2]):     # ultra: local, whole cube
        for curve in np.asarray(results["rows"][name]["per_case"]):
            axis.plot(range(1, len(curve) + 1), curve, "-", lw=0.8, alpha=0.7)
        axis.set_xlabel("iteration")
        axis.set_title(f"{name}: every case", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
