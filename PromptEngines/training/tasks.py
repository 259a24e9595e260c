"""Training config files, and each engine's training task (through the registry)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from ..data.training_sources import training_source
from ..descriptor import load_object
from ..errors import IVSegError
from ..registry import descriptor

# Every engine's config may have a data section: how the shared training data is drawn.
DATA_SECTION_KEYS = {"slice_mm", "paired_fraction", "contrast_fall"}


def read_config(path: str | None, engine: str) -> dict:
    """An engine's training config file: the sections its descriptor names (tracer3d:
    {"model": {...}, "train": {...}, "trace": {...}}) and {"data": {"slice_mm": [thinnest,
    thickest], "paired_fraction": 0.5, "contrast_fall": [least, most]}}."""
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise IVSegError(f"config file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise IVSegError(f"{path} is not valid JSON: {error}") from None
    known = set(descriptor(engine).config_sections) | {"data"}
    unknown = set(config) - known
    if unknown:
        raise IVSegError(f"{path}: unknown sections {sorted(unknown)} for {engine} "
                         f"(known: {', '.join(sorted(known))})")
    if set(config.get("data", {})) - DATA_SECTION_KEYS:
        raise IVSegError(f"{path}: the data section knows only "
                         f"{', '.join(sorted(DATA_SECTION_KEYS))}")
    return config


def make_task(engine: str, data: str, config: dict, seed: int, batch_size: int, pool: int,
              rank: int = 0, world: int = 1, sessions=()):
    """The engine's training task, found through the engine registry; `sessions` are folders
    of recorded sessions added to the data."""
    described = descriptor(engine)             # unknown names fail before data is loaded
    if described.training is None:
        raise IVSegError(f"engine {engine!r} has nothing to train")
    source = training_source(data, pool, sessions, **config.get("data", {}))
    return described.training_task(source, config, seed, batch_size, rank, world)


def train_options(options_class, config: dict, engine: str):
    """The config file's train section as an engine's options, or one line naming the
    problem."""
    try:
        return options_class(**config.get("train", {}))
    except TypeError as error:
        raise IVSegError(f"bad {engine} train options: {error}") from None


def is_number(value) -> bool:
    """A finite int or float (not a bool, not a string): what a numeric train option takes."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def named_weights(weights: dict, known, option: str) -> dict[str, float]:
    """A train option's {name: weight} (how often samples of that name are drawn, the others
    1) checked against the `known` names, or one line naming the problem."""
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise IVSegError(f"train.{option}: unknown name {unknown[0]!r}; known: "
                         f"{', '.join(known)}")
    values = {}
    for name, weight in weights.items():
        if not is_number(weight) or weight <= 0:
            raise IVSegError(f"train.{option}: the weight of {name!r} must be a number above "
                             f"0, not {weight!r}")
        values[name] = float(weight)
    return values


def json_values(values: dict) -> dict:
    """`values` as JSON gives them back (tuples as lists): how options compare across a save."""
    return json.loads(json.dumps(values))


def options_record(options) -> dict:
    """An engine's train options as its checkpoints record them."""
    return json_values(options.to_dict() if hasattr(options, "to_dict") else asdict(options))


def recipe(engine: str, config: dict) -> dict:
    """The train options today's code gives a config, as a checkpoint records them: every
    engine's training module defines its `TrainOptions` dataclass."""
    return options_record(train_options(_training_module(engine).TrainOptions, config, engine))


def tiny_with(tiny, model: dict | None):
    """An engine's tiny configuration (a config with to_json / from_json) with a config
    file's "model" section over it."""
    return type(tiny).from_json({**tiny.to_json(), **(model or {})})


def model_recipe(engine: str, config: dict) -> dict:
    """The model config today's code gives a config, as a checkpoint records it: every
    engine's training module defines `model_recipe`."""
    return json_values(_training_module(engine).model_recipe(config))


def _training_module(engine: str):
    training = descriptor(engine).training
    if training is None:
        raise IVSegError(f"engine {engine!r} has nothing to train")
    return load_object(training.partition(":")[0])
