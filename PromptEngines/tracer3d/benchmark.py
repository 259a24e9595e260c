"""The tracer benchmark: one click on held-out synthetic vessel volumes, every method in the
same run (tracer3d, propagation baselines with the same model, tuned threshold + component,
regiongrow), plus per-slice speed on a 256x256x200 volume. `ivseg bench` (through the engine registry) and
bench/tracer3d_bench.py run it; results are a JSON, a PNG and a markdown table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.cta import vessel_volume
from ..evaluation.baselines import regiongrow_mask, threshold_component, tune_threshold
from ..evaluation.tables import markdown_table
from ..descriptor import BenchSettings
from .checkpoints import DEFAULT_WEIGHTS, load_model
from .normalise import normalised_volume
from .evaluate import HELD_OUT_FIRST_SEED, case_report, trace_case
from . import size_sweep
from .timing import median_speed
from .tracking import TraceOptions

DEFAULT_CASES = 10
METRICS = ("dice", "cldice", "hd95_mm", "betti0_error", "distractor_fraction", "seconds")


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def accuracy(model, cases: int, tuning_cases: int = 6) -> dict:
    tuning = []
    for seed in range(tuning_cases):                      # training seeds, never evaluated
        case = vessel_volume(seed)
        volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
        tuning.append((volume, case.seed_index, case.label))
    threshold, _ = tune_threshold(tuning)
    centre = dict(propagation="centre", use_offset=False, use_refine=False)
    affine = dict(propagation="affine", use_offset=False, use_refine=False)
    variants = {
        "tracer3d tiny (offset + refine)": {},
        "tracer3d tiny, ungated refine (paper's rule)": dict(refine_gate=False),
        "tracer3d tiny, offset, no refine": dict(use_refine=False),
        "tracer3d tiny, no second look": dict(second_look=False),
        "naive centre propagation + previous-mask prompt": centre,
        "affine centroid propagation + previous-mask prompt": affine,
        "naive centre propagation, point prompt (Table 4)": centre | dict(carry_mask=False),
        "affine centroid propagation, point prompt (Table 4)": affine | dict(carry_mask=False),
    }
    methods = {
        **{name: (lambda c, o=TraceOptions(**options): trace_case(model, c, o))
           for name, options in variants.items()},
        f"threshold {threshold:.2f} + component": lambda c: timed(lambda: threshold_component(
            normalised_volume(c.volume.array, c.volume.spacing_zyx, c.seed_index), c.seed_index, threshold)),
        "regiongrow": lambda c: timed(lambda: regiongrow_mask(c)),
    }
    per_method = {name: [] for name in methods}
    for seed in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + cases):
        case = vessel_volume(seed)
        for name, run in methods.items():
            mask, seconds = run(case)
            report = case_report(mask, case, seconds)
            report["seed"] = seed
            per_method[name].append(report)
            print(f"{seed} {name}: Dice {report['dice']:.3f} clDice {report['cldice']:.3f}", flush=True)
    summary = {name: {f"median_{k}": float(np.median([r[k] for r in rows])) for k in METRICS}
               for name, rows in per_method.items()}
    return {"threshold": threshold, "summary": summary, "per_case": per_method}


def plot(results: dict, path: Path) -> None:
    per_case = results["accuracy"]["per_case"]
    title = f"tracer3d benchmark: {len(next(iter(per_case.values())))} held-out synthetic volumes, one click"
    if "speed" in results:
        s = results["speed"]
        title += f"; speed {s['ms_per_slice']:.1f} ms/slice on {s['shape']} ({s['hardware']})"
    plot_per_case(per_case, title, path)


def plot_per_case(per_method: dict, title: str, path: Path) -> None:
    """Dice and clDice box plots, one row per method (first on top)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_method)
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.2 + 0.55 * len(names)))
    for axis, metric in zip(axes, ("dice", "cldice")):
        data = [[r[metric] for r in per_method[n]] for n in names]
        axis.boxplot(data, orientation="horizontal", tick_labels=names)
        axis.set_xlabel(metric)
        axis.set_xlim(min(0.85, min(min(d) for d in data) - 0.01), 1.005)
        axis.axvline(0.9, color="grey", linestyle=":")
        axis.invert_yaxis()
    axes[1].set_yticklabels([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict) -> str:
    accuracy = markdown_table(
        ["method", "Dice", "clDice", "HD95 mm", "β0 error", "on distractor", "s/volume"],
        [[name, f"{s['median_dice']:.3f}", f"{s['median_cldice']:.3f}",
          f"{s['median_hd95_mm']:.2f}", f"{s['median_betti0_error']:.0f}",
          f"{100 * s['median_distractor_fraction']:.1f} %", f"{s['median_seconds']:.2f}"]
         for name, s in results["accuracy"]["summary"].items()])
    if "clinical_size" not in results:
        return accuracy
    return accuracy + "\n\n" + size_sweep.table(results["clinical_size"])


def run(settings: BenchSettings) -> dict:
    torch.set_num_threads(settings.threads)
    weights = settings.weights or DEFAULT_WEIGHTS
    model, checkpoint = load_model(weights)
    results = {"weights": str(weights), "weights_sha256": checkpoint.get("weights_sha256"),
               "accuracy": accuracy(model, settings.cases or DEFAULT_CASES)}
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)

    def save():                             # accuracy kept whatever the timings do
        (out / "tracer3d.json").write_text(json.dumps(results, indent=1) + "\n")

    save()
    if settings.speed:
        results["speed"] = median_speed(model=model)
        save()
        if size_sweep.measurable():
            # The same tree in clinical-size volumes, each in a fresh process.
            results["clinical_size"] = size_sweep.run(out, weights, settings.threads)
            save()
    plot(results, out / "tracer3d.png")
    return results
