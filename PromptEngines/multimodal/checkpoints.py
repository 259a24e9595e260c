"""multimodal's weights files: our checkpoints (`ivseg train --engine multimodal`), tiny or
paper configuration, told apart by the config they carry."""
from __future__ import annotations

from pathlib import Path

from ..backbones.checkpoint import load_strict, read_checkpoint
from ..errors import CheckpointError
from .descriptor import MULTIMODAL

DEFAULT_WEIGHTS = MULTIMODAL.weights_path


def build_model(config: dict):
    """The model a checkpoint's config describes, to load the checkpoint's weights into."""
    kind = config.get("kind", "tiny")
    if kind == "tiny":
        from .text import placeholder_tokens
        from .tiny_model import TinyConfig, TinyMultimodal
        return TinyMultimodal(TinyConfig.from_dict(config), tokens=placeholder_tokens())
    if kind == "paper":
        from .paper_model import PaperMultimodal
        options = {k: v for k, v in config.items() if k != "kind"}
        return PaperMultimodal(**options)
    raise CheckpointError(f"unknown multimodal model kind {kind!r} (tiny or paper)")


def load_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode on `device`, the checkpoint dict)."""
    checkpoint = read_checkpoint(path, MULTIMODAL.name)
    model = build_model(checkpoint["config"])
    load_strict(model, checkpoint["model"], Path(path).name)
    return model.eval().to(device), checkpoint
