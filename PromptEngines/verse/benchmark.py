"""`ivseg bench --engine verse`: held-out synthetic short-axis stacks (seeds from 1000, never
trained on), through the engine as the panel drives it (slices resized to the model and back;
Dice on the volume's own grid).

- Mode 1: each structure button on each stack; Dice over the stack (3D), per structure.
- Clicks: on three slices of each structure of each stack (its basal-most, middle and
  apical-most slice), a simulated user clicks 20 times, each at the deepest pixel of the
  largest error on that slice (deterministic): Mode 2 starts from the structure's automatic
  result, Mode 3 from nothing; the baselines take the same clicks on the same slice.
  Dice(n) = mean Dice after n clicks; NoC85 / NoC90 = clicks to reach that Dice (Mode 2
  counts its automatic start as 0 clicks, as the paper), 20 when never reached.
- Speed: Mode 1 on a 10-slice 256^2 stack and one click, on `threads` CPU threads.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.cardiac import CARDIAC_LABELS, cardiac_volume
from ..descriptor import BenchSettings
from ..errors import PromptError
from ..evaluation.tables import markdown_table, save_results
from ..prompts import Auto, Point, Reset, Undo
from .engine import VerseEngine
from .simulated_clicks import next_click
from .train import HELD_OUT_FIRST_SEED

STACKS = 20
CLICKS = 20
THRESHOLDS = (0.85, 0.90)
STRUCTURES = ("LV", "Myo", "RV")


def held_out_stack(seed: int):
    """A stack drawn like the training stacks (8-14 slices of 128-256 pixels)."""
    rng = np.random.default_rng([seed, 1])
    return cardiac_volume(seed, slices=int(rng.integers(8, 15)),
                          size=int(rng.choice((128, 160, 192, 224, 256))))


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    mask, truth = mask > 0, truth > 0
    return float(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1))


def chosen_slices(truth: np.ndarray) -> list[int]:
    shown = np.flatnonzero(truth.any(axis=(1, 2)))
    return sorted({int(shown[0]), int(shown[len(shown) // 2]), int(shown[-1])})


def click_curve(engine, z: int, truth: np.ndarray, start: float) -> tuple[list[float], int]:
    """Dice on slice z of the engine's image before and after each of CLICKS clicks, and how
    many clicks the engine took (each one undo step)."""
    curve, taken = [start], 0
    for _ in range(CLICKS):
        click = next_click(engine.mask[z] > 0, truth)
        if click is not None:
            (row, col), label = click
            try:
                engine.run(Point((float(z), float(row), float(col)), label))
                taken += 1
            except PromptError:
                pass                              # refused (regiongrow: no contrast there)
        curve.append(dice(engine.mask[z], truth))
    return curve, taken


def verse_sessions(engine: VerseEngine, stack, name: str, slices: list[int]):
    """(Mode 1 stack Dice, Mode 2 curves, Mode 3 curves) for one structure of one stack."""
    truth = stack.labels == CARDIAC_LABELS[name]
    engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
    try:
        engine.run(Auto(name))
    except PromptError:
        pass                                      # nothing found: Mode 2 starts empty
    auto = dice(engine.mask, truth)
    mode2 = []
    for z in slices:
        curve, taken = click_curve(engine, z, truth[z], dice(engine.mask[z], truth[z]))
        mode2.append(curve)
        for _ in range(taken):
            engine.run(Undo())                    # back to the automatic result
    engine.run(Reset())
    mode3 = []
    for z in slices:
        mode3.append(click_curve(engine, z, truth[z], 0.0)[0])
        engine.run(Reset())
    return auto, mode2, mode3


def baseline_sessions(make, stack, name: str, slices: list[int]) -> list[list[float]]:
    """The same clicks to a baseline engine given the slice alone."""
    truth = stack.labels == CARDIAC_LABELS[name]
    curves = []
    for z in slices:
        engine = make()
        engine.set_image(stack.volume.array[z:z + 1], stack.volume.spacing_zyx)
        curves.append(click_curve(engine, 0, truth[z], 0.0)[0])
    return curves


def summarise(curves: list[list[float]], counts_start: bool) -> dict:
    """Dice(1, 5, 20) and NoC; `counts_start`: index 0 is a result (Mode 2's automatic one)
    that counts as 0 clicks, else index 0 is the empty start."""
    array = np.asarray(curves)
    first = 0 if counts_start else 1
    result = {f"dice_{n}": float(array[:, n].mean()) for n in (1, 5, CLICKS)}
    for threshold in THRESHOLDS:
        noc = [next((i for i in range(first, CLICKS + 1) if c[i] >= threshold), CLICKS)
               for c in array]
        result[f"noc{round(100 * threshold)}"] = float(np.mean(noc))
    result["mean_dice_curve"] = [float(v) for v in array.mean(axis=0)]
    result["sessions"] = len(array)
    return result


def speed(weights, repeats: int = 5) -> dict:
    stack = cardiac_volume(HELD_OUT_FIRST_SEED, slices=10, size=256)
    mode1, clicks = [], []
    for index in range(repeats):
        engine = VerseEngine(weights=weights, device="cpu")
        engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
        started = time.perf_counter()
        engine.run(Auto("LV"))
        mode1.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.run(Point((5.0, 128.0 + index, 120.0), index % 2))
        clicks.append(time.perf_counter() - started)
    return {"mode1_10x256x256_s": float(np.median(mode1[1:])),
            "click_s": float(np.median(clicks[1:])), "repeats": repeats}


def run(settings: BenchSettings) -> dict:
    from ..regiongrow.engine import RegionGrowEngine

    torch.set_num_threads(settings.threads)
    weights = settings.weights or VerseEngine.descriptor.weights_path
    seeds = range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + (settings.cases or STACKS))
    engine = VerseEngine(weights=weights, device="cpu")
    mode1 = {name: [] for name in STRUCTURES}
    curves = {"VerSe Mode 2 (automatic, then clicks)": [], "VerSe Mode 3 (clicks only)": [],
              "regiongrow (same clicks)": []}
    rows = list(curves)
    for seed in seeds:
        stack = held_out_stack(seed)
        for name in STRUCTURES:
            slices = chosen_slices(stack.labels == CARDIAC_LABELS[name])
            auto, mode2, mode3 = verse_sessions(engine, stack, name, slices)
            mode1[name].append(auto)
            curves[rows[0]] += mode2
            curves[rows[1]] += mode3
            curves[rows[2]] += baseline_sessions(RegionGrowEngine, stack, name, slices)
    results = {"weights": str(weights), "threads": settings.threads, "clicks": CLICKS,
               "stacks": list(seeds),
               "mode1": {name: {"mean_dice": float(np.mean(d)), "min_dice": float(np.min(d)),
                                "per_stack": d} for name, d in mode1.items()},
               "rows": {row: summarise(c, counts_start=row == rows[0])
                        for row, c in curves.items()}}
    if settings.speed:
        results["speed"] = speed(weights)
    return save_results(settings.out, "verse", results, plot)


def table(results: dict) -> str:
    mode1 = markdown_table(["structure", "Mode 1 Dice (mean over stacks)", "lowest stack"],
                           [[name, f"{r['mean_dice']:.3f}", f"{r['min_dice']:.3f}"]
                            for name, r in results["mode1"].items()])
    n = results["clicks"]
    clicks = markdown_table(
        ["method", "Dice(1)", "Dice(5)", f"Dice({n})", "NoC85", "NoC90"],
        [[row, f"{r['dice_1']:.3f}", f"{r['dice_5']:.3f}", f"{r[f'dice_{n}']:.3f}",
          f"{r['noc85']:.2f}", f"{r['noc90']:.2f}"] for row, r in results["rows"].items()])
    text = mode1 + "\n\n" + clicks
    if "speed" in results:
        s = results["speed"]
        text += (f"\n\nOn {results['threads']} CPU threads: Mode 1 on a 10-slice 256² stack "
                 f"{s['mode1_10x256x256_s']:.2f} s, a click {1000 * s['click_s']:.0f} ms.")
    return text


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for name, r in results["rows"].items():
        curve = r["mean_dice_curve"]
        axes[0].plot(range(len(curve)), curve, "o-", ms=3, label=name)
    axes[0].set_xlabel("clicks (Mode 2: 0 = the automatic result)")
    axes[0].set_ylabel("mean Dice on the slice")
    axes[0].legend(fontsize=7)
    names = list(results["mode1"])
    axes[1].boxplot([results["mode1"][n]["per_stack"] for n in names], labels=names)
    axes[1].axhline(0.85, ls="--", lw=0.8, color="grey")
    axes[1].set_title("Mode 1: Dice per stack", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
