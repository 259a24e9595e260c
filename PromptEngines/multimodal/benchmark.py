"""The multimodal benchmark on held-out 2D vessel images (ambiguous fundus-like pictures,
seeds from 1000; samples.fundus_pictures) and 3D CTA volumes (benchmark_3d.py):

- sessions: an imperfect starting mask (several defects of every kind, built from the truth),
  then 10 simulated steps (click at the centre of the largest error with the command that
  fixes it); mean IoU and clDice after each step, for the starting mask, the model with
  point + text, and the same model with the clicks alone (points only, labelled by the
  error's sign); the share of cases that end below their starting IoU;
- one step, one defect: per command, the truth with one defect of that kind and one step at
  its point with its command, through the engine on the single-slice picture: the share of
  the defect fixed, the share of cases with at least half fixed, pixels made wrong away from
  the defect, and the Text Prompt Predictor's accuracy on the same (image, mask, point);
- one step, one defect in 3D: the same per command on CTA volumes (benchmark_3d.py);
- speed: a 2D step (encode + decode of the crop) on `threads` CPU threads, and a 3D
  "remove" / "extend" at 256 x 256 x 200.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..descriptor import BenchSettings
from ..evaluation.tables import markdown_table, save_results
from .benchmark_3d import one_step_one_defect_3d, speed_3d, text_step
from .checkpoints import DEFAULT_WEIGHTS, load_model
from .correction import Step, predict_command, run_step
from .defects import DEFECT_COMMANDS, DEFECT_KINDS, make_defect
from .engine import MultimodalEngine
from .evaluate import HELD_OUT_FIRST_SEED, correction_session, held_out_cases
from .samples import fundus_pictures

DEFAULT_CASES = 50
STEPS = 10
PER_COMMAND = 20
AWAY_PX = 5            # pixels around a defect that a step may change as part of fixing it


def session_runs(model, cases: int, steps: int = STEPS, with_text: bool = True) -> list:
    """One correction session per held-out case (evaluate.correction_session)."""
    return [correction_session(model, picture.image, picture.truth, start, steps,
                               with_text=with_text)
            for picture, start in held_out_cases(cases)]


def starting_runs(runs: list) -> list:
    """The starting mask as a method: its IoU and clDice at every step."""
    return [{k: [v[0]] * len(v) for k, v in run.items()} for run in runs]


def summarise(runs: dict, steps: int) -> dict:
    """Per method (name -> its runs): mean IoU / clDice curves and at the last step, and the
    share of cases that end below their starting IoU."""
    summary = {}
    for name, done in runs.items():
        iou = np.array([r["iou"] for r in done])
        cldice = np.array([r["cldice"] for r in done])
        summary[name] = {"miou_curve": iou.mean(0).tolist(), "mean_cldice_curve":
                         cldice.mean(0).tolist(), f"miou_at_{steps}": float(iou[:, -1].mean()),
                         f"cldice_at_{steps}": float(cldice[:, -1].mean()),
                         "worse_than_start": float((iou[:, -1] < iou[:, 0]).mean())}
    return summary


def sessions(model, cases: int, steps: int = STEPS) -> dict:
    ours = session_runs(model, cases, steps)
    runs = {"starting mask": starting_runs(ours), "point + text (ours)": ours,
            "points only (same model)": session_runs(model, cases, steps, with_text=False)}
    return {"cases": cases, "steps": steps, "summary": summarise(runs, steps)}


def one_step_one_defect(engine: MultimodalEngine, per_command: int = PER_COMMAND) -> dict:
    """Each defect's step through the engine on the single-slice picture, as the user gets
    it (the model's step near the point; "remove" deletes the clicked piece)."""
    results = {}
    pictures = fundus_pictures(range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + 4 * per_command))
    for kind in DEFECT_KINDS:
        rows, rng = [], np.random.default_rng([HELD_OUT_FIRST_SEED, DEFECT_KINDS.index(kind)])
        for picture in pictures:
            if len(rows) == per_command:
                break
            defect = make_defect(kind, picture.truth, rng, image=picture.image)
            if defect is None:
                continue
            point = tuple(float(p) for p in defect.point[-2:])
            after = text_step(engine, picture.image[None], (1.0, 1.0, 1.0),
                              defect.mask[None], (0.0, *point), defect.command)[0][0]
            wrong = after != picture.truth
            near = ndimage.binary_dilation(defect.region, iterations=AWAY_PX)
            guessed, _ = predict_command(engine.model, picture.image, defect.mask, point)
            rows.append({"fixed": 1.0 - float(wrong[defect.region].mean()),
                         "made_wrong_away": int((wrong & ~near & (defect.mask == picture.truth))
                                                .sum()),
                         "tpp_right": guessed == defect.command})
        fixed = np.array([r["fixed"] for r in rows])
        results[DEFECT_COMMANDS[kind]] = {
            "cases": len(rows), "mean_fixed": float(fixed.mean()),
            "half_fixed_share": float((fixed >= 0.5).mean()),
            "cases_made_wrong_away": int(sum(r["made_wrong_away"] > 0 for r in rows)),
            "median_pixels_made_wrong_away": float(np.median([r["made_wrong_away"]
                                                              for r in rows])),
            "tpp_accuracy": float(np.mean([r["tpp_right"] for r in rows]))}
    return results


def step_speed(model, repeats: int = 20) -> dict:
    picture = fundus_pictures([HELD_OUT_FIRST_SEED])[0]
    steps = [Step.text((160.0, 160.0), "extend")]
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        run_step(model, picture.image, picture.truth, steps)
        times.append(time.perf_counter() - started)
    return {"median_2d_step_ms": 1000 * float(np.median(times[2:])), "repeats": repeats}


def run(settings: BenchSettings) -> dict:
    torch.set_num_threads(settings.threads)
    weights = settings.weights or DEFAULT_WEIGHTS
    model, checkpoint = load_model(weights)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = MultimodalEngine(weights=weights, device="cpu")
    results = {"weights": str(weights), "weights_sha256": checkpoint.get("weights_sha256"),
               "threads": settings.threads,
               "sessions": sessions(model, settings.cases or DEFAULT_CASES),
               "one_step_one_defect": one_step_one_defect(engine),
               "one_step_one_defect_3d": one_step_one_defect_3d(engine, PER_COMMAND)}
    if settings.speed:
        results["speed"] = step_speed(model) | speed_3d(engine)
    return save_results(out, "multimodal", results, plot)


def sessions_table(sessions_result: dict) -> str:
    steps = sessions_result["steps"]
    rows = [[name, f"{100 * s['miou_curve'][0]:.1f}", f"{100 * s[f'miou_at_{steps}']:.1f}",
             f"{100 * s[f'cldice_at_{steps}']:.1f}", f"{100 * s['worse_than_start']:.0f} %"]
            for name, s in sessions_result["summary"].items()]
    return markdown_table(["method", "mIoU start", f"mIoU@{steps}", f"clDice@{steps}",
                           "cases ending worse"], rows)


def per_command_table(per_command: dict, tpp: bool) -> str:
    headers = ["command", "cases", "defect fixed (mean)", "≥ half fixed",
               "cases made wrong away from the defect"]
    rows = [[command, str(r["cases"]), f"{100 * r['mean_fixed']:.0f} %",
             f"{100 * r['half_fixed_share']:.0f} %", str(r["cases_made_wrong_away"])]
            + ([f"{100 * r['tpp_accuracy']:.0f} %"] if tpp else
               [f"{r['median_seconds']:.2f} s"])
            for command, r in per_command.items()]
    return markdown_table(headers + (["TPP accuracy"] if tpp else ["median step"]), rows)


def table(results: dict) -> str:
    parts = [sessions_table(results["sessions"]),
             "One step, one defect, 2D:\n\n" + per_command_table(
                 results["one_step_one_defect"], tpp=True)]
    if "one_step_one_defect_3d" in results:
        parts.append("One step, one defect, 3D:\n\n" + per_command_table(
            results["one_step_one_defect_3d"]["per_command"], tpp=False))
    if "speed" in results:
        parts.append(", ".join(f"{k}: {v:.3g}" for k, v in results["speed"].items()
                               if isinstance(v, float)))
    return "\n\n".join(parts)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    three_d = results.get("one_step_one_defect_3d", {}).get("per_command")
    fig, axes = plt.subplots(1, 3 if three_d else 2, figsize=(15 if three_d else 10, 3.8))
    for name, s in results["sessions"]["summary"].items():
        axes[0].plot(range(len(s["miou_curve"])), s["miou_curve"], "o-", label=name, ms=3)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("mean IoU")
    axes[0].legend(fontsize=8)
    commands = list(results["one_step_one_defect"])
    fixed = [results["one_step_one_defect"][c]["mean_fixed"] for c in commands]
    tpp = [results["one_step_one_defect"][c]["tpp_accuracy"] for c in commands]
    x = np.arange(len(commands))
    axes[1].bar(x - 0.2, fixed, 0.4, label="defect fixed by one step")
    axes[1].bar(x + 0.2, tpp, 0.4, label="TPP accuracy")
    axes[1].set_xticks(x, [c.replace("make ", "") for c in commands], fontsize=8)
    axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=8)
    axes[1].set_title("2D, one step per defect", fontsize=9)
    if three_d:
        axes[2].bar(x - 0.2, [three_d[c]["mean_fixed"] for c in commands], 0.4,
                    label="defect fixed by one step")
        axes[2].bar(x + 0.2, [three_d[c]["half_fixed_share"] for c in commands], 0.4,
                    label="cases at least half fixed")
        axes[2].set_xticks(x, [c.replace("make ", "") for c in commands], fontsize=8)
        axes[2].set_ylim(0, 1)
        axes[2].legend(fontsize=8)
        axes[2].set_title("3D CTA, one step per defect", fontsize=9)
    fig.suptitle(f"multimodal: sessions on {results['sessions']['cases']} held-out clinical "
                 f"fundus-like pictures; one step per defect, 2D and 3D CTA "
                 f"({results['threads']} CPU threads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

