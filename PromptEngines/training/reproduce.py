"""Re-run the command a weights file was trained with and compare: the proof a model card
asks for ("re-running the card's command reproduces its weights' metrics").

The command is read from the checkpoint itself, run in a fresh process with its --out moved
into a work folder (the original weights are never touched), and the new checkpoint is
compared with the old one: weights sha256 (bit for bit on CPU, where training is
deterministic) and each held-out metric. A re-run cut short (the machine or session ended)
goes on from the last resume checkpoint it left in the work folder: hours of training are
not started again, and the result is the same as an uninterrupted run's.
"""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from ..backbones.checkpoint import file_sha256
from ..errors import IVSegError
from .tasks import json_values, model_recipe, read_config, recipe
from .trainer import resume_path


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


def _option(arguments: list[str], name: str) -> str | None:
    """An option's value in `ivseg train` arguments (`--name V` or `--name=V`; the last one
    given wins, as argparse has it; train takes no abbreviations)."""
    value = None
    for at, word in enumerate(arguments):
        if word == name and at + 1 < len(arguments):
            value = arguments[at + 1]
        elif word.startswith(name + "="):
            value = word[len(name) + 1:]
    return value


GONE = "no longer an option"


def recipe_changes(arguments: list[str], recorded: dict | None,
                   recorded_model: dict | None = None) -> dict:
    """{option: [trained with, what today's code gives]} for the train options (`recorded`)
    and the model config (`recorded_model`, its keys as "model.KEY") the recorded command no
    longer gives (a default or its config file changed since): such a re-run cannot
    reproduce."""
    engine = _option(arguments, "--engine")
    if engine is None or not (recorded or recorded_model):
        return {}                                # nothing to compare (the re-run will say)
    config = read_config(_option(arguments, "--config"), engine)
    changes = {}
    if recorded:
        changes |= _changes(recorded, recipe(engine, config))
    if recorded_model:
        changes |= {f"model.{key}": values for key, values in
                    _changes(recorded_model, model_recipe(engine, config)).items()}
    return changes


def _changes(recorded: dict, today: dict) -> dict:
    recorded = json_values(recorded)                 # tuples as the lists of today
    # An option added since is not in the record: what the old code did there is unknown.
    return {key: [then, today.get(key, GONE)] for key, then in sorted(recorded.items())
            if key not in today or then != today[key]}


def starting_point_unchanged(arguments: list[str], recorded: dict | None) -> None:
    """A fine-tuning run (`--init W`) reproduces only from the very weights it started from:
    refused at once when W is missing or is another file than the one recorded."""
    path = _option(arguments, "--init")
    if path is None or not recorded:
        return
    if not Path(path).is_file():
        raise IVSegError(f"the run started from {path} ({recorded['file']}, sha256 "
                         f"{recorded['sha256']}), which is not there")
    if file_sha256(path) != recorded["sha256"]:
        raise IVSegError(f"the run started from {recorded['file']} with sha256 "
                         f"{recorded['sha256']}; {path} is another file now")


def paused_step(paused: Path, command: str, original: dict) -> int | None:
    """The step where an earlier re-run of `command` stopped short, leaving its resume
    checkpoint `paused` (None: there is none, or that run finished: this one starts afresh).
    One left by another command, or by this command under another recipe (its config file
    changed since), is refused, not taken for this run's."""
    if not paused.is_file():
        return None
    checkpoint = torch.load(paused, map_location="cpu", weights_only=True)
    settings = checkpoint.get("settings", {})
    if settings.get("command") != command:
        raise IVSegError(f"{paused} was left by another run ({settings.get('command')!r}), not "
                         f"by this re-run ({command!r}): remove it or choose another --workdir")
    for key in ("config", "train_options"):
        if json_values(checkpoint.get(key)) != json_values(original.get(key)):
            raise IVSegError(f"{paused} was left by this command under another {key} (its "
                             "config file or defaults changed since): remove it or choose "
                             "another --workdir")
    step = int(checkpoint["step"])
    return step if step < int(settings.get("steps", step + 1)) else None


QUALITY_WORDS = ("dice", "iou", "fraction")      # shares in [0, 1], whatever the engine


def quality_metrics(metrics) -> list[str]:
    """The held-out metrics the tolerance applies to: every engine's Dice, clDice, IoU and
    fractions (not times, millimetres or counts, which have other scales)."""
    return [key for key in metrics if any(word in key.lower() for word in QUALITY_WORDS)
            and "seconds" not in key.lower()]


def run_child(argv: list[str]) -> subprocess.CompletedProcess:
    """Run the re-run as a child process that stops when `ivseg reproduce` is stopped: on
    SIGTERM (`kill`, a closed session) Python would exit at once and leave the child training
    into the workdir on its own; raised as SystemExit instead, subprocess.run kills it."""
    if threading.current_thread() is not threading.main_thread():   # (signals: main only)
        return subprocess.run(argv, capture_output=True, text=True)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return subprocess.run(argv, capture_output=True, text=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(number, frame):
    raise SystemExit(128 + number)


def reproduce(weights: str | Path, workdir: str | Path, tolerance: float = 0.01) -> dict:
    weights, workdir = Path(weights), Path(workdir).resolve()   # one --out, however named
    original = torch.load(weights, map_location="cpu", weights_only=True)
    command = original.get("command")
    if not command:
        raise IVSegError(f"{weights.name} records no training command to re-run")
    rerun = workdir / weights.name
    arguments = rerun_arguments(command, rerun)
    changed = recipe_changes(arguments, original.get("train_options"), original.get("config"))
    if changed:                     # hours of training that could not match: say so now
        raise IVSegError(
            f"{weights.name} was trained with train options or a model config its command no "
            "longer gives (defaults or its config file changed since): "
            + "; ".join(f"{key} then {then!r}, now {now!r}" for key, (then, now) in changed.items())
            + ". Re-run it on the code and config that trained it")
    starting_point_unchanged(arguments, original.get("initial_weights"))
    workdir.mkdir(parents=True, exist_ok=True)
    paused = resume_path(rerun)
    resumed_from = paused_step(paused, "ivseg " + shlex.join(arguments), original)
    going_on = [] if resumed_from is None else ["--resume", str(paused)]
    started = time.perf_counter()
    finished = run_child([sys.executable, "-m", "PromptEngines.cli", *arguments, *going_on])
    if finished.returncode != 0:
        raise IVSegError(f"the re-run failed ({finished.returncode}): "
                         f"{finished.stderr.strip()[-500:]}")
    again = torch.load(rerun, map_location="cpu", weights_only=True)
    old, new = original.get("metrics", {}), again.get("metrics", {})
    differences = {key: new[key] - old[key] for key in old
                   if isinstance(old[key], float) and isinstance(new.get(key), float)}
    quality = quality_metrics(differences)
    identical = again.get("weights_sha256") == original.get("weights_sha256")
    return {
        "weights": str(weights), "command": command, "rerun": " ".join(["ivseg", *arguments]),
        "identical_weights": identical,
        "weights_sha256": {"card": original.get("weights_sha256"), "rerun": again.get("weights_sha256")},
        "metrics": {"card": old, "rerun": new}, "differences": differences,
        # no held-out metrics (a --no-eval run): the weights alone decide
        "within_tolerance": (all(abs(differences[k]) <= tolerance for k in quality) if quality
                             else identical),
        "compared": quality,
        "tolerance": tolerance,
        # the training's, over every sitting; and this call's (less where it went on)
        "wall_seconds": again.get("wall_seconds"), "this_run_seconds": time.perf_counter() - started,
        "hardware": again.get("hardware"), "torch": again.get("torch"),
        "resumed_from_step": resumed_from,
    }


def write_report(report: dict, out: str | Path) -> None:
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
