"""Re-run the command a weights file was trained with and compare: the proof a model card
asks for ("re-running the card's command reproduces its weights' metrics").

The command is read from the checkpoint itself, run in a fresh process with its --out moved
into a work folder (the original weights are never touched), and the new checkpoint is
compared with the old one: weights sha256 (bit for bit on CPU, where training is
deterministic) and each held-out metric.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..errors import IVSegError


PAUSE_OPTIONS = ("--resume", "--stop-after")


def uninterrupted_command(arguments: list[str]) -> str:
    """`ivseg train` arguments -> the command a weights file records: the run as if it had
    never paused (without --resume / --stop-after, which change when, not what, it trains)."""
    words, kept = [str(a) for a in arguments], []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in PAUSE_OPTIONS:
            skip = True
        elif not word.startswith(tuple(option + "=" for option in PAUSE_OPTIONS)):
            kept.append(word)
    return "ivseg " + shlex.join(kept)


def rerun_arguments(command: str, out: Path) -> list[str]:
    """`ivseg train ... --out X ...` -> the train arguments with --out replaced by `out`."""
    words = shlex.split(command)
    if words[:2] != ["ivseg", "train"] or "--out" not in words:
        raise IVSegError(f"not an `ivseg train ... --out W.pt` command: {command!r}")
    at = words.index("--out")
    return words[1:at + 1] + [str(out)] + words[at + 2:]


def reproduce(weights: str | Path, workdir: str | Path, tolerance: float = 0.01) -> dict:
    weights, workdir = Path(weights), Path(workdir)
    original = torch.load(weights, map_location="cpu", weights_only=True)
    command = original.get("command")
    if not command:
        raise IVSegError(f"{weights.name} records no training command to re-run")
    workdir.mkdir(parents=True, exist_ok=True)
    rerun = workdir / weights.name
    arguments = rerun_arguments(command, rerun)
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "PromptEngines.cli", *arguments],
                              capture_output=True, text=True)
    if finished.returncode != 0:
        raise IVSegError(f"the re-run failed ({finished.returncode}): {finished.stderr.strip()[-500:]}")
    again = torch.load(rerun, map_location="cpu", weights_only=True)
    old, new = original.get("metrics", {}), again.get("metrics", {})
    differences = {key: new[key] - old[key] for key in old
                   if isinstance(old[key], float) and isinstance(new.get(key), float)}
    quality = [k for k in differences if k.startswith(("median_dice", "median_cldice"))]
    return {
        "weights": str(weights), "command": command, "rerun": " ".join(["ivseg", *arguments]),
        "identical_weights": again.get("weights_sha256") == original.get("weights_sha256"),
        "weights_sha256": {"card": original.get("weights_sha256"), "rerun": again.get("weights_sha256")},
        "metrics": {"card": old, "rerun": new}, "differences": differences,
        "within_tolerance": all(abs(differences[k]) <= tolerance for k in quality),
        "tolerance": tolerance, "wall_seconds": time.perf_counter() - started,
        "hardware": again.get("hardware"), "torch": again.get("torch"),
    }


def write_report(report: dict, out: str | Path) -> None:
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
