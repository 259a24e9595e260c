"""Does the method's point rule matter on thick-slice CT? Two tiny models trained the same
way (2000 steps, 48 volumes, seed 0): one on the usual 1.0-1.6 mm slices (the ablation's
offset variant), one on 1-3 mm slices (config section data.slice_mm); each traced on the 10
held-out volumes at their own spacing and resliced to 2.5 mm, with the method's rule and
with the naive centre rule, both with and without our previous-mask prompt.

    python bench/tracer3d_thick_slices.py train      # the thick-slice model (ivseg train)
    python bench/tracer3d_thick_slices.py evaluate   # JSON + table
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "thick_slices"
MODELS = {"trained on 1.0-1.6 mm": ROOT / "bench" / "results" / "ablation" / "offset.pt",
          "trained on 1-3 mm": OUT / "thick.pt"}
CENTRE = dict(propagation="centre", use_offset=False, use_refine=False)
RULES = {"offset + refine": {}, "centre": CENTRE,
         "offset + refine, point prompt": dict(carry_mask=False),
         "centre, point prompt": dict(CENTRE, carry_mask=False)}
SPACINGS = {"own spacing": None, "2.5 mm slices": 2.5}


def train():
    OUT.mkdir(parents=True, exist_ok=True)
    config = OUT / "thick.config.json"
    config.write_text(json.dumps({"data": {"slice_mm": [1.0, 3.0]}}))
    subprocess.run([sys.executable, "-m", "PromptEngines.cli", "train", "--engine", "tracer3d",
                    "--out", str(MODELS["trained on 1-3 mm"]), "--steps", "2000", "--pool", "48",
                    "--batch-size", "16", "--seed", "0", "--config", str(config), "--no-eval",
                    "--quiet"], check=True, cwd=ROOT)


def held_out(seed: int, slice_mm: float | None):
    from PromptEngines.data.synthetic.cta import vessel_volume

    if slice_mm is None:
        return vessel_volume(seed)
    in_plane = np.random.default_rng([seed, 17]).uniform(0.6, 0.85)
    return vessel_volume(seed, (round(80 * 1.3 / slice_mm), 112, 112), (slice_mm, in_plane, in_plane))


def evaluate(cases: int = 10):
    from PromptEngines.tracer3d.checkpoints import load_model
    from PromptEngines.tracer3d.evaluate import HELD_OUT_FIRST_SEED, traced_report
    from PromptEngines.tracer3d.tracking import TraceOptions

    rows = {}
    for spacing_name, slice_mm in SPACINGS.items():
        volumes = [held_out(s, slice_mm) for s in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + cases)]
        for model_name, path in MODELS.items():
            model = load_model(path)[0]
            for rule, options in RULES.items():
                reports = [traced_report(model, case, TraceOptions(**options))
                           for case in volumes]
                row = f"{spacing_name} | {model_name} | {rule}"
                rows[row] = {f"{stat}_{k}": float(fn([r[k] for r in reports]))
                             for k in ("dice", "cldice") for stat, fn in (("median", np.median), ("mean", np.mean))}
                print(row, rows[row], flush=True)
    (OUT / "thick_slices.json").write_text(json.dumps({"cases": cases, "rows": rows}, indent=1) + "\n")
    print(table(rows))


def table(rows: dict) -> str:
    from PromptEngines.evaluation.tables import markdown_table

    return markdown_table(
        ["volumes", "model", "rule", "Dice (median)", "clDice (median)", "Dice (mean)", "clDice (mean)"],
        [[*row.split(" | "), *(f"{r[k]:.3f}" for k in ("median_dice", "median_cldice",
                                                       "mean_dice", "mean_cldice"))]
         for row, r in rows.items()])


if __name__ == "__main__":
    {"train": train, "evaluate": evaluate}[sys.argv[1] if len(sys.argv) > 1 else "evaluate"]()
