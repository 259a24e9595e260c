"""Keeps each segment's prompt sequence on the segmentation node (a node attribute), so it is
saved with the scene (.mrb) and can be exported, imported and replayed."""
from __future__ import annotations

import json

from PromptEngines.prompts import PromptSequence

ATTRIBUTE_PREFIX = "InteractiveVesselSeg.Prompts."


def attribute_name(segment_id: str) -> str:
    return ATTRIBUTE_PREFIX + segment_id


def save(segmentation_node, segment_id: str, sequence: PromptSequence) -> None:
    segmentation_node.SetAttribute(attribute_name(segment_id), json.dumps(sequence.to_json()))


def load(segmentation_node, segment_id: str) -> PromptSequence | None:
    text = segmentation_node.GetAttribute(attribute_name(segment_id))
    return PromptSequence.from_json(json.loads(text)) if text else None


def recorded_segments(segmentation_node) -> list[str]:
    names = segmentation_node.GetAttributeNames() or []
    return [n[len(ATTRIBUTE_PREFIX):] for n in names if n.startswith(ATTRIBUTE_PREFIX)]
