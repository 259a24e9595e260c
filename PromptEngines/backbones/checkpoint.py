"""Loading weights files strictly, with errors that say which keys are wrong.

Official checkpoints come in several wrappings: a plain state dict (SAM, ScribblePrompt), a
dict with `model_state_dict` or `state_dict` (PRISM, Lightning), or keys prefixed `module.`
(DataParallel, VerSe). We unwrap those explicitly and then load strictly.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import CheckpointError

WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
SHOWN_KEYS = 4


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def numpy_scalar_globals() -> list:
    """What a training dict's numpy scalars (PRISM's `best_val_loss`) unpickle through, under
    the names numpy 1 and numpy 2 pickle them with: the only objects besides tensors that
    the safe loader is allowed to make for such files."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def read_weights_file(path: str | Path, allowed=()):
    """What a weights file holds, as saved, read with torch's safe loader: tensors and plain
    containers, plus the globals in `allowed` (e.g. `numpy_scalar_globals()`); anything else
    in the pickle is refused, naming it."""
    import torch                  # keeps torch out of the import path of regiongrow

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:     # torch raises many types for corrupt or foreign files
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if refused:
            reason = (f"it pickles {refused.group(1)}, which is not on the allow-list of "
                      "objects a weights file may hold (refused: unpickling it could run code)")
        raise CheckpointError(f"cannot read weights file {path.name}: {reason[:240]}") from None


def state_dict_of(loaded, source: str) -> dict:
    """The tensors of a loaded weights file, unwrapped from its training dict or
    DataParallel prefix."""
    for key in WRAPPER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise CheckpointError(f"{source} does not hold a state dict")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def read_state_dict(path: str | Path, allowed=()) -> dict:
    """The tensors of an official weights file."""
    return state_dict_of(read_weights_file(path, allowed), Path(path).name)


def _listing(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def load_strict(module, state_dict: dict, source: str = "weights") -> None:
    """Load every key and nothing else; otherwise a CheckpointError naming what differs."""
    expected = module.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    reshaped = [k for k in set(expected) & set(state_dict)
                if tuple(expected[k].shape) != tuple(getattr(state_dict[k], "shape", ()))]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if reshaped:
        first = sorted(reshaped)[0]
        problems.append(f"{len(reshaped)} keys with other shapes, e.g. {first} "
                        f"{tuple(state_dict[first].shape)} vs {tuple(expected[first].shape)}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(module).__name__}: "
                              + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------- our own format
CHECKPOINT_FORMAT = "InteractiveVesselSeg checkpoint"


def is_checkpoint(loaded) -> bool:
    """Whether a loaded weights file is one of ours (written by `ivseg train`)."""
    return isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT


def checkpoint_of(loaded, source: str, engine: str) -> dict:
    """A loaded checkpoint of ours, checked: {"format", "engine", "config", "model", ...}."""
    if not is_checkpoint(loaded):
        raise CheckpointError(f"{source} is not an InteractiveVesselSeg checkpoint "
                              "(official backbone weights go with the engine's paper config)")
    if loaded.get("engine") != engine:
        raise CheckpointError(f"{source} holds weights for {loaded.get('engine')!r}, "
                              f"not {engine!r}")
    for key in ("config", "model"):
        if not isinstance(loaded.get(key), dict):
            raise CheckpointError(f"{source} has no {key!r} entry")
    return loaded


def read_checkpoint(path: str | Path, engine: str) -> dict:
    """A checkpoint written by `ivseg train` for `engine`."""
    return checkpoint_of(read_weights_file(path), Path(path).name, engine)


def our_model(loaded, source: str, engine: str, build) -> tuple:
    """One of our checkpoints (already read) as its model, made by `build(config dict)` and
    loaded strictly, and the checkpoint record."""
    checkpoint = checkpoint_of(loaded, source, engine)
    model = build(checkpoint["config"])
    load_strict(model, checkpoint["model"], source)
    return model, checkpoint
