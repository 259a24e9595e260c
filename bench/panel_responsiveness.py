"""Responsiveness of the panel during a one-click trace (offscreen, the real widget class):
the longest the event loop is blocked, and how many slices still arrive after Cancel.

    python bench/panel_responsiveness.py [--engine tracer3d] [--out bench/results]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "InteractiveVesselSeg", ROOT / "Testing", ROOT / "Testing" / "panel"):
    sys.path.insert(0, str(path))

from panel_setup import build_panel, settle  # noqa: E402
from PromptEngines.data.synthetic.cta import vessel_volume  # noqa: E402


def measure_blocking(panel) -> dict:
    """Ticks of a 10 ms timer during a trace: the largest gap is the longest stall."""
    import qt

    ticks = []
    ticker = qt.QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))
    ticker.start()
    started = time.perf_counter()
    panel.widget.ui.traceButton.click()
    settle(panel.widget, panel.application, timeout=600)
    ticker.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    return {"trace_seconds": time.perf_counter() - started, "ticks": len(ticks),
            "max_gap_ms": 1000 * max(gaps), "p99_gap_ms": 1000 * sorted(gaps)[int(0.99 * (len(gaps) - 1))],
            "slices": len(panel.widget.logic.session.engine.mask.any(axis=(1, 2)).nonzero()[0])}


def measure_cancel(panel, after_updates: int = 5) -> dict:
    logic = panel.widget.logic
    seen = []
    panel.widget.ui.resetButton.click()
    settle(panel.widget, panel.application)
    panel.widget.ui.traceButton.click()
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
    args = parser.parse_args()
    case = vessel_volume(1009, shape=(120, 192, 192))
    panel = build_panel(case, args.engine)
    result = {"engine": args.engine, "volume": list(case.volume.shape),
              "blocking": measure_blocking(panel), "cancel": measure_cancel(panel)}
    panel.widget.cleanup()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "panel_responsiveness.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
