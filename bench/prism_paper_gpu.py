"""prism's paper configuration (the reference's vit_b_ori: 118 M parameters at 128^3) timed on
a device: the first interaction on a 128^3 volume (the cube encoded) and later ones (decoder
and refinement only), through the engine as the panel drives it, beside the tiny
configuration on the same device.

No official weights can be downloaded here: --official takes MedICL-VU/PRISM's
best.pth.tar (loaded strictly), else the paper config's weights are random, which costs the
same time.

    python bench/prism_paper_gpu.py [--device cuda] [--official best.pth.tar] [--out bench/results]

Writes prism_paper_<device>.json and .png (first and later interaction, seconds).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT  # noqa: E402
from PromptEngines.evaluation.device_timing import save_config_timings  # noqa: E402
from PromptEngines.prism.benchmark import interaction_speed  # noqa: E402
from PromptEngines.prism.config import PAPER  # noqa: E402
from PromptEngines.prism.model import Prism  # noqa: E402

KEYS = ("first_interaction_s", "later_interaction_s")


def random_paper_weights(folder: Path) -> Path:
    """The paper config with random weights, as one of our checkpoints (same cost)."""
    torch.manual_seed(0)
    path = folder / "prism_paper_random.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "prism", "config": PAPER.to_json(),
                "model": Prism(PAPER).state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--official", help="MedICL-VU/PRISM best.pth.tar (else random weights)")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paper = Path(args.official) if args.official else random_paper_weights(Path(folder))
        configs = {"paper" + ("" if args.official else " (random weights)"):
                   interaction_speed(paper, args.repeats, args.device),
                   "tiny": interaction_speed(None, args.repeats, args.device)}
    save_config_timings(args.out, "prism_paper", args.device, args.repeats, configs, KEYS,
                        ", 128³")


if __name__ == "__main__":
    main()
