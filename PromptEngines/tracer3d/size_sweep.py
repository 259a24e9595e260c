"""A click costs what the traced vessel costs, not what the volume costs: the same tree
traced in volumes of clinical size (256 x 256 x 200, 512 x 512 x 440, 512 x 512 x 800 voxels,
int16 as CT is stored), each measured in a fresh process as the engine is driven in Slicer
(`set_image` once, then one click): set-image time, click to the first visible update, the
whole trace, and the peak memory above the volume itself (resident set, Linux): for the
first click of a freshly loaded engine (its tile-feature cache filled, the allocator growing;
the torch runtime's one-time buffers are paid by the engine's warm-up as it loads), and for a
click of an engine that has traced before in this process (what each further volume costs).

    python -m PromptEngines.tracer3d.size_sweep --out DIR      (also part of `ivseg bench`)
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.cta import vessel_volume
from ..evaluation import metrics
from ..evaluation.tables import markdown_table
from ..prompts import Point
from ..registry import get_engine

SHAPES = ((200, 256, 256), (440, 512, 512), (800, 512, 512))
TREE_SHAPE = (200, 256, 256)          # the speed volume of timing.py
TREE_SEED = 1100


def embedded(shape, tree_seed: int = TREE_SEED):
    """The tree's volume (rounded to int16) in the middle of a larger one whose other voxels
    are tissue-like noise with the tree volume's own border statistics. Returns (image,
    label, spacing, seed_index)."""
    case = vessel_volume(tree_seed, shape=TREE_SHAPE)
    tree = np.round(case.volume.array).astype(np.int16)
    offset = [(n - t) // 2 for n, t in zip(shape, tree.shape)]
    inside = tuple(slice(o, o + t) for o, t in zip(offset, tree.shape))
    border = np.concatenate([tree[:4].ravel(), tree[-4:].ravel()]).astype(np.float32)
    rng = np.random.default_rng(tree_seed)
    image = np.empty(shape, np.int16)
    for z in range(0, shape[0], 32):                 # a slab at a time: no float64 volume
        slab = rng.normal(border.mean(), border.std(), (min(32, shape[0] - z), *shape[1:]))
        image[z:z + 32] = np.round(slab).astype(np.int16)
    image[inside] = tree
    label = np.zeros(shape, np.uint8)
    label[inside] = case.label
    seed = tuple(int(s + o) for s, o in zip(case.seed_index, offset))
    return image, label, case.volume.spacing_zyx, seed


def measurable() -> bool:
    """Peak memory is read from Linux's /proc; elsewhere the sweep is skipped."""
    return Path("/proc/self/status").is_file() and Path("/proc/self/clear_refs").exists()


def _resident_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak_above(engine, image, spacing, seed) -> float:
    """Peak resident memory (MiB) of set_image and one click, above what was resident."""
    Path("/proc/self/clear_refs").write_text("5")     # the peak starts from here
    before = _resident_mb("VmRSS")
    engine.set_image(image, spacing)
    engine.run(Point(seed))
    return _resident_mb("VmHWM") - before


def measure(image_path: str, label_path: str, spacing, seed, weights=None, threads: int = 2):
    """One size, in this process: engine built first, then set_image and one click (timed,
    and its memory that of a first use), then the volume set again and the same click with
    the engine warm."""
    torch.set_num_threads(threads)
    image, label = np.load(image_path), np.load(label_path)
    engine = get_engine("tracer3d", weights, device="cpu")
    Path("/proc/self/clear_refs").write_text("5")     # the peak starts from here
    before = _resident_mb("VmRSS")
    started = time.perf_counter()
    engine.set_image(image, spacing)
    set_image_s = time.perf_counter() - started
    first, updates = None, 0
    started = time.perf_counter()
    for update in engine.interact(Point(seed)):
        updates += 1
        if first is None and update.patch.size:
            first = time.perf_counter() - started
    trace_s = time.perf_counter() - started
    first_use_above = _resident_mb("VmHWM") - before
    traced = engine.mask > 0
    warm_above = _peak_above(engine, image, spacing, seed)
    return {"shape": list(image.shape), "voxels": int(image.size),
            "set_image_ms": 1000 * set_image_s,
            "click_to_first_update_ms": None if first is None else 1000 * first,
            "trace_s": trace_s, "updates": updates,
            "peak_memory_above_volume_mb": warm_above,
            "first_use_peak_memory_above_volume_mb": first_use_above,
            "volume_int16_mb": image.nbytes / 2**20, "volume_float32_mb": image.size * 4 / 2**20,
            "dice": metrics.dice(traced, label > 0),
            "traced_voxels": int(traced.sum())}


def run(out, weights=None, threads: int = 2, shapes=SHAPES) -> dict:
    """Every size in its own process; results JSON and PNG in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in shapes:
            image, label, spacing, seed = embedded(shape)
            image_path, label_path = Path(folder) / "image.npy", Path(folder) / "label.npy"
            np.save(image_path, image)
            np.save(label_path, label)
            del image, label
            command = [sys.executable, "-m", "PromptEngines.tracer3d.size_sweep", "--measure",
                       str(image_path), str(label_path), "--spacing", *map(str, spacing),
                       "--seed", *map(str, seed), "--threads", str(threads)]
            if weights:
                command += ["--weights", str(Path(weights).resolve())]
            done = subprocess.run(command, capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[2])
            if done.returncode:
                raise RuntimeError(f"size sweep at {shape} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{shape}: {rows[-1]['click_to_first_update_ms']:.0f} ms to the first update, "
                  f"trace {rows[-1]['trace_s']:.2f} s", flush=True)
    results = {"sizes": rows, "threads": threads,
               "hardware": f"{platform.processor() or platform.machine()}, {threads} CPU threads"}
    (out / "clinical_size.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / "clinical_size.png", _before(out))
    return results


def _before(out: Path) -> dict | None:
    """An earlier version's sweep kept beside the results (clinical_size_before.json)."""
    path = out / "clinical_size_before.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(results: dict) -> str:
    return markdown_table(
        ["volume (z × y × x)", "set_image ms", "click → first update ms", "whole trace s",
         "peak memory above the volume MB (first use)", "volume as float32 MB", "Dice"],
        [[" × ".join(map(str, r["shape"])), f"{r['set_image_ms']:.0f}",
          f"{r['click_to_first_update_ms']:.0f}", f"{r['trace_s']:.2f}",
          f"{r['peak_memory_above_volume_mb']:.0f} "
          f"({r['first_use_peak_memory_above_volume_mb']:.0f})", f"{r['volume_float32_mb']:.0f}",
          f"{r['dice']:.3f}"] for r in results["sizes"]])


def plot(results: dict, path: Path, before: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.5, 4))
    for sweep, style, when in ((results, "-", ""), (before, "--", ", previous version")):
        if sweep is None:
            continue
        rows = sweep["sizes"]
        voxels = [r["voxels"] / 1e6 for r in rows]
        axis.plot(voxels, [r["trace_s"] for r in rows], "o" + style, color="C0",
                  label=f"whole trace{when}")
        axis.plot(voxels, [r["click_to_first_update_ms"] / 1000 for r in rows], "s" + style,
                  color="C1", label=f"click → first update{when}")
        axis.plot(voxels, [r["set_image_ms"] / 1000 for r in rows], "^" + style, color="C2",
                  label=f"set_image{when}")
    axis.set_xlabel("volume size (million voxels)")
    axis.set_ylabel("seconds")
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.set_title(f"tracer3d: the same tree in growing volumes ({results['hardware']})",
                   fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--measure", nargs=2, metavar=("IMAGE_NPY", "LABEL_NPY"))
    parser.add_argument("--spacing", nargs=3, type=float)
    parser.add_argument("--seed", nargs=3, type=int)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure, tuple(args.spacing), tuple(args.seed),
                                 args.weights, args.threads)))
        return
    print(table(run(args.out, args.weights, args.threads)))


if __name__ == "__main__":
    main()
