"""prism, described for the registry (no code of the engine is imported here)."""
from ..descriptor import EngineDescriptor
from .intensity import WINDOWS

PRISM = EngineDescriptor(
    name="prism",
    summary="3D points, boxes, scribbles and masks, iterated with confidence and corrective "
            "refinement (PRISM, MICCAI 2024)",
    engine="PromptEngines.prism.engine:PrismEngine",
    capabilities=frozenset({"point", "box", "scribble", "mask"}),
    needs_3d=True,
    takes_weights=True,
    default_weights="prism_tiny.pt",
    training="PromptEngines.prism.train:training_task",
    config_sections=frozenset({"model", "train"}),
    benchmark="PromptEngines.prism.benchmark",
    settings=(("intensity", tuple(WINDOWS)),),
)
