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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.evaluation.device_timing import (  # noqa: E402
    paper_beside_tiny, timing_arguments)
from PromptEngines.prism.benchmark import interaction_speed  # noqa: E402
from PromptEngines.prism.config import PAPER  # noqa: E402
from PromptEngines.prism.model import Prism  # noqa: E402

KEYS = ("first_interaction_s", "later_interaction_s")


def main() -> None:
    args = timing_arguments(__doc__, "MedICL-VU/PRISM best.pth.tar (else random weights)", 6)
    paper_beside_tiny(args, "prism", PAPER.to_json(), lambda: Prism(PAPER),
                      lambda weights, device, repeats: interaction_speed(weights, repeats, device),
                      KEYS, ", 128³")


if __name__ == "__main__":
    main()
