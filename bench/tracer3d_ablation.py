"""tracer3d ablation (the paper's Table 3): naive -> +L_local -> +L_global -> +offset ->
+refine, each a tiny model trained the same way (same data, seed, steps), evaluated on the
same held-out volumes (clinical-realism synthetic CTA, seeds 1000-1009) with one click.

    python bench/tracer3d_ablation.py train    # trains the missing variants (ivseg train)
    python bench/tracer3d_ablation.py evaluate # JSON + PNG + table
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "ablation"
STEPS, POOL, SEED = 2000, 48, 0
VARIANTS = ("naive", "local", "global", "offset")
ROWS = [  # (row, trained variant, trace options)
    ("naive (centre of previous mask)", "naive", dict(propagation="centre", use_offset=False, use_refine=False)),
    ("+ L_local", "local", dict(propagation="centre", use_offset=False, use_refine=False)),
    ("+ L_global", "global", dict(propagation="centre", use_offset=False, use_refine=False)),
    ("+ offset", "offset", dict(use_offset=True, use_refine=False)),
    ("+ refine (full method)", "offset", dict(use_offset=True, use_refine=True)),
]


def train():
    OUT.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        weights = OUT / f"{variant}.pt"
        if weights.exists():
            continue
        config = OUT / f"{variant}.config.json"
        config.write_text(json.dumps({"train": {"variant": variant}}))
        subprocess.run([sys.executable, "-m", "PromptEngines.cli", "train", "--engine", "tracer3d",
                        "--out", str(weights), "--steps", str(STEPS), "--pool", str(POOL),
                        "--batch-size", "16", "--seed", str(SEED), "--config", str(config),
                        "--no-eval", "--quiet"], check=True, cwd=ROOT)


def evaluate(cases: int = 10):
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.tracer3d.evaluate import HELD_OUT_FIRST_SEED, traced_report
    from PromptEngines.tracer3d.checkpoints import load_model
    from PromptEngines.tracer3d.tracking import TraceOptions

    models = {v: load_model(OUT / f"{v}.pt")[0] for v in VARIANTS}
    volumes = [vessel_volume(seed) for seed in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + cases)]
    results, per_case = {}, {}
    for row, variant, options in ROWS:
        reports = [traced_report(models[variant], case, TraceOptions(**options))
                   for case in volumes]
        results[row] = {k: float(np.median([r[k] for r in reports]))
                        for k in ("dice", "cldice", "hd95_mm", "betti0_error", "seconds")}
        results[row]["mean_dice"] = float(np.mean([r["dice"] for r in reports]))
        per_case[row] = reports
        print(row, results[row], flush=True)
    (OUT / "ablation.json").write_text(json.dumps(
        {"steps": STEPS, "pool": POOL, "seed": SEED, "cases": cases, "rows": results,
         "per_case": per_case}, indent=1) + "\n")
    plot(per_case, OUT / "ablation.png")
    print(table(results))


def plot(per_case, path):
    from PromptEngines.tracer3d.benchmark import plot_per_case

    plot_per_case(per_case, f"tracer3d ablation: {STEPS} training steps per variant, "
                  f"{len(next(iter(per_case.values())))} held-out volumes, one click", path)


def table(results) -> str:
    from PromptEngines.evaluation.tables import markdown_table

    return markdown_table(
        ["variant", "Dice (median)", "Dice (mean)", "clDice", "HD95 mm", "β0 error"],
        [[row, f"{r['dice']:.3f}", f"{r['mean_dice']:.3f}", f"{r['cldice']:.3f}",
          f"{r['hd95_mm']:.2f}", f"{r['betti0_error']:.0f}"] for row, r in results.items()])


if __name__ == "__main__":
    {"train": train, "evaluate": evaluate}[sys.argv[1] if len(sys.argv) > 1 else "evaluate"]()
