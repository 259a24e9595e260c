"""Every engine by name: the one place that lists them.

Adding an engine means adding its folder (with a `descriptor.py`) and one line to ENGINES;
everything shared (CLI, trainer, benchmarks, the Slicer panel) reads the descriptors.
"""
from __future__ import annotations

from .descriptor import EngineDescriptor
from .errors import EngineError
from .multimodal.descriptor import MULTIMODAL
from .prism.descriptor import PRISM
from .regiongrow.descriptor import REGIONGROW
from .tracer3d.descriptor import TRACER3D
from .verse.descriptor import VERSE

ENGINES: dict[str, EngineDescriptor] = {d.name: d for d in (
    REGIONGROW,
    TRACER3D,
    MULTIMODAL,
    PRISM,
    VERSE,
)}


def register(descriptor: EngineDescriptor) -> EngineDescriptor:
    """Add an engine at run time (tests, plug-ins)."""
    ENGINES[descriptor.name] = descriptor
    return descriptor


def available_engines() -> list[str]:
    return sorted(ENGINES)


def descriptor(name: str) -> EngineDescriptor:
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; available: {', '.join(available_engines())}")
    return ENGINES[name]


def engine_class(name: str) -> type:
    return descriptor(name).engine_class()


def get_engine(name: str, weights=None, device=None, **settings):
    """`settings`: the engine's own choices (its descriptor's `settings`, e.g. prism's
    intensity window), as a prompts file records them."""
    known = dict(descriptor(name).settings)
    for key, value in settings.items():
        if key not in known:
            raise EngineError(f"engine {name!r} has no setting {key!r}")
        if value not in known[key]:
            raise EngineError(f"{name} {key} must be one of: {', '.join(known[key])}; "
                              f"got {value!r}")
    return engine_class(name)(weights=weights, device=device, **settings)


def default_tracer() -> str:
    """The ready engine that traces best from one click (tracer3d when its weights are
    there, else the regiongrow baseline)."""
    tracers = sorted((d.trace_preference, d.name) for d in ENGINES.values()
                     if d.trace_preference is not None and d.ready())
    if not tracers:
        raise EngineError("no engine can trace from one click")
    return tracers[0][1]
