"""regiongrow, described for the registry (no code of the engine is imported here)."""
from ..descriptor import EngineDescriptor

REGIONGROW = EngineDescriptor(
    name="regiongrow",
    summary="intensity-band region growing from the prompts (the baseline a Slicer user has)",
    engine="PromptEngines.regiongrow.engine:RegionGrowEngine",
    capabilities=frozenset({"point", "box", "scribble", "lasso", "mask"}),
    trace_preference=9,               # the fallback when no learned tracer is ready
)
