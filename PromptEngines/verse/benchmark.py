"""`ivseg bench --engine verse`: held-out synthetic short-axis stacks (seeds from 1000, never
trained on; one in three cut to a rectangular field of view), through the engine as the panel
drives it (slices resized to the model and back; Dice on the volume's own grid).

- Mode 1: each structure button on each stack: Dice over the stack (3D) and the mean Dice of
  the slices that show the structure (the paper's measure), per structure.
- Clicks: on three slices of each structure of each stack (its basal-most, middle and
  apical-most slice; the paper scores every slice), a simulated user clicks 20 times, each at
  the deepest pixel of the largest error on that slice (deterministic; the reference clicks
  at the centre of the error's interior). Every method faces the same user on its own errors:
  Mode 2 starts from the structure's automatic result, Mode 3 and the baselines from nothing.
  Dice(n) = mean Dice after n clicks; NoC85 / NoC90 = clicks until Dice >= 0.85 / 0.90 (Mode
  2 counts its automatic start as 0 clicks, as the paper), 20 when never reached.
- Baselines: the points-only SAM-style model (`sam_style.py`, trained on the same stacks with
  the same user: `verse_sam_style.pt`) on the whole stack like Mode 3, and regiongrow given
  the slice.
- Speed: Mode 1 on a 10-slice 256^2 stack, a click after it, and a first click on a stack
  nothing has encoded yet, on `threads` CPU threads.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.cardiac import CARDIAC_LABELS, cardiac_volume
from ..data.synthetic.labelled_volume import LabelledVolume
from ..data.volume import Volume
from ..descriptor import WEIGHTS_DIR, BenchSettings
from ..errors import PromptError
from ..evaluation.metrics import dice
from ..evaluation.tables import markdown_table, save_results
from ..prompts import Auto, Point, Reset, Undo
from .config import HELD_OUT_FIRST_SEED
from .descriptor import VERSE
from .engine import VerseEngine
from .field_of_view import kept_span
from .simulated_clicks import next_click

STACKS = 20
CLICKS = 20
THRESHOLDS = (0.85, 0.90)
SAM_STYLE_WEIGHTS = WEIGHTS_DIR / "verse_sam_style.pt"
MODE2, MODE3 = "VerSe Mode 2 (automatic, then clicks)", "VerSe Mode 3 (clicks only)"
SAM_STYLE = "points-only SAM-style model (same stacks, same user)"
REGIONGROW = "regiongrow (same user)"
RECTANGULAR_SHARE = 1 / 3            # held-out stacks with a rectangular field of view


def held_out_stack(seed: int):
    """A stack drawn like the training stacks (8-14 slices of 128-256 pixels); one in three
    with a rectangular field of view, as cine MRI often has (never trained on)."""
    rng = np.random.default_rng([seed, 1])
    stack = cardiac_volume(seed, slices=int(rng.integers(8, 15)),
                           size=int(rng.choice((128, 160, 192, 224, 256))))
    if rng.random() < RECTANGULAR_SHARE:
        stack = rectangular_field_of_view(stack, rng)
    return stack


def rectangular_field_of_view(stack: LabelledVolume, rng) -> LabelledVolume:
    """The stack cut to 70-85 % of its rows or columns, the heart kept whole wherever the cut
    leaves it (not always in the middle), its geometry moved with the cut."""
    axis = int(rng.integers(1, 3))
    heart = np.flatnonzero(stack.labels.any(axis=tuple(a for a in range(3) if a != axis)))
    start, keep = kept_span(stack.labels.shape[axis], heart, rng)
    region = [slice(None)] * 3
    region[axis] = slice(start, start + keep)
    shift = np.zeros(4)
    shift[2 - axis], shift[3] = start, 1.0             # (i, j, k) = (x, y, z)
    ijk_to_ras = stack.volume.ijk_to_ras.copy()
    ijk_to_ras[:, 3] = stack.volume.ijk_to_ras @ shift
    volume = Volume(np.ascontiguousarray(stack.volume.array[tuple(region)]), ijk_to_ras)
    return LabelledVolume(volume, np.ascontiguousarray(stack.labels[tuple(region)]),
                          dict(stack.names))


def chosen_slices(truth: np.ndarray) -> list[int]:
    shown = np.flatnonzero(truth.any(axis=(1, 2)))
    return sorted({int(shown[0]), int(shown[len(shown) // 2]), int(shown[-1])})


def click_curve(engine, z: int, truth: np.ndarray) -> tuple[list[float], int]:
    """Dice on slice z of the engine's image as it is, then after each of CLICKS clicks, and
    how many clicks the engine took (each one undo step)."""
    curve, taken = [dice(engine.mask[z], truth)], 0
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


def mode1(engine: VerseEngine, truth: np.ndarray, name: str) -> dict:
    """Mode 1 on the engine's stack: Dice over the stack and per slice showing it."""
    try:
        engine.run(Auto(name))
    except PromptError:
        pass                                      # nothing found: an empty result
    shown = np.flatnonzero(truth.any(axis=(1, 2)))
    return {"stack": dice(engine.mask, truth),
            "slices": float(np.mean([dice(engine.mask[k], truth[k]) for k in shown])),
            "found": bool(engine.mask.any())}


def verse_sessions(engine: VerseEngine, stack, name: str, slices: list[int]):
    """(Mode 1 result, Mode 2 curves, Mode 3 curves) for one structure of one stack."""
    truth = stack.labels == CARDIAC_LABELS[name]
    engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
    automatic = mode1(engine, truth, name)
    corrected = []
    for z in slices:
        curve, taken = click_curve(engine, z, truth[z])
        corrected.append(curve)
        for _ in range(taken):
            engine.run(Undo())                    # back to the automatic result
    engine.run(Reset())
    return automatic, corrected, clicks_alone(engine, truth, slices)


def clicks_alone(engine: VerseEngine, truth: np.ndarray, slices: list[int]):
    """Mode 3 curves on the engine's stack, from nothing on each slice."""
    curves = []
    for z in slices:
        curves.append(click_curve(engine, z, truth[z])[0])
        engine.run(Reset())
    return curves


def regiongrow_sessions(stack, name: str, slices: list[int]) -> list[list[float]]:
    """The same user with regiongrow, given each slice alone (it would grow through the
    stack otherwise)."""
    from ..regiongrow.engine import RegionGrowEngine

    truth = stack.labels == CARDIAC_LABELS[name]
    curves = []
    for z in slices:
        engine = RegionGrowEngine()
        engine.set_image(stack.volume.array[z:z + 1], stack.volume.spacing_zyx)
        curves.append(click_curve(engine, 0, truth[z])[0])
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
    """Median seconds on fresh engines: Mode 1 (every slice encoded and decoded), a click
    after it (decoded only), and a first click on a stack nothing has encoded yet."""
    stack = cardiac_volume(HELD_OUT_FIRST_SEED, slices=10, size=256)
    timings = {"mode1_10x256x256_s": [], "click_s": [], "first_click_s": []}

    def timed(key, engine, prompt):
        started = time.perf_counter()
        engine.run(prompt)
        timings[key].append(time.perf_counter() - started)

    for index in range(repeats + 1):                  # the first: untimed (kernel choices)
        engines = [VerseEngine(weights=weights, device="cpu") for _ in range(2)]
        for engine in engines:
            engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
        timed("mode1_10x256x256_s", engines[0], Auto("LV"))
        timed("click_s", engines[0], Point((5.0, 128.0 + index, 120.0), index % 2))
        timed("first_click_s", engines[1], Point((5.0, 128.0 + index, 120.0), 1))
    return {**{k: float(np.median(v[1:])) for k, v in timings.items()}, "repeats": repeats}


def run(settings: BenchSettings) -> dict:
    torch.set_num_threads(settings.threads)
    weights = settings.weights or VERSE.weights_path
    seeds = list(range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + (settings.cases or STACKS)))
    engine = VerseEngine(weights=weights, device="cpu")
    baseline = (VerseEngine(weights=SAM_STYLE_WEIGHTS, device="cpu")
                if SAM_STYLE_WEIGHTS.is_file() else None)
    automatic = {name: [] for name in VERSE.structures}
    curves = {MODE2: [], MODE3: [], SAM_STYLE: [], REGIONGROW: []}
    for seed in seeds:
        stack = held_out_stack(seed)
        for name in VERSE.structures:
            truth = stack.labels == CARDIAC_LABELS[name]
            slices = chosen_slices(truth)
            result, corrected, alone = verse_sessions(engine, stack, name, slices)
            # the generator's slices are square: a cut one is a rectangular field of view
            result["rectangular_fov"] = truth.shape[1] != truth.shape[2]
            automatic[name].append(result)
            curves[MODE2] += corrected
            curves[MODE3] += alone
            if baseline is not None:
                baseline.set_image(stack.volume.array, stack.volume.spacing_zyx)
                curves[SAM_STYLE] += clicks_alone(baseline, truth, slices)
            curves[REGIONGROW] += regiongrow_sessions(stack, name, slices)
    results = {"weights": str(weights), "threads": settings.threads, "clicks": CLICKS,
               "stacks": seeds, "mode1": {
                   name: {"stack_dice": float(np.mean([r["stack"] for r in rs])),
                          "slice_dice": float(np.mean([r["slices"] for r in rs])),
                          "lowest_stack_dice": float(min(r["stack"] for r in rs)),
                          "not_found": sum(not r["found"] for r in rs),
                          **_by_field_of_view(rs), "per_stack": rs}
                   for name, rs in automatic.items()},
               "rows": {row: summarise(c, counts_start=row == MODE2)
                        for row, c in curves.items() if c},
               "sam_style_weights": str(SAM_STYLE_WEIGHTS) if baseline else
               f"{SAM_STYLE_WEIGHTS.name} not trained here: no SAM-style row"}
    if settings.speed:
        results["speed"] = speed(weights)
    return save_results(settings.out, "verse", results, plot)


def _by_field_of_view(results: list[dict]) -> dict:
    """Mode 1's mean Dice per slice on the square and on the rectangular fields of view."""
    return {f"slice_dice_{kind}_fov": float(np.mean([r["slices"] for r in chosen]))
            for kind, chosen in (("square", [r for r in results if not r["rectangular_fov"]]),
                                 ("rectangular", [r for r in results if r["rectangular_fov"]]))
            if chosen}


def table(results: dict) -> str:
    mode1_table = markdown_table(
        ["structure", "Mode 1 Dice per slice (mean)", "Dice over the stack (mean)",
         "lowest stack", "stacks where nothing was found"],
        [[name, f"{r['slice_dice']:.3f}", f"{r['stack_dice']:.3f}",
          f"{r['lowest_stack_dice']:.3f}", str(r["not_found"])]
         for name, r in results["mode1"].items()])
    n = results["clicks"]
    clicks = markdown_table(
        ["method", "Dice(1)", "Dice(5)", f"Dice({n})", "NoC85", "NoC90"],
        [[row, f"{r['dice_1']:.3f}", f"{r['dice_5']:.3f}", f"{r[f'dice_{n}']:.3f}",
          f"{r['noc85']:.2f}", f"{r['noc90']:.2f}"] for row, r in results["rows"].items()])
    text = mode1_table + "\n\n" + clicks
    if "speed" in results:
        s = results["speed"]
        text += (f"\n\nOn {results['threads']} CPU threads: Mode 1 on a 10-slice 256² stack "
                 f"{s['mode1_10x256x256_s']:.2f} s (every slice encoded and decoded), a "
                 f"click after it {1000 * s['click_s']:.0f} ms, the first click on a stack "
                 f"nothing has encoded yet {1000 * s['first_click_s']:.0f} ms.")
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
    axes[1].boxplot([[r["slices"] for r in results["mode1"][n]["per_stack"]] for n in names],
                    tick_labels=names)
    axes[1].axhline(0.85, ls="--", lw=0.8, color="grey")
    axes[1].set_title("Mode 1: mean slice Dice per stack", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
