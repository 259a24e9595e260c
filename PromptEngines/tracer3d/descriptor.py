"""tracer3d, described for the registry (no code of the engine is imported here)."""
from ..descriptor import EngineDescriptor

TRACER3D = EngineDescriptor(
    name="tracer3d",
    summary="one click traces the whole vessel tree (Zhang, Yu, Xue, MIDL 2026)",
    engine="PromptEngines.tracer3d.engine:Tracer3DEngine",
    capabilities=frozenset({"point"}),
    needs_3d=True,
    takes_weights=True,
    default_weights="tracer3d_tiny.pt",
    trace_preference=0,
    training="PromptEngines.tracer3d.train:training_task",
    config_sections=frozenset({"model", "train", "trace"}),
    benchmark="PromptEngines.tracer3d.benchmark",
)
