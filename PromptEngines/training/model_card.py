"""Model cards: what a weights file is, how it was made and how well it does, rendered from
the checkpoint's own metadata (so the card cannot drift from the weights).

    python -m PromptEngines.training.model_card WEIGHTS.pt [--extra RESULTS.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..backbones.checkpoint import file_sha256
from ..evaluation.tables import markdown_table


def render(checkpoint: dict, path: Path, extra: dict | None = None) -> str:
    metrics = checkpoint.get("metrics", {})
    parameters = sum(v.numel() for v in checkpoint["model"].values())
    config = checkpoint["config"]
    # A baseline trained by the engine's command (verse's SAM-style model) says so.
    architecture = config.get("architecture")
    other = (f", {architecture} architecture"
             if architecture not in (None, checkpoint["engine"]) else "")
    lines = [
        f"# {path.stem} — {checkpoint['engine']} ({config.get('kind', 'tiny')} "
        f"configuration{other})", "",
        "| | |", "| --- | --- |",
        f"| file | `{path.name}` ({path.stat().st_size / 1e6:.2f} MB, {parameters:,} parameters) |",
        f"| file sha256 | `{file_sha256(path)}` |",
        f"| weights sha256 | `{checkpoint.get('weights_sha256')}` |",
        f"| command | `{checkpoint.get('command', '')}` |",
        f"| data | {checkpoint.get('data', 'synthetic vessel volumes, seeds below 1000 (see command)')} |",
        *_started_from(checkpoint.get("initial_weights")),
        f"| seed | {checkpoint.get('seed')} |",
        f"| steps | {checkpoint.get('step')} |",
        f"| wall time | {checkpoint.get('wall_seconds', 0) / 60:.1f} min |",
        f"| hardware | {checkpoint.get('hardware', '?')} |",
        f"| torch | {checkpoint.get('torch', '?')} |", "",
        "## Model config", "", "```json", json.dumps(checkpoint["config"], indent=1), "```", "",
    ]
    if checkpoint.get("train_options"):
        lines += ["## Training options", "", "```json",
                  json.dumps(checkpoint["train_options"], indent=1), "```", ""]
    if metrics:
        lines += ["## Held-out metrics (written by the training run)", "", markdown_table(
            ["metric", "value"],
            [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in metrics.items()]), ""]
    if extra:
        lines += ["## Benchmark", "", extra.get("text", ""), ""]
    return "\n".join(lines)


def _started_from(initial: dict | None) -> list[str]:
    """The card row naming the official weights training began from, if any."""
    if not initial:
        return []
    rows = [f"| started from | `{initial['file']}` (sha256 `{initial['sha256']}`) |"]
    if initial.get("frozen"):
        rows.append(f"| kept frozen | {', '.join(f'`{name}`' for name in initial['frozen'])} |")
    return rows


def write_card(weights: str | Path, extra: dict | None = None) -> Path:
    weights = Path(weights)
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    card = weights.with_suffix(".md")
    card.write_text(render(checkpoint, weights, extra))
    return card


def main():
    parser = argparse.ArgumentParser(description="render a model card from a checkpoint")
    parser.add_argument("weights")
    parser.add_argument("--extra", help="a markdown file appended as the benchmark section")
    args = parser.parse_args()
    extra = {"text": Path(args.extra).read_text()} if args.extra else None
    print(write_card(args.weights, extra))


if __name__ == "__main__":
    main()
