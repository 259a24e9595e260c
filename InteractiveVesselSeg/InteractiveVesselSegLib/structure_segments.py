"""Each automatic structure in a segment of its own: the segment named after the structure,
found again by that name (case-insensitive) or made in the structure's standard colour.

Colours belong to the structure's name, not to an engine: any engine's "LV" looks the same.
"""
from __future__ import annotations

# RGB 0-255: the colours cardiac segmentation figures and tools conventionally give the
# three structures (LV blood pool red, myocardium green, RV blue). Slicer's anatomy
# terminology colours them three near-identical brownish reds ("Left Ventricle" (152, 55, 13),
# "Right Ventricle" (181, 85, 57), "Muscle" (192, 104, 88)), which cannot be told apart
# overlaid on one slice.
STRUCTURE_COLOURS = {
    "LV": (220, 50, 47),
    "Myo": (60, 180, 75),
    "RV": (38, 110, 220),
}


def _key(name: str) -> str:
    return name.strip().lower()


def structure_colour(name: str) -> tuple[float, float, float] | None:
    """The structure's standard colour (0-1, as segments take it); None if it has none."""
    colours = {_key(known): rgb for known, rgb in STRUCTURE_COLOURS.items()}
    rgb = colours.get(_key(name))
    return None if rgb is None else tuple(c / 255 for c in rgb)


def find_segment(segmentation_node, name: str) -> str | None:
    """The ID of the segment named `name` (case-insensitive), if there is one."""
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if _key(segmentation.GetNthSegment(index).GetName()) == _key(name):
            return segmentation.GetNthSegmentID(index)
    return None


def structure_segment(segmentation_node, name: str) -> str:
    """The structure's segment: the one of its name, or a new empty one in its colour."""
    found = find_segment(segmentation_node, name)
    if found is not None:
        return found
    segmentation, colour = segmentation_node.GetSegmentation(), structure_colour(name)
    if colour is None:                  # no standard colour: Slicer's default
        return segmentation.AddEmptySegment(name, name)
    return segmentation.AddEmptySegment(name, name, colour)
