"""A headless Slicer scene on slicer-core: the MRML scene, application logic and the module
logics the tests use, registered as Slicer's application does at start-up."""
import tempfile

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support


def new_scene():
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()   # registers the converters
    segmentations.SetMRMLApplicationLogic(application)
    segmentations.SetMRMLScene(scene)
    markups = slicer.vtkSlicerMarkupsLogic()                      # registers markups nodes
    markups.SetMRMLApplicationLogic(application)
    markups.SetMRMLScene(scene)
    # Data IO (a cache folder for remote/bundled data): reading .mrb bundles needs it.
    cache = tempfile.TemporaryDirectory()
    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    remote_io.SetMRMLApplicationLogic(application)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(cache.name)
    data_io = slicer.vtkDataIOManagerLogic()
    data_io.SetMRMLScene(scene)
    data_io.SetMRMLApplicationLogic(application)
    data_io.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.AddDataIOToScene()
    scene._keep_alive = (application, segmentations, markups, remote_io, data_io, cache)
    return scene


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def image_array(image) -> np.ndarray:
    """Voxels of a vtkImageData as (z, y, x)."""
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def labelmap_in_grid(oriented, shape) -> np.ndarray:
    """A segment's labelmap (which Slicer crops to its extent) placed in the full grid."""
    extent = oriented.GetExtent()
    full = np.zeros(shape, np.uint8)
    if extent[1] < extent[0]:
        return full
    region = (slice(extent[4], extent[5] + 1), slice(extent[2], extent[3] + 1),
              slice(extent[0], extent[1] + 1))
    full[region] = image_array(oriented)
    return full
