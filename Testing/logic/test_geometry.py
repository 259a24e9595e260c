"""Geometry is sacred: RAS <-> voxel with oblique directions, anisotropic spacing and a
non-zero origin, checked against SimpleITK's and Slicer's own readers."""
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicerio
import vtk

from PromptEngines.data.segmentation_file import (Segment, read_segmentation, write_mask,
                                                  write_segmentation)
from PromptEngines.data.volume import LPS_TO_RAS, Volume, read_volume, write_volume
from PromptEngines.errors import PromptError
from PromptEngines.prompts import Box, Point
from slicer_scene import (image_array, labelmap_in_grid, matrix_to_numpy, new_scene,
                          numpy_to_matrix, read_node)


def test_ras_seed_maps_to_the_right_voxel_and_back(oblique_volume):
    volume = oblique_volume
    matrix = volume.ijk_to_ras
    for zyx in [(0, 0, 0), (3, 5, 7), (6, 10, 12), (2, 9, 1)]:
        z, y, x = zyx
        ras = matrix @ np.array([x, y, z, 1.0])            # the definition, written out
        assert volume.voxel_of(ras[:3]) == zyx
        np.testing.assert_allclose(volume.ras_to_index(ras[:3]), zyx, atol=1e-9)
        np.testing.assert_allclose(volume.index_to_ras(zyx), ras[:3], atol=1e-9)
    # Half a voxel off along the 2.5 mm axis still rounds to the same voxel.
    k_axis = matrix[:3, 2]
    assert volume.voxel_of(volume.index_to_ras((3, 5, 7)) + 0.45 * k_axis) == (3, 5, 7)
    assert volume.voxel_of(volume.index_to_ras((3, 5, 7)) + 0.55 * k_axis) == (4, 5, 7)
    with pytest.raises(PromptError, match="outside the volume"):
        volume.voxel_of(volume.index_to_ras((7.6, 5, 7)))
    np.testing.assert_allclose(volume.spacing_zyx, (2.5, 0.7, 0.9))


def test_prompts_move_between_frames(oblique_volume):
    volume = oblique_volume
    point = Point(volume.index_to_ras((2, 3, 4)), 0).map_coordinates(volume.ras_to_index)
    np.testing.assert_allclose(point.position, (2, 3, 4), atol=1e-9)
    assert point.label == 0
    box = Box(volume.index_to_ras((1, 1, 1)), volume.index_to_ras((3, 4, 5)))
    in_index = box.map_coordinates(volume.ras_to_index)
    assert all(lo <= 1 + 1e-9 for lo in in_index.low) and in_index.high[0] >= 3 - 1e-9


def test_volume_file_geometry_matches_simpleitk_and_slicer(oblique_volume, tmp_path):
    path = tmp_path / "oblique.nrrd"
    write_volume(oblique_volume, path)
    again = read_volume(path)
    np.testing.assert_allclose(again.ijk_to_ras, oblique_volume.ijk_to_ras, atol=1e-9)
    np.testing.assert_array_equal(again.array, oblique_volume.array)
    # SimpleITK's own index -> physical (LPS) mapping agrees with ours.
    image = sitk.ReadImage(str(path))
    lps = image.TransformContinuousIndexToPhysicalPoint((7.0, 5.0, 3.0))      # (i, j, k)
    np.testing.assert_allclose((LPS_TO_RAS[:3, :3] @ lps), again.index_to_ras((3, 5, 7)), atol=1e-6)
    # Slicer's volume reader gives the same IJK-to-RAS and voxels.
    node = read_node(new_scene(), "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", path)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(matrix_to_numpy(matrix), oblique_volume.ijk_to_ras, atol=1e-6)
    np.testing.assert_array_equal(image_array(node.GetImageData()), oblique_volume.array)


@pytest.fixture
def two_segments(vessel_case):
    return [Segment("vessel", vessel_case.label), Segment("other vessel", vessel_case.distractor, (0.1, 0.4, 0.9))]


def test_our_seg_nrrd_opens_in_slicer_with_same_voxels_and_geometry(vessel_case, two_segments, tmp_path):
    path = tmp_path / "ours.seg.nrrd"
    write_segmentation(path, two_segments, vessel_case.volume.ijk_to_ras)
    node = read_node(new_scene(), "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", path)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    for index, expected in enumerate(two_segments):
        segment = segmentation.GetNthSegment(index)
        assert segment.GetName() == expected.name
        np.testing.assert_allclose(segment.GetColor(), expected.rgb, atol=1e-6)
        labelmap = segment.GetRepresentation("Binary labelmap")
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        np.testing.assert_allclose(matrix_to_numpy(matrix), vessel_case.volume.ijk_to_ras, atol=1e-5)
        full = labelmap_in_grid(labelmap, vessel_case.label.shape)
        np.testing.assert_array_equal(full == segment.GetLabelValue(), expected.mask.astype(bool))


def test_our_seg_nrrd_reads_in_slicerio(vessel_case, two_segments, tmp_path):
    path = tmp_path / "ours.seg.nrrd"
    write_segmentation(path, two_segments, vessel_case.volume.ijk_to_ras)
    segmentation = slicerio.read_segmentation(str(path))
    ijk_to_ras = LPS_TO_RAS @ np.asarray(segmentation["ijkToLPS"])
    np.testing.assert_allclose(ijk_to_ras, vessel_case.volume.ijk_to_ras, atol=1e-5)
    voxels = np.transpose(segmentation["voxels"], (2, 1, 0))             # (i, j, k) -> (z, y, x)
    by_name = {s["name"]: s["labelValue"] for s in segmentation["segments"]}
    for expected in two_segments:
        np.testing.assert_array_equal(voxels == by_name[expected.name], expected.mask.astype(bool))


def test_a_segmentation_saved_by_slicer_reads_back_here(vessel_case, tmp_path):
    scene = new_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    labelmap = slicer.vtkOrientedImageData()
    shape = vessel_case.label.shape
    labelmap.SetDimensions(shape[2], shape[1], shape[0])
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    labelmap.SetImageToWorldMatrix(numpy_to_matrix(vessel_case.volume.ijk_to_ras))
    image_array(labelmap)[...] = vessel_case.label
    segment_id = node.GetSegmentation().AddEmptySegment("vessel", "vessel")
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(labelmap, node, segment_id)
    path = tmp_path / "by_slicer.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    segments, geometry = read_segmentation(path)
    assert [s.name for s in segments] == ["vessel"]
    # Slicer crops the saved labelmap to the segment; compare in RAS through both grids.
    present = np.argwhere(segments[0].mask)
    ras = [geometry.index_to_ras(p) for p in present]
    back = {vessel_case.volume.voxel_of(r) for r in ras}
    assert back == {tuple(p) for p in np.argwhere(vessel_case.label)}


def test_write_mask_refuses_overlaps_and_shape_mismatch(tmp_path):
    from PromptEngines.errors import VolumeError
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0, 0] = 1
    with pytest.raises(VolumeError, match="overlaps"):
        write_segmentation(tmp_path / "x.seg.nrrd", [Segment("a", a), Segment("b", a)], np.eye(4))
    with pytest.raises(VolumeError, match="shape"):
        write_segmentation(tmp_path / "x.seg.nrrd", [Segment("a", a), Segment("b", a[:1])], np.eye(4))
    write_mask(tmp_path / "empty.seg.nrrd", np.zeros((2, 3, 4), np.uint8), np.eye(4))
    segments, _ = read_segmentation(tmp_path / "empty.seg.nrrd")
    assert segments[0].mask.sum() == 0
