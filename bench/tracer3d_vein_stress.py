"""Does one click on the artery stay on it when veins run beside and across it and a second
artery tree lies nearby (issue 15)? The stress set: 20 held-out volumes (seeds 3000-3019,
never used for training or the main benchmark) from `vessel_volume(seed,
neighbours="paired")` at the generator's own spacing (1.0-1.6 mm slices, 0.6-0.85 mm
in-plane, oblique) and the same volumes resliced to 2.5 mm slices (slab averages,
`thick_slices.resliced`). Each is traced from its click with the shipped tiny model and with
the non-learned baselines of the tracer benchmark (threshold + component, the threshold tuned
on training seeds 0-5 as tracer3d/benchmark.py tunes it; regiongrow). Per case: Dice, clDice
and the fraction of the trace on another vessel (`case.other_vessels`: adjacent / companion /
crossing veins and the second tree; the issue asks for <= 2 % on every volume), split by kind.

    python bench/tracer3d_vein_stress.py [--threads 1]     # JSON, PNG, markdown tables

One torch thread by default: on a machine whose cores are busy with other work, two OpenMP
threads spin-wait for each other on every small convolution (a trace that takes 2 s on one
thread took 70 s on two); the masks are the same.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "vein_stress"
SEEDS = range(3000, 3020)
SPACINGS = {"own spacing": None, "2.5 mm slices": 2.5}
LIMIT = 0.02                       # the bound on the fraction on other vessels
TRACER = "tracer3d tiny (shipped)"


def stress_cases(slice_mm: float | None):
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.data.synthetic.thick_slices import resliced

    for seed in SEEDS:
        case = vessel_volume(seed, neighbours="paired")
        yield seed, (case if slice_mm is None else resliced(case, slice_mm))


def tuned_threshold() -> float:
    """As tracer3d/benchmark.py: best mean Dice of threshold + component on seeds 0-5."""
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.evaluation.baselines import tune_threshold
    from PromptEngines.tracer3d.normalise import normalised_volume

    tuning = []
    for seed in range(6):
        case = vessel_volume(seed)
        volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
        tuning.append((volume, case.seed_index, case.label))
    return tune_threshold(tuning)[0]


def methods(model, threshold: float) -> dict:
    from PromptEngines.evaluation.baselines import regiongrow_mask, threshold_component
    from PromptEngines.tracer3d.evaluate import trace_case
    from PromptEngines.tracer3d.normalise import normalised_volume
    from PromptEngines.tracer3d.tracking import TraceOptions

    def timed(function):
        started = time.perf_counter()
        return function(), time.perf_counter() - started

    def threshold_mask(case):
        volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
        return threshold_component(volume, case.seed_index, threshold)

    return {TRACER: lambda case: trace_case(model, case, TraceOptions()),
            # The same model and tracker without the contact rule (held.py): before issue 15.
            f"{TRACER}, contacts not judged":
                lambda case: trace_case(model, case, TraceOptions(contacts=False)),
            f"threshold {threshold:.2f} + component":
                lambda case: timed(lambda: threshold_mask(case)),
            "regiongrow": lambda case: timed(lambda: regiongrow_mask(case))}


def report(mask, case, seconds) -> dict:
    from PromptEngines.evaluation import metrics

    row = {"dice": metrics.dice(mask, case.label), "cldice": metrics.cldice(mask, case.label),
           "on_other": metrics.fraction_on(mask, case.other_vessels), "seconds": seconds,
           "voxels": int(mask.sum())}
    for kind, region in case.other_kinds.items():
        row[f"on_{kind}"] = metrics.fraction_on(mask, region)
        row[f"took_{kind}"] = float((mask & region.astype(bool)).sum() / max(region.sum(), 1))
    return row


def describe(case) -> dict:
    info = {"spacing_zyx": [round(s, 3) for s in case.volume.spacing_zyx],
            "shape": list(case.volume.shape), "seed_index": list(case.seed_index),
            "kinds": {k: int(v.sum()) for k, v in case.other_kinds.items()}}
    for other in case.others:
        if other.kind == "adjacent_vein":
            info["adjacent_gap_mm"] = [round(g, 2) for g in other.gap_mm]
            info["adjacent_contrast"] = round(other.contrast, 3)
    return info


def source_fingerprint() -> dict:
    """What code traced: the commit and a hash of the (possibly uncommitted) tracing files."""
    files = ["PromptEngines/tracer3d/tracking.py", "PromptEngines/tracer3d/normalise.py",
             "PromptEngines/tracer3d/branches.py", "PromptEngines/tracer3d/contacts.py",
             "PromptEngines/tracer3d/held.py", "PromptEngines/data/intensity.py",
             "PromptEngines/data/synthetic/cta.py",
             "PromptEngines/data/synthetic/cta_neighbours.py",
             "PromptEngines/data/synthetic/thick_slices.py"]
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in files)).hexdigest()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True)
    if commit.returncode:                   # not a git checkout (e.g. an exported tree)
        return {"commit": None, "files_sha256": digest, "files": files}
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=ROOT,
                           capture_output=True, text=True).stdout.split("\n")
    return {"commit": commit.stdout.strip(), "files_sha256": digest, "files": files,
            "uncommitted": [line[3:] for line in dirty if line.strip()]}


def evaluate(threads: int = 1, note: str | None = None, candidates: tuple = ()) -> dict:
    """`candidates`: other tracer3d weights files traced beside the shipped one (models in
    training for this stress set)."""
    import torch

    from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS, load_model
    from PromptEngines.tracer3d.evaluate import trace_case
    from PromptEngines.tracer3d.tracking import TraceOptions

    torch.set_num_threads(threads)
    model, checkpoint = load_model(DEFAULT_WEIGHTS)
    threshold = tuned_threshold()
    runs = methods(model, threshold)
    for candidate in candidates:
        other, saved = load_model(candidate)
        options = TraceOptions(**saved.get("trace_options", {}))
        runs[f"tracer3d {Path(candidate).stem} (candidate)"] = \
            lambda case, other=other, options=options: trace_case(other, case, options)
    results = {"seeds": [SEEDS.start, SEEDS.stop - 1], "limit": LIMIT, "threshold": threshold,
               "weights": str(Path(DEFAULT_WEIGHTS).relative_to(ROOT)),
               "weights_sha256": checkpoint.get("weights_sha256"),
               "source": source_fingerprint(), "torch_threads": threads, "note": note,
               "spacings": {}}
    for spacing_name, slice_mm in SPACINGS.items():
        per_method = {name: [] for name in runs}
        cases = {}
        for seed, case in stress_cases(slice_mm):
            cases[seed] = describe(case)
            for name, run in runs.items():
                try:
                    mask, seconds = run(case)
                except Exception as error:      # a refused click counts as an empty result
                    mask, seconds = np.zeros(case.volume.shape, bool), 0.0
                    print(f"{spacing_name} {seed} {name}: {error}", flush=True)
                row = report(np.asarray(mask, bool), case, seconds)
                row["seed"] = seed
                per_method[name].append(row)
                print(f"{spacing_name} {seed} {name}: Dice {row['dice']:.3f} clDice "
                      f"{row['cldice']:.3f} on other {100 * row['on_other']:.1f} %", flush=True)
        results["spacings"][spacing_name] = {
            "cases": cases, "per_case": per_method,
            "summary": {name: summary(rows) for name, rows in per_method.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vein_stress.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, OUT / "vein_stress.png")
    text = tables(results)
    (OUT / "vein_stress.md").write_text(text + "\n")
    print(text)
    return results


def summary(rows: list[dict]) -> dict:
    on = np.array([r["on_other"] for r in rows])
    return {"median_dice": float(np.median([r["dice"] for r in rows])),
            "median_cldice": float(np.median([r["cldice"] for r in rows])),
            "median_on_other": float(np.median(on)), "max_on_other": float(on.max()),
            "cases_over_limit": int((on > LIMIT).sum()), "cases": len(rows),
            "median_seconds": float(np.median([r["seconds"] for r in rows]))}


def tables(results: dict) -> str:
    from PromptEngines.evaluation.tables import markdown_table

    summary_table = markdown_table(
        ["volumes", "method", "Dice (median)", "clDice (median)", "on other vessels (median)",
         "on other vessels (max)", f"cases > {100 * LIMIT:.0f} %"],
        [[spacing, name, f"{s['median_dice']:.3f}", f"{s['median_cldice']:.3f}",
          f"{100 * s['median_on_other']:.1f} %", f"{100 * s['max_on_other']:.1f} %",
          f"{s['cases_over_limit']} / {s['cases']}"]
         for spacing, block in results["spacings"].items()
         for name, s in block["summary"].items()])
    kinds = ("adjacent_vein", "companion_vein", "crossing_vein", "second_tree")
    rows = []
    for spacing, block in results["spacings"].items():
        for row in block["per_case"][TRACER]:
            case = block["cases"][row["seed"]] if row["seed"] in block["cases"] else \
                block["cases"][str(row["seed"])]
            rows.append([spacing, str(row["seed"]), f"{row['dice']:.3f}", f"{row['cldice']:.3f}",
                         f"{100 * row['on_other']:.1f} %",
                         *(f"{100 * row[f'took_{k}']:.0f} %" if f"took_{k}" in row else "-"
                           for k in kinds),
                         "{:.1f}-{:.1f} mm, {:.2f}".format(*case["adjacent_gap_mm"],
                                                           case["adjacent_contrast"])])
    per_case = markdown_table(
        ["volumes", "seed", "Dice", "clDice", "on other vessels", "adjacent vein taken",
         "companion vein taken", "crossing veins taken", "second tree taken",
         "adjacent vein gap, contrast"], rows)
    return (f"Summary (seeds {results['seeds'][0]}-{results['seeds'][1]}):\n\n{summary_table}"
            f"\n\n{TRACER}, per case:\n\n{per_case}")


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = results["spacings"]
    names = list(next(iter(blocks.values()))["per_case"])
    fig, axes = plt.subplots(len(blocks), 2, figsize=(12, 1.6 + 2.2 * len(blocks)), squeeze=False)
    for row_axes, (spacing, block) in zip(axes, blocks.items()):
        for axis, metric, label in zip(row_axes, ("dice", "on_other"),
                                       ("Dice", "fraction of the trace on other vessels")):
            for y, name in enumerate(names):
                values = np.array([r[metric] for r in block["per_case"][name]])
                jitter = np.random.default_rng(y).uniform(-0.15, 0.15, len(values))
                axis.scatter(values, y + jitter, s=14, alpha=0.7)
                axis.plot([np.median(values)] * 2, [y - 0.3, y + 0.3], color="k")
            axis.set_yticks(range(len(names)), names if metric == "dice" else [""] * len(names))
            axis.invert_yaxis()
            axis.set_xlabel(f"{label} ({spacing})")
            if metric == "on_other":
                axis.axvline(LIMIT, color="red", linestyle=":")
                axis.set_xscale("symlog", linthresh=0.01)
                axis.set_xlim(0.0, 1.0)
    fig.suptitle(f"vein stress set: seeds {results['seeds'][0]}-{results['seeds'][1]}, one click; "
                 f"red line: {100 * LIMIT:.0f} % on other vessels", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder")
    parser.add_argument("--note", help="saved in the JSON (e.g. which code traced)")
    parser.add_argument("--candidate", type=Path, action="append", default=[],
                        help="another tracer3d weights file to trace (repeatable)")
    args = parser.parse_args()
    OUT = args.out
    evaluate(args.threads, args.note, tuple(args.candidate))
