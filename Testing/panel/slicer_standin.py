"""A PySide6 stand-in for the parts of Slicer's Qt layer the module's widget uses, so the real
InteractiveVesselSegWidget class runs offscreen on a real slicer-core MRML scene.

It provides a `qt` module (PySide6 classes; file dialogs return a path string as PythonQt's
do), `slicer.ScriptedLoadableModule`, `slicer.util.loadUI` / `childWidgetVariables`, and
Python versions of the CTK/MRML widgets the .ui names (collapsible button, path line edit,
node combo box, segment selector) that list and select real MRML nodes.
"""
from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import types
import unittest
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtUiTools import QUiLoader

MODULE_DIR = Path(__file__).resolve().parents[2] / "InteractiveVesselSeg"


# ---------------------------------------------------------------------------- widgets
class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.Signal(object)

    def setMRMLScene(self, scene):
        self._scene = scene
        for child in self.findChildren(QtWidgets.QWidget):
            if hasattr(child, "setMRMLScene") and child.parent() is not None and child is not self:
                if not isinstance(child, qMRMLWidget) or child.parent() is not self:
                    child.setMRMLScene(scene)
        self.mrmlSceneChanged.emit(scene)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def _text(self):
        return self.title()

    def _set_text(self, text):
        self.setTitle(text)

    text = QtCore.Property(str, _text, _set_text)


class ctkPathLineEdit(QtWidgets.QLineEdit):
    currentPathChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.textChanged.connect(self.currentPathChanged.emit)

    @property
    def currentPath(self):
        return self.text()

    def setCurrentPath(self, path):
        self.setText(path)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._types, self._none, self._scene = [], False, None
        self.currentIndexChanged.connect(lambda _: self.currentNodeChanged.emit(self.currentNode()))

    def _get_types(self):
        return self._types

    def _set_types(self, types_):
        self._types = list(types_)

    nodeTypes = QtCore.Property("QStringList", _get_types, _set_types)

    def _get_none(self):
        return self._none

    def _set_none(self, value):
        self._none = value

    noneEnabled = QtCore.Property(bool, _get_none, _set_none)
    addEnabled = QtCore.Property(bool, lambda self: False, lambda self, v: None)
    removeEnabled = QtCore.Property(bool, lambda self: False, lambda self, v: None)

    def setMRMLScene(self, scene):
        self._scene = scene
        self.refresh()

    def refresh(self):
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        if self._none:
            self.addItem("None", None)
        for class_name in self._types:
            for index in range(self._scene.GetNumberOfNodesByClass(class_name)):
                node = self._scene.GetNthNodeByClass(index, class_name)
                self.addItem(node.GetName(), node.GetID())
        found = self.findData(current)
        self.setCurrentIndex(found if found >= 0 else (0 if self.count() else -1))
        self.blockSignals(False)

    def currentNode(self):
        node_id = self.currentData()
        return self._scene.GetNodeByID(node_id) if (node_id and self._scene) else None

    def setCurrentNode(self, node):
        self.refresh()
        self.setCurrentIndex(self.findData(node.GetID() if node else None))


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    currentNodeChanged = QtCore.Signal(object)
    currentSegmentChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        self.nodes = qMRMLNodeComboBox(self)
        self.nodes.nodeTypes = ["vtkMRMLSegmentationNode"]
        self.segments = QtWidgets.QComboBox(self)
        self._observed = None             # (node, observer tag): its segments are listed
        layout.addWidget(self.nodes)
        layout.addWidget(self.segments)
        self.nodes.currentNodeChanged.connect(self._node_changed)
        self.segments.currentIndexChanged.connect(
            lambda _: self.currentSegmentChanged.emit(self.currentSegmentID() or ""))

    def setMRMLScene(self, scene):
        self.nodes.setMRMLScene(scene)

    def _node_changed(self, node):
        self._observe(node)
        self._list_segments(node)
        self.currentNodeChanged.emit(node)

    def _observe(self, node):
        """Segments added to the node join the list, as in Slicer (the current one stays)."""
        import slicer

        if self._observed is not None:
            self._observed[0].RemoveObserver(self._observed[1])
        self._observed = None if node is None else (node, node.AddObserver(
            slicer.vtkSegmentation.SegmentAdded,
            lambda *_: self._list_segments(node, self.currentSegmentID())))

    def _list_segments(self, node, current=None):
        self.segments.blockSignals(True)
        self.segments.clear()
        if node is not None:
            segmentation = node.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                self.segments.addItem(segmentation.GetNthSegment(i).GetName(),
                                      segmentation.GetNthSegmentID(i))
        if current is not None:
            self.segments.setCurrentIndex(self.segments.findData(current))
        self.segments.blockSignals(False)

    def currentNode(self):
        return self.nodes.currentNode()

    def setCurrentNode(self, node):
        self.nodes.setCurrentNode(node)
        self._node_changed(node)

    def currentSegmentID(self):
        return self.segments.currentData()

    def setCurrentSegmentID(self, segment_id):
        self.segments.setCurrentIndex(self.segments.findData(segment_id))


CUSTOM_WIDGETS = (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox,
                  qMRMLSegmentSelectorWidget)


# ---------------------------------------------------------------------------- slice views
class SliceWidget:
    """A slice view: a Qt widget that receives the mouse, and its real MRML slice node (the
    XY-to-RAS matrix of the view's pixels)."""

    def __init__(self, scene, name, size=256):
        self.view = QtWidgets.QWidget()
        self.view.resize(size, size)
        self.node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        self.node.SetName(name)
        self.node.SetLayoutName(name)
        self.node.SetDimensions(size, size, 1)
        getattr(self.node, {"Red": "SetOrientationToAxial", "Yellow": "SetOrientationToSagittal",
                            "Green": "SetOrientationToCoronal"}[name])()
        self.node.SetFieldOfView(size * 0.5, size * 0.5, 1.0)
        self.node.UpdateMatrices()

    def sliceView(self):
        return self.view

    def mrmlSliceNode(self):
        return self.node


class LayoutManager:
    """Slicer's layout manager, as far as the module uses it: the slice views by name."""

    def __init__(self, scene):
        self.widgets = {name: SliceWidget(scene, name) for name in ("Red", "Yellow", "Green")}

    def sliceViewNames(self):
        return list(self.widgets)

    def sliceWidget(self, name):
        return self.widgets[name]

    def mrmlSliceLogics(self):
        import vtk

        return vtk.vtkCollection()          # no slice logics: nothing to fit


# ---------------------------------------------------------------------------- modules
class FileDialog(QtWidgets.QFileDialog):
    """PythonQt returns the chosen path alone; tests set `next_path`."""
    next_path = ""

    @staticmethod
    def getSaveFileName(*args, **kwargs):
        return FileDialog.next_path

    @staticmethod
    def getOpenFileName(*args, **kwargs):
        return FileDialog.next_path


def make_qt_module():
    qt = types.ModuleType("qt")
    for module in (QtCore, QtGui, QtWidgets):
        for name in dir(module):
            if name.startswith("Q"):
                setattr(qt, name, getattr(module, name))
    qt.QFileDialog = FileDialog
    return qt


class ModuleParent(types.SimpleNamespace):
    pass


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent if parent is not None else QtWidgets.QWidget()
        if self.parent.layout() is None:
            QtWidgets.QVBoxLayout(self.parent)
        self.layout = self.parent.layout()

    def setup(self):
        pass

    def resourcePath(self, filename):
        return str(MODULE_DIR / "Resources" / filename)


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    pass


def load_ui(path):
    loader = QUiLoader()
    for widget in CUSTOM_WIDGETS:
        loader.registerCustomWidget(widget)
    ui_file = QtCore.QFile(str(path))
    ui_file.open(QtCore.QFile.ReadOnly)
    try:
        widget = loader.load(ui_file)
    finally:
        ui_file.close()
    if widget is None:
        raise RuntimeError(f"cannot load {path}: {loader.errorString()}")
    return widget


def child_widget_variables(widget):
    names = types.SimpleNamespace()
    for child in widget.findChildren(QtCore.QObject):
        if child.objectName():
            setattr(names, child.objectName(), child)
    return names


def install(scene):
    """Make `import qt`, `import slicer` and slicer.ScriptedLoadableModule resolve to the
    stand-in, on the given real MRML scene."""
    import slicer
    import slicer.util

    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["panel-tests"])
    # Slicer's settings (qt.QSettings()) in a folder of the tests' own, empty at the start.
    application.setOrganizationName("InteractiveVesselSegTests")
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    settings = tempfile.mkdtemp(prefix="ivseg-settings-")
    atexit.register(shutil.rmtree, settings, True)          # no folder left behind per test
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, settings)
    sys.modules["qt"] = make_qt_module()
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget,
                ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(scripted, cls.__name__, cls)
    sys.modules["slicer.ScriptedLoadableModule"] = scripted
    slicer.ScriptedLoadableModule = scripted
    slicer.mrmlScene = scene
    slicer.app = application
    manager = LayoutManager(scene)
    application.layoutManager = lambda: manager
    slicer.util.loadUI = load_ui
    slicer.util.childWidgetVariables = child_widget_variables
    slicer.util.confirmOkCancelDisplay = lambda *args, **kwargs: True
    slicer.util.errorDisplay = lambda text, **kwargs: None
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    return application
