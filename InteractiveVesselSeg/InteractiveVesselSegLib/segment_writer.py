"""Writes engine updates into one segment, touching only the changed region.

The segment gets its own labelmap layer on the volume's grid (full extent), so an update's
(z, y, x) region indexes it directly; after a write the segment is marked modified, which
is what Slicer's views and 3D surface generation listen to. Edits made to the segment by
anything else (Segment Editor, a script) between two prompts are noticed from the labelmap's
modification time, so the session can take them up instead of writing over them.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk

from .mrml_volume import ijk_to_world, image_array, numpy_to_matrix

BINARY_LABELMAP = "Binary labelmap"


class SegmentWriter:
    def __init__(self, segmentation_node, segment_id: str, volume_node):
        self.node, self.segment_id = segmentation_node, segment_id
        self.shape = tuple(reversed(volume_node.GetImageData().GetDimensions()))
        self.ijk_to_ras = ijk_to_world(volume_node)
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        segmentation = segmentation_node.GetSegmentation()
        if segmentation.GetSegment(segment_id) is None:
            raise KeyError(f"segmentation has no segment {segment_id!r}")
        self.initial = self.read()         # what the segment held before this session
        self._edited = False
        self._own_layer(self.initial)
        self.writes = 0

    def _own_layer(self, mask: np.ndarray) -> None:
        """The segment on a labelmap layer of its own (writes touch no other segment), on
        the volume's full grid, holding `mask`."""
        self.node.GetSegmentation().SeparateSegmentLabelmap(self.segment_id)
        self._place_on_grid(mask)

    def _stamp(self):
        """What changes when anything but this writer edits the segment's labelmap."""
        labelmap = self.node.GetBinaryLabelmapInternalRepresentation(self.segment_id)
        return (labelmap, labelmap.GetMTime()) if labelmap is not None else None

    def edited_outside(self) -> bool:
        """Edited by something else since this writer last looked (sticky: an edit made while
        an engine job was being written stays noticed until `take_edits`)."""
        self._edited = self._edited or self._stamp() != self._seen
        return self._edited

    def take_edits(self) -> np.ndarray | None:
        """The segment's mask if something else edited it since this writer last wrote (the
        segment is put back on a layer of its own); None if nothing did."""
        if not self.edited_outside():
            return None
        mask = self.read()
        self._own_layer(mask)
        self._edited = False
        return mask

    @property
    def segment(self):
        return self.node.GetSegmentation().GetSegment(self.segment_id)

    def _oriented(self, mask: np.ndarray):
        image = slicer.vtkOrientedImageData()
        image.SetDimensions(self.shape[2], self.shape[1], self.shape[0])
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        image.SetImageToWorldMatrix(numpy_to_matrix(self.ijk_to_ras))
        image_array(image)[...] = mask
        return image

    def read(self, segment_id: str | None = None) -> np.ndarray:
        """The segment's current mask (or another segment's) on the volume's grid (a copy,
        uint8 0/1)."""
        segment_id = segment_id or self.segment_id
        current = slicer.vtkOrientedImageData()
        slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            self.node, segment_id, current)
        reference = self._oriented(np.zeros(self.shape, np.uint8))
        if current.GetPointData().GetScalars() is None or current.IsEmpty():
            return np.zeros(self.shape, np.uint8)
        resampled = slicer.vtkOrientedImageData()
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            current, reference, resampled)
        values = image_array(resampled)
        if self._shares_layer(segment_id):      # the layer holds the others' labels too
            label = self.node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
            return (values == label).astype(np.uint8)
        return (values > 0).astype(np.uint8)

    def _shares_layer(self, segment_id: str) -> bool:
        """Whether other segments are on the segment's labelmap layer (as Segment Editor
        and AddEmptySegment put them)."""
        segmentation = self.node.GetSegmentation()
        return len(segmentation.GetSegmentIDsForLayer(segmentation.GetLayerIndex(segment_id))) > 1

    def others(self) -> np.ndarray:
        """The segmentation's other segments (finished work) as one mask on the volume's
        grid."""
        union = np.zeros(self.shape, np.uint8)
        segmentation = self.node.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            other = segmentation.GetNthSegmentID(index)
            if other != self.segment_id:
                union |= self.read(other)
        return union

    def _place_on_grid(self, mask: np.ndarray) -> None:
        """Give the segment's own layer the volume's full grid, holding `mask`. (Slicer's
        SetBinaryLabelmapToSegment would crop an empty mask to nothing.)"""
        full = self._oriented(mask.astype(np.uint8) * self.segment.GetLabelValue())
        labelmap = self.segment.GetRepresentation(BINARY_LABELMAP)
        if labelmap is None:
            self.segment.AddRepresentation(BINARY_LABELMAP, full)
        else:
            labelmap.DeepCopy(full)
        self.segment.Modified()
        self._seen = self._stamp()

    def _array(self) -> np.ndarray:
        labelmap = self.node.GetBinaryLabelmapInternalRepresentation(self.segment_id)
        if tuple(reversed(labelmap.GetDimensions())) != self.shape:
            self._place_on_grid(self.read())       # someone else cropped or replaced it
            labelmap = self.node.GetBinaryLabelmapInternalRepresentation(self.segment_id)
        return image_array(labelmap)

    def write(self, region, patch: np.ndarray) -> None:
        """Put `patch` (0/1) into `region` of the segment; nothing outside it changes."""
        if any(s.stop <= s.start for s in region):
            return
        self.edited_outside()              # an edit made before this write stays noticed
        if self._shares_layer(self.segment_id):
            # Another segment was put on this layer since (AddEmptySegment, Segment Editor's
            # collapse): writing 0 there would erase its voxels, so move out first.
            self._own_layer(self.read())
        array = self._array()
        value = self.segment.GetLabelValue()
        array[region] = np.where(patch > 0, value, 0).astype(array.dtype)
        self.segment.Modified()
        self._seen = self._stamp()
        self.writes += 1

    def write_all(self, mask: np.ndarray) -> None:
        self.write(tuple(slice(0, n) for n in self.shape), mask)
