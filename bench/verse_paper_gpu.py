"""verse's paper configuration (the reference's UTNet + query decoder, 45 M parameters run)
timed on a device: Mode 1 on a 10-slice 256² stack and a click on one slice, through the
engine as the panel drives it, beside the tiny configuration on the same device.

No official weights can be downloaded here: --official takes bangwayne/Verse's checkpoint
(loaded strictly), else the paper config's weights are random, which costs the same time.

    python bench/verse_paper_gpu.py [--device cuda] [--official medsam_model_epoch_74.pth]
                                    [--out bench/results]

Writes verse_paper_<device>.json and .png (median seconds per action).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT  # noqa: E402
from PromptEngines.data.synthetic.cardiac import cardiac_volume  # noqa: E402
from PromptEngines.evaluation.device_timing import save_config_timings  # noqa: E402
from PromptEngines.prompts import Auto, Point  # noqa: E402
from PromptEngines.verse.config import PAPER  # noqa: E402
from PromptEngines.verse.engine import VerseEngine  # noqa: E402
from PromptEngines.verse.model import Verse  # noqa: E402


def _synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_engine(weights, device: str, repeats: int) -> dict:
    """Median seconds of Mode 1 (every slice encoded and decoded) and of a click (decoded
    only), on a fresh engine each repeat; the first repeat is untimed (kernel choices)."""
    stack = cardiac_volume(1000, slices=10, size=256)
    mode1, clicks = [], []
    for index in range(repeats + 1):
        engine = VerseEngine(weights=weights, device=device)
        engine.set_image(stack.volume.array, stack.volume.spacing_zyx)
        _synchronise(device)
        started = time.perf_counter()
        engine.run(Auto("LV"))
        _synchronise(device)
        mode1.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.run(Point((5.0, 128.0 + index, 120.0), index % 2))
        _synchronise(device)
        clicks.append(time.perf_counter() - started)
    return {"mode1_10x256x256_s": float(np.median(mode1[1:])),
            "click_s": float(np.median(clicks[1:]))}


def random_paper_weights(folder: Path) -> Path:
    """The paper config with random weights, as one of our checkpoints (same cost)."""
    torch.manual_seed(0)
    path = folder / "verse_paper_random.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "verse", "config": PAPER.to_json(),
                "model": Verse(PAPER).state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--official", help="bangwayne/Verse checkpoint (else random weights)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paper = Path(args.official) if args.official else random_paper_weights(Path(folder))
        configs = {"paper" + ("" if args.official else " (random weights)"):
                   time_engine(paper, args.device, args.repeats),
                   "tiny": time_engine(None, args.device, args.repeats)}
    save_config_timings(args.out, "verse_paper", args.device, args.repeats, configs,
                        ("mode1_10x256x256_s", "click_s"), "")


if __name__ == "__main__":
    main()
