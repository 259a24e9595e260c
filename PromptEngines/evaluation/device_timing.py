"""The paper-versus-tiny timings of `bench/*_paper_gpu.py`: which device ran them, and one JSON
and one bar plot per run (median seconds of each action, each configuration)."""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..backbones.checkpoint import CHECKPOINT_FORMAT
from .tables import save_results


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()}, {torch.get_num_threads()} CPU threads"


def save_config_timings(out, stem: str, device: str, repeats: int, configs: dict,
                        keys: tuple[str, ...], title: str) -> dict:
    """`configs`: name -> {action: seconds}. Writes OUT/STEM_<device kind>.json and .png and
    prints the JSON."""
    results = {"device": device, "device_name": device_name(device),
               "torch": torch.__version__, "repeats": repeats, "configs": configs}

    def plot(results: dict, path: Path) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(results["configs"])
        width = 0.8 / len(keys)
        fig, axis = plt.subplots(figsize=(6, 3.5))
        for offset, key in enumerate(keys):
            axis.bar(np.arange(len(names)) + width * offset,
                     [results["configs"][n][key] for n in names], width, label=key)
        axis.set_xticks(np.arange(len(names)) + width * (len(keys) - 1) / 2, names)
        axis.set_ylabel("seconds (median)")
        axis.set_title(f"{results['device_name']}{title}", fontsize=9)
        axis.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)

    save_results(out, f"{stem}_{device.split(':')[0]}", results, plot)
    print(json.dumps(results, indent=1))
    return results


def timing_arguments(doc: str, official_help: str, repeats: int) -> argparse.Namespace:
    """The scripts' common command line: --device, --official, --repeats, --out."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--official", help=official_help)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--out", default="bench/results")
    return parser.parse_args()


def paper_beside_tiny(args, engine: str, paper_config: dict, build, time_weights,
                      keys: tuple[str, ...], title: str = "") -> dict:
    """Time the paper configuration (the official file given, else the paper model with
    random weights: the same cost) and the embedded tiny weights with `time_weights(weights,
    device, repeats)`, and save both as ENGINE_paper_<device kind>.json / .png."""
    with tempfile.TemporaryDirectory() as folder:
        if args.official:
            paper = Path(args.official)
        else:
            torch.manual_seed(0)
            paper = Path(folder) / f"{engine}_paper_random.pt"
            torch.save({"format": CHECKPOINT_FORMAT, "engine": engine, "config": paper_config,
                        "model": build().state_dict()}, paper)
        configs = {"paper" + ("" if args.official else " (random weights)"):
                   time_weights(paper, args.device, args.repeats),
                   "tiny": time_weights(None, args.device, args.repeats)}
    return save_config_timings(args.out, f"{engine}_paper", args.device, args.repeats, configs,
                               keys, title)
