"""A "CTA vessel tree (synthetic)" entry in Slicer's Sample Data module, so a new user can
try the extension with one click: the project's own generator (clinical realism: contrast
falling along the tree, bone against the wall, plaque, a vein nearby; oblique, anisotropic),
made on the spot, nothing downloaded."""
from __future__ import annotations

from pathlib import Path

CATEGORY = "InteractiveVesselSeg"
SAMPLE_NAME = "CTAVesselTreeSynthetic"
NODE_NAME = "CTA vessel tree (synthetic)"
SEED, SHAPE = 1002, (96, 160, 160)        # a held-out seed: not a training volume


def load(source=None):
    """Make the volume and add it to the scene (Sample Data's customDownloader)."""
    import slicer

    from PromptEngines.data.synthetic.cta import vessel_volume
    from .mrml_volume import add_volume_node

    node = add_volume_node(slicer.mrmlScene, vessel_volume(SEED, SHAPE).volume, NODE_NAME)
    if hasattr(slicer.app, "layoutManager"):                 # in the application: show it
        slicer.util.setSliceViewerLayers(background=node, fit=True)
    return node


def register(thumbnail: Path) -> None:
    """Add the entry to Sample Data (called once Slicer has started)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY, sampleName=SAMPLE_NAME, thumbnailFileName=str(thumbnail),
        nodeNames=NODE_NAME, customDownloader=load)
