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


# ---------------------------------------------------------------------- starting masks
# A session that starts on a segment that already holds a mask records a mask step, and so
# does one that finds the segment edited by another tool between two prompts; the mask
# itself is kept on the node too (bit-packed, zlib, base64), so the .mrb holds everything
# replay needs.
START_PREFIX = "InteractiveVesselSeg.Start."
START_SCHEME = "mrml-attribute:"


def save_start_mask(segmentation_node, segment_id: str, mask, step: int = 0) -> str:
    """Store the mask of mask step `step` (the first step: the segment's mask when the
    session started; a later one: edits made with other tools); returns the path to record
    in the step."""
    import base64
    import zlib

    import numpy as np

    packed = np.packbits(np.asarray(mask, bool).ravel())
    payload = {"shape": list(mask.shape),
               "data": base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode()}
    name = START_PREFIX + segment_id + (f".{step}" if step else "")
    segmentation_node.SetAttribute(name, json.dumps(payload))
    return START_SCHEME + name


def load_start_mask(segmentation_node, path: str):
    import base64
    import zlib

    import numpy as np

    if not path.startswith(START_SCHEME):
        return None
    text = segmentation_node.GetAttribute(path[len(START_SCHEME):])
    if not text:
        raise KeyError(f"the scene has no starting mask {path!r}")
    payload = json.loads(text)
    shape = tuple(payload["shape"])
    bits = np.frombuffer(zlib.decompress(base64.b64decode(payload["data"])), np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(np.uint8)
