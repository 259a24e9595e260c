"""multimodal, described for the registry (no code of the engine is imported here)."""
from ..descriptor import EngineDescriptor
from ..prompts import TEXT_COMMANDS

MULTIMODAL = EngineDescriptor(
    name="multimodal",
    summary="correct a vessel mask with a point and a text command (Lim & Lee, MICCAI 2025)",
    engine="PromptEngines.multimodal.engine:MultimodalEngine",
    capabilities=frozenset({"point", "text"}),
    text_commands=TEXT_COMMANDS,
    takes_weights=True,
    default_weights="multimodal_tiny.pt",
    training="PromptEngines.multimodal.train:training_task",
    config_sections=frozenset({"model", "train"}),
    benchmark="PromptEngines.multimodal.benchmark",
)
