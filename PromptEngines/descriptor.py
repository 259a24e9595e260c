"""What every shared place needs to know about an engine, in one small record per engine.

The CLI, the trainer, the benchmark runner and the Slicer logic read engines only through
these records (`PromptEngines.registry`). A record names the engine's code by dotted path and
imports it on first use, so listing engines, building the panel or running `regiongrow`
never loads torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError
from .prompts import PROMPT_KINDS, TEXT_COMMANDS

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def load_object(dotted: str):
    """"package.module:attribute" -> the attribute; "package.module" -> the module."""
    module, _, attribute = dotted.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


@dataclass(frozen=True)
class BenchSettings:
    """What `ivseg bench` asks of every engine's benchmark module (`run(settings)`)."""
    out: str
    weights: str | None = None       # None: the engine's embedded weights
    cases: int | None = None         # None: the benchmark's own number of held-out cases
    speed: bool = True               # time the engine too
    threads: int = 2                 # CPU threads (our reference machine has 2 cores)


@dataclass(frozen=True)
class EngineDescriptor:
    name: str
    summary: str                                   # one line, for help texts and the panel
    engine: str | type                             # "module:Class" (or the class itself)
    capabilities: frozenset[str]                   # prompt kinds (undo/reset/mask: all)
    text_commands: tuple[str, ...] = ()            # the text commands it understands
    structures: tuple[str, ...] = ()               # names its automatic prompts take
    needs_3d: bool = False                         # refuses single-slice (2D) images
    takes_weights: bool = False                    # a model: weights file, device
    default_weights: str | None = None             # file in PromptEngines/weights/
    trace_preference: int | None = None            # one-click tracing rank, lowest first
    training: str | None = None                    # "module:function" -> `ivseg train` task
    config_sections: frozenset[str] = frozenset()  # sections of its training config file
    benchmark: str | None = None                   # module with run(BenchSettings), table()
    settings: tuple = ()                           # (name, (choices...)): the first is default

    def __post_init__(self):
        unknown = set(self.capabilities) - set(PROMPT_KINDS)
        if unknown:
            raise ValueError(f"{self.name}: unknown prompt kinds {sorted(unknown)}")
        unknown = set(self.text_commands) - set(TEXT_COMMANDS)
        if unknown:
            raise ValueError(f"{self.name}: unknown text commands {sorted(unknown)}; text "
                             f"commands must be among {TEXT_COMMANDS}")
        if self.text_commands and "text" not in self.capabilities:
            raise ValueError(f"{self.name}: declares text commands but takes no text prompts")
        if self.structures and "auto" not in self.capabilities:
            raise ValueError(f"{self.name}: declares structures but takes no auto prompts")
        if self.default_weights and not self.takes_weights:
            raise ValueError(f"{self.name}: has default weights but takes no weights")

    @property
    def weights_path(self) -> Path | None:
        return None if self.default_weights is None else WEIGHTS_DIR / self.default_weights

    def ready(self) -> bool:
        """Whether the engine can be built with its defaults (its embedded weights exist)."""
        return self.weights_path is None or self.weights_path.is_file()

    def engine_class(self) -> type:
        return self.engine if isinstance(self.engine, type) else load_object(self.engine)

    def training_task(self, source, config: dict, seed: int, batch_size: int, rank: int = 0,
                      world: int = 1):
        """What `ivseg train --engine NAME` trains on `source`."""
        if self.training is None:
            raise EngineError(f"engine {self.name!r} has nothing to train")
        return load_object(self.training)(source, config, seed, batch_size, rank, world)

    def benchmark_module(self):
        """The module behind `ivseg bench --engine NAME`: run(BenchSettings) -> results,
        table(results) -> markdown."""
        if self.benchmark is None:
            raise EngineError(f"engine {self.name!r} has no benchmark yet")
        return load_object(self.benchmark)
