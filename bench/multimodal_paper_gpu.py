"""multimodal's paper configuration (SAM-HQ ViT-b + open_clip ViT-B-32 text embeddings) timed
on a device: a 2D correction step (the 256² crop resized to SAM's input, encoded, decoded with
a sequence of steps) and its parts, beside the tiny configuration on the same device.

No official weights can be downloaded here: --sam-hq / --clip take official files (loaded
strictly), else the weights are random, which costs the same time.

    python bench/multimodal_paper_gpu.py [--device cuda] [--sam-hq sam_hq_vit_b.pth]
                                         [--clip open_clip_vit_b32.bin] [--out bench/results]

Writes multimodal_paper_<device>_<image size>.json and .png (median ms per step and part).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.multimodal.checkpoints import DEFAULT_WEIGHTS, load_model  # noqa: E402
from PromptEngines.multimodal.correction import Step, run_step  # noqa: E402
from PromptEngines.multimodal.evaluate import held_out_cases  # noqa: E402


def _median_ms(work, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats + 2):                        # two untimed: kernel choices, caches
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        work()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times[2:]))


def time_model(model, device: str, repeats: int) -> dict:
    picture, start = held_out_cases(1)[0]
    steps = [Step.text((150.0, 150.0), "extend"), Step.text((160.0, 170.0), "remove"),
             Step((170.0, 160.0), -1, 1)]
    crop = torch.zeros(1, 1, model.crop, model.crop, device=device)
    with torch.no_grad():
        features = model.encode(crop)
        points = torch.tensor([[[100.0, 100.0], [120.0, 128.0], [128.0, 120.0]]], device=device)
        labels = torch.ones(1, 3, dtype=torch.long, device=device)
        commands = torch.tensor([[3, 4, -1]], device=device)
        prompt = torch.full((1, 1, model.crop, model.crop), -4.0, device=device)
        return {
            "step_ms": _median_ms(lambda: run_step(model, picture.image, start, steps, device),
                                  device, repeats),
            "encode_ms": _median_ms(lambda: model.encode(crop), device, repeats),
            "decode_3_steps_ms": _median_ms(
                lambda: model.decode(features, points, labels, commands, prompt), device,
                repeats),
            "predict_command_ms": _median_ms(
                lambda: model.predict_command(features, points[:, :1], prompt), device,
                repeats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sam-hq")
    parser.add_argument("--clip")
    parser.add_argument("--image-size", type=int, default=1024, help="SAM's input (the paper: 1024)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    from PromptEngines.multimodal.paper_model import PaperMultimodal

    torch.manual_seed(0)
    paper = PaperMultimodal(args.sam_hq, args.clip, image_size=args.image_size).eval().to(
        args.device)
    tiny, _ = load_model(DEFAULT_WEIGHTS, args.device)
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"{platform.machine()}, {torch.get_num_threads()} CPU threads")
    results = {"device": device_name, "torch": torch.__version__, "image_size": args.image_size,
               "weights": {"sam_hq": args.sam_hq or "random", "clip": args.clip or "random"},
               "paper": time_model(paper, args.device, args.repeats),
               "tiny": time_model(tiny, args.device, args.repeats)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"multimodal_paper_{args.device.split(':')[0]}_{args.image_size}"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, out / f"{name}.png")
    print(json.dumps(results, indent=1))


def _plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(results["paper"])
    x = np.arange(len(parts))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, config in ((-0.2, "paper"), (0.2, "tiny")):
        ax.bar(x + offset, [results[config][p] for p in parts], 0.4, label=config)
    ax.set_xticks(x, [p.replace("_ms", "") for p in parts], fontsize=8)
    ax.set_ylabel("median ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"multimodal on {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
