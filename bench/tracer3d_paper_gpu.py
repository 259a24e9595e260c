"""tracer3d's paper configuration (SAM ViT-b at 256²) on a GPU: time per traced slice,
encoding included, on the benchmark's 256×256×200 volume, and one-click accuracy on the
held-out volumes; the tiny model on the same GPU for comparison.

No official SAM weights can be downloaded here, so SAM starts from random weights (or from
--sam PATH, an official checkpoint) and is first trained on our synthetic volumes on the GPU
(the task of `ivseg train --engine tracer3d`, config below), so that it really traces: the
timing then covers the tracker's real mix of tile encoding, decoding, refinement and second
look. A model that refuses the click has nothing to time; the JSON says so.

    python bench/tracer3d_paper_gpu.py [--sam sam_vit_b_01ec64.pth] [--steps 1800] [--out DIR]
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

from PromptEngines.tracer3d.benchmark import speed  # noqa: E402
from PromptEngines.errors import PromptError  # noqa: E402
from PromptEngines.tracer3d.engine import DEFAULT_WEIGHTS, load_model  # noqa: E402
from PromptEngines.tracer3d.evaluate import evaluate_tracer  # noqa: E402
from PromptEngines.training.tasks import make_task  # noqa: E402
from PromptEngines.training.trainer import TrainSettings, train  # noqa: E402

PAPER_CONFIG = {"model": {"kind": "paper", "image_size": 256}, "train": {"crop": 256}}


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


def timings(model, device: str) -> dict:
    rows = {}
    for precision in ("fp32", "tf32") if device.startswith("cuda") else ("fp32",):
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            rows[precision] = speed(model, device=device)
        except PromptError as error:
            rows[precision] = {"error": str(error)}
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--pool", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sam", help="official SAM / ScribblePrompt-SAM ViT-b checkpoint to "
                        "start from (default: random weights)")
    parser.add_argument("--workers", type=int, default=12, help="processes drawing batches ahead")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--work", default="/tmp/tracer3d_paper_gpu",
                        help="where the trained weights go (365 MB, not kept)")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    weights = work / "tracer3d_paper_gpu.pt"
    results = {"device": args.device, "torch": torch.__version__, "host": platform.machine(),
               "training": train_paper(weights, args.steps, args.device, args.pool, args.lr,
                                       args.batch_size, args.workers, args.sam, args.bf16)}
    for name, path in {"paper (SAM ViT-b, 256²)": weights, "tiny": DEFAULT_WEIGHTS}.items():
        model, _ = load_model(path, args.device)
        started = time.perf_counter()
        results[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                         # the trainer's held-out evaluation (a refused click scores 0);
                         # its first trace also warms the GPU up for the timings
                         "held_out": evaluate_tracer(model, cases=args.cases),
                         "speed": timings(model, args.device)}
        results[name]["bench_s"] = time.perf_counter() - started
        print(name, json.dumps(results[name], indent=1), flush=True)
        (out / "tracer3d_paper_gpu.json").write_text(json.dumps(results, indent=1) + "\n")
    shutil.copy(weights.with_suffix(".log"), out / "tracer3d_paper_gpu.log")


if __name__ == "__main__":
    main()
