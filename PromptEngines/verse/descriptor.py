"""verse, described for the registry (no code of the engine is imported here)."""
from ..descriptor import EngineDescriptor

VERSE = EngineDescriptor(
    name="verse",
    summary="cardiac MRI stacks: LV, Myo or RV on every slice, corrected with clicks, or "
            "anything from clicks alone (VerSe, IPMI 2025)",
    engine="PromptEngines.verse.engine:VerseEngine",
    capabilities=frozenset({"auto", "point"}),
    structures=("LV", "Myo", "RV"),
    needs_3d=True,
    takes_weights=True,
    default_weights="verse_tiny.pt",
    training="PromptEngines.verse.train:training_task",
    config_sections=frozenset({"model", "train"}),
    benchmark="PromptEngines.verse.benchmark",
)
