"""PRISM's weights files: our checkpoints (the tiny config, written by `ivseg train`) or an
official one (MedICL-VU/PRISM's `best.pth.tar`: a training dict whose `model_state_dict`
holds the reference layout, beside the optimizer's state and a numpy scalar). Official files
are read with torch's safe loader and an allow-list (tensors, containers, numpy scalars):
anything else they pickle is refused, never run."""
from __future__ import annotations

from pathlib import Path

from ..backbones.checkpoint import (is_checkpoint, load_strict, our_model,
                                    numpy_scalar_globals, read_weights_file, state_dict_of)
from ..errors import CheckpointError
from .config import PAPER, PrismConfig
from .model import Prism

ENGINE = "prism"
REFINE_KEYS = "mask_decoder.refine."


def official_config(state: dict) -> PrismConfig:
    """The paper config; without the refinement network when the file has none (the paper's
    reported numbers come from a model trained without it)."""
    if not any(key.startswith("image_encoder.") for key in state):
        raise CheckpointError("not a PRISM state dict: no image_encoder.* keys")
    return PAPER if any(k.startswith(REFINE_KEYS) for k in state) else \
        PrismConfig(**{**PAPER.to_json(), "refine": False})


def load_prism(path: str | Path, device: str = "cpu") -> tuple[Prism, dict]:
    """The model (eval mode, on `device`) and its checkpoint record."""
    path = Path(path)
    loaded = read_weights_file(path, allowed=numpy_scalar_globals())
    if is_checkpoint(loaded):
        model, checkpoint = our_model(loaded, path.name, ENGINE,
                                      lambda config: Prism(PrismConfig.from_json(config)))
    else:
        state = state_dict_of(loaded, path.name)
        try:
            config = official_config(state)
        except CheckpointError as error:
            raise CheckpointError(f"{path.name} is neither a prism checkpoint nor an official "
                                  f"PRISM one ({error})") from None
        model = Prism(config)
        load_strict(model, state, path.name)
        checkpoint = {"config": config.to_json(), "note": "official PRISM weights"}
    return model.eval().to(device), checkpoint
