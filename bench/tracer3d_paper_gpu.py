"""tracer3d's paper configuration (SAM ViT-b at 256²) on a GPU: time per traced slice,
encoding included, on the benchmark's 256×256×200 volume, and one-click accuracy on the
held-out volumes; the tiny model on the same GPU for comparison; ScribblePrompt-UNet, and SAM
at 1024² on 128-pixel tiles (ScribblePrompt-SAM's own regime), timed the fastest way.

No official SAM weights can be downloaded here. SAM starts from --sam PATH (an official
checkpoint) or from random weights, and with --steps N > 0 is first trained on our synthetic
volumes (the task of `ivseg train --engine tracer3d`, config below) so that it really traces.
Time per slice is measured twice: tracing with the model's own masks (nothing to time when
it refuses the click), and with the ground truth's masks in their place ("oracle", see
PromptEngines/tracer3d/timing.py), where every slice of the true tree gets the model's full
work whatever its weights; the tiny model, which traces, shows how close the two are.

    python bench/tracer3d_paper_gpu.py [--sam sam_vit_b_01ec64.pth] [--steps N] [--out DIR]
    python bench/tracer3d_paper_gpu.py --plot-only [--name tracer3d_paper_gpu]

Writes NAME.json and NAME.png (ms per traced slice for every model and way, with the issue's
target for the paper configuration on a GPU, 10 ms, marked).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.errors import PromptError  # noqa: E402
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS, load_model  # noqa: E402
from PromptEngines.tracer3d.evaluate import evaluate_tracer  # noqa: E402
from PromptEngines.tracer3d.build import build_tracer  # noqa: E402
from PromptEngines.tracer3d.timing import median_speed, speed  # noqa: E402
from PromptEngines.tracer3d.tracking import TraceOptions  # noqa: E402
from PromptEngines.training.tasks import make_task  # noqa: E402
from PromptEngines.training.trainer import TrainSettings, train  # noqa: E402

# The tracker puts the point up to half a tile step (64 pixels) off its tile's centre: train
# on crops whose centre is off the vessel's by as much.
PAPER_CONFIG = {"model": {"kind": "paper", "image_size": 256},
                "train": {"crop": 256, "jitter": 64.0}}


class Bf16Task:
    """The task with its loss under bf16 autocast (`device_type`: "cuda" or "cpu")."""

    def __init__(self, task, device_type: str):
        self.task, self.device_type = task, device_type

    def loss(self, model, batch):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.task.loss(model, batch)

    def __getattr__(self, name):
        return getattr(self.task, name)


def train_paper(out: Path, steps: int, device: str, pool: int, lr: float, batch_size: int,
                workers: int, sam: str | None, bf16: bool) -> dict:
    config = PAPER_CONFIG
    if sam:                                   # fine-tune from an official checkpoint
        config = {**config, "model": {**config["model"], "sam_checkpoint": sam}}
    task = make_task("tracer3d", "synthetic", config, seed=0, batch_size=batch_size, pool=pool)
    if bf16:
        task = Bf16Task(task, device.split(":")[0])
    settings = TrainSettings(out=str(out), steps=steps, batch_size=batch_size, lr=lr,
                             device=device, evaluate=False, checkpoint_every=10 ** 9, log_every=50,
                             workers=workers,
                             command=f"bench/tracer3d_paper_gpu.py --steps {steps} --lr {lr}"
                             + (" --bf16" if bf16 else ""))
    tf32 = device.startswith("cuda")                  # training only: TF32 matmuls
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    result = train(task, settings, progress=False)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return {"steps": steps, "lr": lr, "started_from": sam or "random weights", "pool": pool,
            "precision": "bf16 autocast" if bf16 else "tf32" if tf32 else "fp32",
            "batch_size": batch_size, "config": config, "wall_s": result["wall_seconds"],
            "last_losses": result["last"]}


def timings(model, device: str, propagations, every_way: bool = True, repeats: int = 3) -> dict:
    """ms per slice (median of `repeats` runs) for each precision (fp32, and TF32 on a GPU),
    propagation and (on a GPU) calls with and without CUDA graphs; `every_way=False`: the
    fastest way only."""
    cuda = device.startswith("cuda")
    speed(model, shape=(24, 256, 256), device=device, oracle=True)     # warm-up, not kept
    rows = {}
    precisions = ("fp32", "tf32") if cuda and every_way else ("tf32",) if cuda else ("fp32",)
    for precision in precisions:
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        for propagation in propagations:
            for graphs in ((True, False) if every_way else (True,)) if cuda else (False,):
                name = f"{precision}, {propagation}" + (", graphs" if graphs else "")
                try:
                    rows[name] = median_speed(repeats, model=model, device=device,
                                              oracle=propagation == "oracle",
                                              options=TraceOptions(cuda_graphs=graphs))
                except PromptError as error:
                    rows[name] = {"error": str(error)}
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return rows


def plot_speed(results: dict, path: Path) -> None:
    """Horizontal bars: ms per traced slice of every timing (a warm engine), a tick where
    the engine's first trace (capturing its CUDA graphs) lies; the GPU target dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{label.split(' (')[0]}: {way}", timing) for label, entry in results.items()
            if isinstance(entry, dict) and "speed" in entry
            for way, timing in entry["speed"].items() if "ms_per_slice" in timing]
    fig, axis = plt.subplots(figsize=(9, 1.6 + 0.32 * len(rows)))
    names = [name for name, _ in rows]
    axis.barh(names, [t["ms_per_slice"] for _, t in rows], color="tab:blue",
              label="ms per traced slice (encoding included)")
    firsts = [(i, t["first_trace_ms_per_slice"]) for i, (_, t) in enumerate(rows)
              if "first_trace_ms_per_slice" in t]
    if firsts:
        axis.plot([f for _, f in firsts], [i for i, _ in firsts], "k|", markersize=12,
                  label="engine's first trace (captures the CUDA graphs)")
    if results["device"].startswith("cuda"):
        axis.axvline(10, color="grey", linestyle=":", label="target: paper config 10 ms")
    axis.invert_yaxis()
    axis.set_xlabel("ms per traced slice, 256×256×200 volume")
    hardware = next(t["hardware"] for _, t in rows)
    axis.set_title(f"tracer3d per-slice time on {hardware} (torch {results['torch']})", fontsize=9)
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.1), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def paper_model(args, weights: Path):
    """The paper configuration to time: trained here (--steps), official (--sam) or random."""
    if args.steps > 0:
        training = train_paper(weights, args.steps, args.device, args.pool, args.lr,
                               args.batch_size, args.workers, args.sam, args.bf16)
        return load_model(weights, args.device)[0], training
    if args.sam:
        return load_model(args.sam, args.device)[0], {"steps": 0, "started_from": args.sam}
    torch.manual_seed(0)
    model = build_tracer(PAPER_CONFIG["model"]).eval()
    model.to(args.device, memory_format=torch.channels_last)      # as load_model leaves it
    return model, {"steps": 0, "started_from": "random weights (torch seed 0)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=0, help="training steps first (0: time "
                        "the official --sam weights, or random ones, as they are)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--pool", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sam", help="official SAM / ScribblePrompt-SAM ViT-b checkpoint to "
                        "start from (default: random weights)")
    parser.add_argument("--workers", type=int, default=12, help="processes drawing batches ahead")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--name", help="results file name, no suffix (default "
                        "tracer3d_paper_gpu, or _cpu off a GPU)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--work", default="/tmp/tracer3d_paper_gpu",
                        help="where the trained weights go (365 MB, not kept)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (median kept)")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw NAME.png from the saved NAME.json")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    name = args.name or f"tracer3d_paper_{'gpu' if args.device.startswith('cuda') else 'cpu'}"
    if args.plot_only:
        plot_speed(json.loads((out / f"{name}.json").read_text()), out / f"{name}.png")
        return
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    weights = work / "tracer3d_paper_gpu.pt"
    model, training = paper_model(args, weights)
    results = {"device": args.device, "torch": torch.__version__, "host": platform.machine(),
               "training": training}
    traces = args.steps > 0 or bool(args.sam)       # random weights trace nothing worth timing
    for label, load in {"paper (SAM ViT-b, 256²)": lambda: model,
                        "tiny": lambda: load_model(DEFAULT_WEIGHTS, args.device)[0]}.items():
        timed_model, started = load(), time.perf_counter()
        own = traces or label == "tiny"
        results[label] = {"parameters": sum(p.numel() for p in timed_model.parameters())}
        if own:        # the trainer's held-out evaluation (a refused click scores 0); its
            # first trace also warms the device up for the timings
            results[label]["held_out"] = evaluate_tracer(timed_model, cases=args.cases)
        results[label]["speed"] = timings(timed_model, args.device,
                                          ("model", "oracle") if own else ("oracle",),
                                          repeats=args.repeats)
        results[label]["bench_s"] = time.perf_counter() - started
        print(label, json.dumps(results[label], indent=1), flush=True)
        (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    # The other paper backbones from random weights, timed the fastest way by oracle:
    # ScribblePrompt-UNet, and ScribblePrompt-SAM's own regime (128-pixel tiles upsampled to
    # 1024², each tile a 1024² encoding: far too slow for a CPU).
    others = {"ScribblePrompt-UNet (128-pixel tiles)": {"kind": "scribbleprompt_unet"}}
    if args.device.startswith("cuda"):
        others["paper at 1024² (128-pixel tiles, ScribblePrompt's regime)"] = {
            "kind": "paper", "image_size": 1024, "tile": 128}
    for label, config in others.items():
        torch.manual_seed(0)
        other = build_tracer(config).eval().to(args.device, memory_format=torch.channels_last)
        started = time.perf_counter()
        results[label] = {"parameters": sum(p.numel() for p in other.parameters()),
                          "speed": timings(other, args.device, ("oracle",), every_way=False,
                                           repeats=args.repeats),
                          "bench_s": time.perf_counter() - started}
        print(label, json.dumps(results[label], indent=1), flush=True)
        (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_speed(results, out / f"{name}.png")
    if args.steps > 0:
        shutil.copy(weights.with_suffix(".log"), out / f"{name}.log")

if __name__ == "__main__":
    main()
