"""multimodal ablation (the paper's PSM table, plus the points-only baseline): each variant
re-runs phase 3 from the same weights (the shipped model's, all but its PSM, which each
variant starts afresh), with the same data, seed and steps, the learning rate decaying from
where the first stage's run had it at phase 3 to 0 (Adam's moments start afresh: the "all
points + last text" row re-run this way is the fair control), then all are evaluated in the
same run on the same held-out correction sessions as `ivseg bench`.

    python bench/multimodal_ablation.py train [--start FILE]   # trains the missing variants
    python bench/multimodal_ablation.py evaluate [--cases 50]  # JSON + PNG + table

--start: the weights the variants start from (default: the shipped multimodal_tiny.pt; the
first ablation started from stage 1's run paused after phase 2, a .resume file).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PromptEngines.multimodal.benchmark import (DEFAULT_CASES, STEPS, session_runs,  # noqa: E402
                                                sessions_table, starting_runs, summarise)
from PromptEngines.multimodal.checkpoints import DEFAULT_WEIGHTS, load_model  # noqa: E402
from PromptEngines.training.trainer import schedule  # noqa: E402

OUT = ROOT / "bench" / "results" / "multimodal_ablation"
WEIGHTS = ROOT / "PromptEngines" / "weights"
SHIPPED_CONFIG = json.loads((WEIGHTS / "multimodal_tiny.config.json").read_text())
# Stage 1's run (multimodal_tiny_base.md's command), which trained the PSM: its steps,
# warm-up and peak learning rate set the variants' phase 3.
MAIN_STEPS, MAIN_WARMUP, MAIN_LR, POOL, BATCH, SEED = 3000, 100, 1e-3, 16, 8, 0
PHASE3_START = SHIPPED_CONFIG["train"]["phase_steps"][1]
PHASE3_STEPS = MAIN_STEPS - PHASE3_START
# name -> (row, PSM variant, plain_fraction; 1.0: no text at all)
VARIANTS = {
    "points_only": ("points only (SAM-style, no text; phase 3 on plain clicks)", "last_text", 1.0),
    "none": ("ours without PSM (tokens concatenated)", "none", 0.2),
    "lstm": ("PSM: LSTM", "lstm", 0.2),
    "cross": ("PSM: cross-attention (points -> texts)", "cross", 0.2),
    "self_text": ("PSM: self-attention over all texts", "self_text", 0.2),
    "last_text": ("PSM: all points + last text (ours, re-run like the others)", "last_text", 0.2),
}


def _start_file(start: str | None) -> Path:
    """The weights the variants start from, as a path from the repository's root (where the
    runs run)."""
    return Path(start) if start else Path(DEFAULT_WEIGHTS).resolve().relative_to(ROOT)


def _model_settings(start_file: Path, psm: str) -> dict:
    """The start's model config (its token grain and widths: `start` loads only a model built
    alike) with the variant's PSM."""
    import torch
    checkpoint = torch.load(ROOT / start_file, map_location="cpu", weights_only=True)
    return {**checkpoint["config"], "psm": psm}


def train(start: str | None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    start_file = _start_file(start)
    # The main run's learning rate where phase 3 begins, decayed to 0 over the same steps.
    lr = MAIN_LR * schedule(MAIN_WARMUP, MAIN_STEPS)(PHASE3_START)
    for name, (_, psm, plain) in VARIANTS.items():
        weights = OUT / f"{name}.pt"
        if weights.exists():
            continue
        config = OUT / f"{name}.config.json"
        config.write_text(json.dumps({"model": _model_settings(start_file, psm), "train": {
            "phase_steps": [0, 0], "plain_fraction": plain, "start": str(start_file)}}) + "\n")
        subprocess.run([sys.executable, "-m", "PromptEngines.cli", "train", "--engine",
                        "multimodal", "--out", str(weights), "--steps", str(PHASE3_STEPS),
                        "--lr", f"{lr:.6g}", "--warmup", "0", "--pool", str(POOL),
                        "--batch-size", str(BATCH), "--seed", str(SEED), "--config", str(config),
                        "--no-eval", "--quiet"], check=True, cwd=ROOT)


def evaluate(cases: int) -> dict:
    import torch
    torch.set_num_threads(2)
    shipped, _ = load_model(DEFAULT_WEIGHTS)
    ours = session_runs(shipped, cases)
    runs = {"starting mask": starting_runs(ours)}
    for name, (row, _, plain) in VARIANTS.items():
        model, _ = load_model(OUT / f"{name}.pt")
        runs[row] = session_runs(model, cases, with_text=plain < 1.0)
    runs["ours (shipped, PSM: all points + last text)"] = ours
    results = {"cases": cases, "steps": STEPS, "summary": summarise(runs, STEPS),
               "variants": {name: {"psm": psm, "plain_fraction": plain}
                            for name, (_, psm, plain) in VARIANTS.items()}}
    (OUT / "ablation.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, OUT / "ablation.png")
    print(sessions_table(results))
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, s in results["summary"].items():
        ax.plot(range(len(s["miou_curve"])), s["miou_curve"], "o-", label=name, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("mean IoU")
    ax.legend(fontsize=7)
    ax.set_title(f"multimodal ablation: {results['cases']} held-out fundus-like images, "
                 f"{results['steps']} simulated steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("train", "evaluate"))
    parser.add_argument("--start", help="the weights the variants start from (default: the "
                        "shipped ones)")
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES)
    arguments = parser.parse_args()
    train(arguments.start) if arguments.action == "train" else evaluate(arguments.cases)
