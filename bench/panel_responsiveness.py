"""Responsiveness of the panel during a one-click trace (offscreen, the real widget class):
what choosing the inputs costs the main thread and how long until the engine is ready (it
loads and takes the volume on the worker), the time from the click to the first visible
update, the longest the event loop is blocked, and how many slices still arrive after Cancel.

    python bench/panel_responsiveness.py [--engine tracer3d] [--out bench/results]
    python bench/panel_responsiveness.py --clinical 440 512 512    # the size sweep's volume
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "InteractiveVesselSeg", ROOT / "Testing", ROOT / "Testing" / "panel"):
    sys.path.insert(0, str(path))

from panel_setup import build_panel, settle  # noqa: E402
from PromptEngines.data.synthetic.cta import vessel_volume  # noqa: E402
from PromptEngines.data.volume import Volume  # noqa: E402
from PromptEngines.tracer3d import size_sweep  # noqa: E402


def clinical_case(shape):
    """The size sweep's tree (tracer3d/size_sweep.py) in a volume of `shape`, with the tree
    volume's geometry."""
    image, _, _, seed = size_sweep.embedded(tuple(shape))
    tree = vessel_volume(size_sweep.TREE_SEED, shape=size_sweep.TREE_SHAPE)
    volume = Volume(image, tree.volume.ijk_to_ras)
    return SimpleNamespace(volume=volume, seed_ras=volume.index_to_ras(seed))


def measure_selection(panel) -> dict:
    """The inputs chosen again from nothing: the main thread's share (reading the segment,
    giving it its own layer) and the time until the worker has the engine ready."""
    logic = panel.widget.logic
    logic.close()
    started = time.perf_counter()
    panel.widget.onInputsChanged()
    logic.prepare()                   # what choosing the last input does
    returned = time.perf_counter()
    while not logic.session.ready:
        panel.application.processEvents()
        time.sleep(0.002)
    logic.session.annotation            # raises what went wrong while preparing
    return {"main_thread_ms": 1000 * (returned - started),
            "inputs_to_ready_ms": 1000 * (time.perf_counter() - started)}


def _take_seed(panel) -> list:
    """The case's seed, off the prompts node (build_panel placed it there): the trace starts
    from a click placed in a view with the tool armed, as a user works."""
    panel.points.RemoveAllControlPoints()
    return list(panel.seed_ras)


def measure_blocking(panel) -> dict:
    """Ticks of a 10 ms timer during a trace: the largest gap is the longest stall."""
    import qt

    ticks, first = [], []
    shown = panel.widget.onUpdate
    panel.widget.onUpdate = lambda update: (first or first.append(time.perf_counter()),
                                            shown(update))
    ticker = qt.QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))
    ticker.start()
    seed = _take_seed(panel)
    panel.widget.ui.traceButton.click()       # armed: the click in the view acts
    started = time.perf_counter()
    ticks.append(started)             # the click's own handler counts as a stall too
    panel.points.AddControlPointWorld(seed)
    settle(panel.widget, panel.application, timeout=600)
    ticker.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    panel.widget.onUpdate = shown
    return {"trace_seconds": time.perf_counter() - started, "ticks": len(ticks),
            "click_to_first_update_ms": 1000 * (first[0] - started),
            "max_gap_ms": 1000 * max(gaps), "p99_gap_ms": 1000 * sorted(gaps)[int(0.99 * (len(gaps) - 1))],
            "slices": len(panel.widget.logic.session.engine.mask.any(axis=(1, 2)).nonzero()[0])}


def measure_cancel(panel, after_updates: int = 5) -> dict:
    logic = panel.widget.logic
    seen = []
    panel.widget.ui.resetButton.click()
    settle(panel.widget, panel.application)
    seed = _take_seed(panel)
    panel.widget.ui.traceButton.click()
    panel.points.AddControlPointWorld(seed)
    logic.session.on_update = lambda update: seen.append(time.perf_counter())
    while len(seen) < after_updates:
        panel.application.processEvents()
        time.sleep(0.002)
    count_at_cancel = len(seen)
    panel.widget.ui.cancelButton.click()
    settle(panel.widget, panel.application)
    return {"updates_before_cancel": count_at_cancel,
            "updates_after_cancel": len(seen) - count_at_cancel}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="tracer3d")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--clinical", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="the size sweep's tree in a volume of this shape instead")
    args = parser.parse_args()
    case = clinical_case(args.clinical) if args.clinical else vessel_volume(1009, shape=(120, 192, 192))
    panel = build_panel(case, args.engine)
    panel.seed_ras = case.seed_ras
    result = {"engine": args.engine, "volume": list(case.volume.shape),
              "selection": measure_selection(panel), "blocking": measure_blocking(panel),
              "cancel": measure_cancel(panel)}
    panel.widget.cleanup()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    # The 440x512x512 run keeps its old name; other clinical sizes are named by shape.
    name = "panel_responsiveness" + ("" if not args.clinical else "_clinical"
                                     if list(args.clinical) == [440, 512, 512]
                                     else "_" + "x".join(map(str, args.clinical)))
    (Path(args.out) / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, Path(args.out) / f"{name}.png")
    print(json.dumps(result, indent=1))


def plot(result: dict, path: Path) -> None:
    """The click's latency and the event loop's longest stall against issue 17's bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocking = result["blocking"]
    bars = [("click → first update", blocking["click_to_first_update_ms"], 150),
            ("longest stall", blocking["max_gap_ms"], 100),
            ("99th-percentile stall", blocking["p99_gap_ms"], 100)]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(bars)), [b[1] for b in bars], color="tab:blue")
    for i, (_, _, limit) in enumerate(bars):
        ax.hlines(limit, i - 0.4, i + 0.4, colors="tab:red", linestyles="--")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("ms (red: the bar)")
    ax.set_title(f"panel, {result['engine']} on {'×'.join(map(str, result['volume']))}; "
                 f"trace {blocking['trace_seconds']:.1f} s", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
