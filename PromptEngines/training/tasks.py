"""Training config files, and each engine's training task (through the registry)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import IVSegError


def read_config(path: str | None) -> dict:
    """An engine's training config file: {"model": {...}, "train": {...}, "trace": {...},
    "data": {"slice_mm": [thinnest, thickest]}}."""
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise IVSegError(f"config file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise IVSegError(f"{path} is not valid JSON: {error}") from None
    unknown = set(config) - {"model", "train", "trace", "data"}
    if unknown:
        raise IVSegError(f"{path}: unknown sections {sorted(unknown)} "
                         "(known: model, train, trace, data)")
    if set(config.get("data", {})) - {"slice_mm"}:
        raise IVSegError(f"{path}: the data section knows only slice_mm")
    return config


def make_task(engine: str, data: str, config: dict, seed: int, batch_size: int, pool: int,
              rank: int = 0, world: int = 1, sessions=()):
    """The engine's training task, found through the engine registry; `sessions` are folders
    of recorded sessions added to the data."""
    from ..data.datasets import training_source
    from ..engine import engine_class

    cls = engine_class(engine)                 # unknown names fail before data is loaded
    source = training_source(data, pool, sessions, **config.get("data", {}))
    return cls.training_task(source, config, seed, batch_size, rank, world)
