"""Which training task each engine has (imported on demand)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import EngineError, IVSegError


def read_config(path: str | None) -> dict:
    """An engine's training config file: {"model": {...}, "train": {...}, "trace": {...}}."""
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise IVSegError(f"config file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise IVSegError(f"{path} is not valid JSON: {error}") from None
    unknown = set(config) - {"model", "train", "trace"}
    if unknown:
        raise IVSegError(f"{path}: unknown sections {sorted(unknown)} (known: model, train, trace)")
    return config


def make_task(engine: str, data: str, config: dict, seed: int, batch_size: int, pool: int,
              rank: int = 0, world: int = 1):
    from ..data.datasets import training_source

    source = training_source(data, pool)
    if engine == "tracer3d":
        from ..tracer3d.train import Tracer3DTask, TrainOptions

        try:
            options = TrainOptions(**config.get("train", {}))
            options.parts
        except (TypeError, KeyError) as error:
            raise IVSegError(f"bad tracer3d train options: {error}") from None
        return Tracer3DTask(source, options, config.get("model"), config.get("trace"), seed,
                            batch_size, rank=rank, world=world)
    raise EngineError(f"no training task for engine {engine!r} yet (trainable: tracer3d)")
