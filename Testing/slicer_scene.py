"""A headless Slicer scene on slicer-core: the MRML scene, application logic and the module
logics the tests use, registered as Slicer's application does at start-up."""
import tempfile

import numpy as np
import slicer

from InteractiveVesselSegLib.mrml_volume import image_array, matrix_to_numpy, numpy_to_matrix  # noqa: F401


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


def read_node(scene, node_class: str, storage_class: str, path):
    """A node read from a file by one of Slicer's storage nodes (as File > Add Data does)."""
    node = scene.AddNewNodeByClass(node_class)
    storage = getattr(slicer, storage_class)()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise RuntimeError(f"{storage_class} could not read {path}")
    return node


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
