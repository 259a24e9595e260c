"""The segment writer never touches another segment's voxels, even when Slicer has put that
segment on the writer's labelmap layer (AddEmptySegment adds new segments to an existing
layer; Segment Editor collapses layers and paints on shared ones)."""
import numpy as np
import pytest

from InteractiveVesselSegLib.mrml_volume import add_volume_node, image_array
from InteractiveVesselSegLib.segment_writer import SegmentWriter
from PromptEngines.data.synthetic.cardiac import cardiac_volume
from slicer_scene import new_scene


@pytest.fixture
def two_segments():
    """Segments A (written by a writer) and B, both painted."""
    scene = new_scene()
    volume = cardiac_volume(1000, slices=4, size=32).volume
    node = add_volume_node(scene, volume, "cine")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "heart")
    a = segmentation.GetSegmentation().AddEmptySegment("A", "A")
    b = segmentation.GetSegmentation().AddEmptySegment("B", "B")
    writer = SegmentWriter(segmentation, a, node)
    mask_a = np.zeros(volume.shape, np.uint8)
    mask_a[1:3, 5:15, 5:15] = 1
    writer.write_all(mask_a)
    mask_b = np.zeros(volume.shape, np.uint8)
    mask_b[1:3, 18:25, 18:25] = 1
    SegmentWriter(segmentation, b, node).write_all(mask_b)
    return segmentation, writer, b, mask_a, mask_b


def test_a_write_after_the_layers_were_collapsed_keeps_the_other_segment(two_segments):
    segmentation, writer, b, mask_a, mask_b = two_segments
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)      # one shared layer
    assert segmentation.GetSegmentation().GetLayerIndex(b) == \
        segmentation.GetSegmentation().GetLayerIndex(writer.segment_id)
    writer.write_all(np.zeros_like(mask_a))                # A erased over the whole volume
    np.testing.assert_array_equal(writer.read(b), mask_b)
    assert not writer.read().any()
    assert writer.edited_outside()                          # the collapse was noticed


def test_a_write_after_the_other_was_painted_on_the_shared_layer_keeps_it(two_segments):
    segmentation, writer, b, mask_a, mask_b = two_segments
    found = segmentation.GetSegmentation()
    found.CollapseBinaryLabelmaps(False)
    # Segment Editor paints B on the shared layer with B's label value.
    layer = image_array(segmentation.GetBinaryLabelmapInternalRepresentation(b))
    layer[3, 5:15, 5:15] = found.GetSegment(b).GetLabelValue()
    painted = mask_b.copy()
    painted[3, 5:15, 5:15] = 1
    patch = np.zeros((4, 20, 20), np.uint8)
    patch[:3, 2:8, 2:8] = 1
    writer.write((slice(0, 4), slice(0, 20), slice(0, 20)), patch)
    np.testing.assert_array_equal(writer.read(b), painted)
    expected = mask_a.copy()
    expected[:, :20, :20] = patch
    np.testing.assert_array_equal(writer.read(), expected)
