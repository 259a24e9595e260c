"""A Slicer volume node as an engine-ready `Volume` (voxels + IJK-to-world-RAS)."""
from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from PromptEngines.data.volume import Volume
from PromptEngines.errors import VolumeError


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def ijk_to_world(volume_node) -> np.ndarray:
    """IJK to world RAS: the node's IJK-to-RAS, under its parent transform if linear (points
    the user places are in world coordinates)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = matrix_to_numpy(matrix)
    parent = volume_node.GetParentTransformNode()
    if parent is None:
        return ijk_to_ras
    if not parent.IsTransformToWorldLinear():
        raise VolumeError(f"volume {volume_node.GetName()!r} is under a non-linear transform; "
                          "harden it first")
    to_world = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(to_world)
    return matrix_to_numpy(to_world) @ ijk_to_ras


def image_array(image) -> np.ndarray:
    """A vtkImageData's voxels as a (z, y, x) numpy view."""
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
        tuple(reversed(image.GetDimensions())))


def volume_from_node(volume_node) -> Volume:
    """The node's voxels (copied) and world geometry; their values are checked where the
    engine takes them (`Annotation`, on the worker), not on the main thread."""
    if volume_node is None:
        raise VolumeError("no input volume selected")
    image = volume_node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise VolumeError(f"volume {volume_node.GetName()!r} has no voxels")
    if image.GetNumberOfScalarComponents() != 1:
        raise VolumeError(f"volume {volume_node.GetName()!r} has "
                          f"{image.GetNumberOfScalarComponents()} components; a scalar volume is needed")
    # A copy: the engine keeps the image while the node's memory may be reallocated.
    return Volume(image_array(image).copy(), ijk_to_world(volume_node),
                  path=source_path(volume_node))


def source_path(volume_node) -> str:
    """The file the volume was loaded from (what a recorded session names), else its name."""
    storage = volume_node.GetStorageNode()
    file_name = storage.GetFileName() if storage is not None else None
    return file_name or volume_node.GetName()


def add_volume_node(scene, volume: Volume, name: str):
    """A scalar volume node holding `volume`'s voxels (float32) and its IJK-to-RAS."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(*reversed(volume.shape))
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image_array(image)[...] = volume.array
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.ijk_to_ras))
    return node
