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

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.data.synthetic.cardiac import cardiac_volume  # noqa: E402
from PromptEngines.evaluation.device_timing import (  # noqa: E402
    paper_beside_tiny, timing_arguments)
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


def main() -> None:
    args = timing_arguments(__doc__, "bangwayne/Verse checkpoint (else random weights)", 5)
    paper_beside_tiny(args, "verse", PAPER.to_json(), lambda: Verse(PAPER), time_engine,
                      ("mode1_10x256x256_s", "click_s"))


if __name__ == "__main__":
    main()
