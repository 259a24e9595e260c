"""InteractiveVesselSeg: click once on a vessel and watch the tree appear; correct it with
points, boxes, scribbles and text commands; every prompt is recorded and replayable.

Module, Widget, Logic and Test in Slicer's scripted-module form. The widget only maps
gestures to logic calls; the logic (InteractiveVesselSegLib.logic) runs headless; engines
run on a persistent worker thread and a timer writes their updates as they come.
"""
from __future__ import annotations

import logging
import os

import qt
import slicer
from InteractiveVesselSegLib.armed_tools import ArmedTools
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)

PUMP_INTERVAL_MS = 30
SETTINGS = "InteractiveVesselSeg/"      # the panel's choices: remembered across restarts
PATH_SETTLE_MS = 500                    # a typed weights path is applied once typing stops
# Keys while the module is shown (enter/exit): tools, then text commands 1-5 in their order.
TOOL_KEYS = {"traceButton": "T", "positivePointButton": "P", "negativePointButton": "N",
             "boxButton": "B", "scribbleButton": "S", "lassoButton": "L", "undoButton": "Ctrl+Z",
             "redoButton": "Ctrl+Y"}
TEXT_KEYS = "12345"
SHORTCUT_HELP = ("Keys while the module is shown: T trace, P + point, N − point, B box, "
                 "S scribble, L lasso, 1-5 the text commands in their order, Ctrl+Z undo, "
                 "Ctrl+Y redo, Esc cancel a running job or disarm the tool.")


class InteractiveVesselSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Interactive Vessel Seg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["InteractiveVesselSeg developers"]
        self.parent.helpText = ("One click traces a vessel tree slice by slice; points, boxes, "
                                "scribbles and text commands correct it. Every prompt is "
                                "recorded with the segmentation and can be exported and "
                                "replayed. To try it: Sample Data > InteractiveVesselSeg > "
                                "CTA vessel tree (synthetic). A tool button arms its tool: each "
                                "click (points, text commands) or drag (box, scribble, lasso) "
                                "in a slice view then acts at once. " + SHORTCUT_HELP)
        self.parent.acknowledgementText = ("Methods: Zhang, Yu, Xue (MIDL 2026); Lim & Lee "
                                           "(MICCAI 2025); PRISM (MICCAI 2024); VerSe.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Sample Data gets "CTA vessel tree (synthetic)", made by our generator on the spot."""
    from InteractiveVesselSegLib import sample_data

    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons",
                        "InteractiveVesselSeg.png")
    try:
        sample_data.register(icon)
    except ImportError:                     # a Slicer without the Sample Data module
        logging.info("Sample Data is not available: no synthetic sample registered")


def ensure_dependencies(ask=True) -> bool:
    """Install what PromptEngines/requirements.txt lists and is missing, with Slicer's pip
    helper, after the user agrees (never at import time); torch comes from the PyTorch
    extension."""
    from PromptEngines.requirements import (FROM_PYTORCH_EXTENSION, distribution_name,
                                            missing_requirements)

    missing = missing_requirements()
    if any(distribution_name(r) in FROM_PYTORCH_EXTENSION for r in missing):
        slicer.util.errorDisplay("InteractiveVesselSeg needs PyTorch: install the PyTorch "
                                 "extension from the Extensions Manager, then restart.")
        return False
    if not missing:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "InteractiveVesselSeg needs these Python packages:\n" + "\n".join(missing)
            + "\n\nInstall them now? (this can take a few minutes)"):
        return False
    slicer.util.pip_install(" ".join(missing))       # no spaces inside a requirement
    return True


def qt_value(widget, name):
    """A Qt property's value: an attribute under PythonQt (Slicer), a getter elsewhere."""
    value = getattr(widget, name)
    return value() if callable(value) else value


class InteractiveVesselSegWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/InteractiveVesselSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = None
        self.vocabulary_buttons = {"text": {}, "auto": {}}     # the chosen engine's words
        self.timer = qt.QTimer()
        self.timer.setInterval(PUMP_INTERVAL_MS)
        self.timer.timeout.connect(self.onPump)
        self.pathTimer = qt.QTimer()
        self.pathTimer.setSingleShot(True)
        self.pathTimer.setInterval(PATH_SETTLE_MS)
        self.pathTimer.timeout.connect(self.onEngineSettingsChanged)
        self.armed = ArmedTools(self.onArmedTool)
        self.shortcuts = {}
        self.tool_tips = {}                   # each tool button's own words, then its key
        self.remembered_intensity = ""
        self.connect_gestures()
        self.layout.addStretch(1)

    # ------------------------------------------------------------------ wiring
    def connect_gestures(self):
        ui = self.ui
        ui.engineComboBox.currentTextChanged.connect(self.onEngineChanged)
        ui.deviceComboBox.currentTextChanged.connect(self.onEngineSettingsChanged)
        ui.intensityComboBox.currentTextChanged.connect(self.onEngineSettingsChanged)
        ui.weightsPathLineEdit.currentPathChanged.connect(lambda _: self.pathTimer.start())
        ui.resetSettingsButton.clicked.connect(self.onResetSettings)
        ui.inputVolumeSelector.currentNodeChanged.connect(self.onInputsChanged)
        ui.segmentSelector.currentNodeChanged.connect(self.onInputsChanged)
        ui.segmentSelector.currentSegmentChanged.connect(self.onInputsChanged)
        ui.promptPointsSelector.currentNodeChanged.connect(self.armed.watch)
        ui.traceButton.clicked.connect(lambda: self.onPointTool(trace=True))
        ui.positivePointButton.clicked.connect(lambda: self.onPointTool(positive=True))
        ui.negativePointButton.clicked.connect(lambda: self.onPointTool(positive=False))
        ui.boxButton.clicked.connect(lambda: self.arm("box"))
        ui.scribbleButton.clicked.connect(lambda: self.arm("scribble"))
        ui.lassoButton.clicked.connect(lambda: self.arm("lasso"))
        ui.excludeOthersCheckBox.toggled.connect(self.onExcludeOthersToggled)
        ui.structureSegmentsCheckBox.toggled.connect(self.onStructureSegmentsToggled)
        ui.lockCheckBox.toggled.connect(self.onLockToggled)
        ui.undoButton.clicked.connect(lambda: self.call("undo"))
        ui.redoButton.clicked.connect(lambda: self.call("redo"))
        ui.resetButton.clicked.connect(lambda: self.call("reset"))
        ui.cancelButton.clicked.connect(lambda: self.call("cancel", start=False))
        ui.manualCheckBox.toggled.connect(self.onManualToggled)
        ui.runButton.clicked.connect(lambda: self.call("run_waiting"))
        ui.exportButton.clicked.connect(self.onExport)
        ui.importButton.clicked.connect(self.onImport)

    def text_buttons(self):
        return self.vocabulary_buttons["text"]

    def structure_buttons(self):
        return self.vocabulary_buttons["auto"]

    def rebuild_vocabulary_buttons(self, name):
        """One button per text command and per structure the chosen engine declares; a
        group the engine declares nothing for is hidden."""
        vocabulary = self.logic.engine_vocabulary(name)
        groups = {"text": (self.ui.textCollapsibleButton, self.onTextCommand),
                  "auto": (self.ui.structuresCollapsibleButton, self.onStructure)}
        for kind, (group, act) in groups.items():
            layout = group.layout()
            for button in self.vocabulary_buttons[kind].values():
                layout.removeWidget(button)
                button.deleteLater()
            self.vocabulary_buttons[kind] = {}
            for index, (word, tip) in enumerate(vocabulary[kind].items()):
                button = qt.QPushButton(word)
                button.setToolTip(tip + (f" (key {TEXT_KEYS[index]})"
                                         if kind == "text" and index < len(TEXT_KEYS) else ""))
                button.clicked.connect(lambda _=False, w=word, act=act: act(w))
                if kind == "text":                      # two columns
                    layout.addWidget(button, index // 2, index % 2)
                else:                                   # one row, under its checkbox
                    layout.addWidget(button, 1, index)
                self.vocabulary_buttons[kind][word] = button
            group.setVisible(bool(vocabulary[kind]))
        unavailable = self.logic.text_unavailable(name)
        for button in self.vocabulary_buttons["text"].values():
            button.setEnabled(unavailable is None)
            if unavailable is not None:
                button.setToolTip(unavailable)

    def ensure_logic(self):
        if self.logic is None:
            if not ensure_dependencies():
                raise RuntimeError("dependencies are not installed")
            from InteractiveVesselSegLib.logic import VesselSegLogic
            self.logic = VesselSegLogic()
            self.ui.engineComboBox.blockSignals(True)     # filling it chooses nothing
            self.ui.engineComboBox.clear()
            self.ui.engineComboBox.addItems(self.logic.engines())
            self.ui.engineComboBox.blockSignals(False)
            self.restore_settings()
            self.onInputsChanged()
        return self.logic

    # ------------------------------------------------------------------ keys
    def enter(self):
        """Shortcuts exist while the module is shown, so Slicer's own keys work elsewhere."""
        window = slicer.util.mainWindow() if hasattr(slicer.util, "mainWindow") else None
        parent = window or self.parent
        keys = {key: lambda name=name: self.press(getattr(self.ui, name))
                for name, key in TOOL_KEYS.items()}
        keys.update({key: lambda i=i: self.press(list(self.text_buttons().values())[i:i + 1])
                     for i, key in enumerate(TEXT_KEYS)})
        keys["Esc"] = self.onEscape
        for key, action in keys.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), parent)
            shortcut.activated.connect(action)
            self.shortcuts[key] = shortcut

    def exit(self):
        for shortcut in self.shortcuts.values():
            shortcut.setEnabled(False)
            shortcut.setParent(None)
        self.shortcuts = {}
        self.armed.disarm()

    def press(self, button):
        """A key's button, as if clicked (not when disabled: the tooltip says why)."""
        button = button[0] if isinstance(button, list) and button else button
        if button and button.isEnabled():
            button.click()

    def onEscape(self):
        """Esc: cancel a running job (what it traced stays), else disarm the tool."""
        if self.timer.isActive():
            self.call("cancel", start=False)
        else:
            self.armed.disarm()
            self.ui.statusLabel.setText("no tool armed")

    # ------------------------------------------------------------------ settings
    def restore_settings(self, defaults=False):
        """Engine, weights, device, intensity window and where structures go as last chosen
        (Slicer's settings), or as on first use."""
        settings = qt.QSettings()

        def remembered(key, default):
            return default if defaults else settings.value(SETTINGS + key, default) or default

        engine = remembered("engine", self.logic.default_engine())
        if engine not in self.logic.engines():
            engine = self.logic.default_engine()
        ui = self.ui
        for widget in (ui.engineComboBox, ui.deviceComboBox, ui.weightsPathLineEdit,
                       ui.structureSegmentsCheckBox):
            widget.blockSignals(True)
        ui.weightsPathLineEdit.setCurrentPath(remembered("weights", ""))
        ui.deviceComboBox.setCurrentText(remembered("device", "auto"))
        self.remembered_intensity = remembered("intensity", "")
        ui.intensityComboBox.blockSignals(True)         # rebuilt for the engine, as remembered
        ui.intensityComboBox.clear()
        ui.intensityComboBox.blockSignals(False)
        ui.engineComboBox.setCurrentText(engine)
        ui.structureSegmentsCheckBox.setChecked(remembered("structureSegments", "true") == "true")
        for widget in (ui.engineComboBox, ui.deviceComboBox, ui.weightsPathLineEdit,
                       ui.structureSegmentsCheckBox):
            widget.blockSignals(False)
        self.onStructureSegmentsToggled(ui.structureSegmentsCheckBox.isChecked())
        self.onEngineChanged(engine)

    def onResetSettings(self):
        self.restore_settings(defaults=True)           # and remembered as chosen

    # ------------------------------------------------------------------ gestures
    def call(self, method, *args, start=True):
        """Run one logic method; show its error as one message; start the update timer
        (unless manual mode kept the prompt: the method returned False)."""
        try:
            started = getattr(self.ensure_logic(), method)(*args)
        except Exception as error:           # the panel shows it; the segment is untouched
            self.show_error(error)
            return
        if started is False:
            count = len(self.logic.waiting)
            self.ui.statusLabel.setText(f"{count} prompt{'' if count == 1 else 's'} waiting: "
                                        "Run applies them")
        elif start:
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self.ui.statusLabel.setText("working…")
            self.logic.session.on_update = self.onUpdate
            self.timer.start()

    def onUpdate(self, update):
        """Each update is already in the segment; show how far the engine is."""
        if update.progress is not None:
            self.ui.progressBar.setValue(int(round(100 * update.progress)))
        if update.message:
            self.ui.statusLabel.setText(update.message)

    def show_error(self, error):
        logging.error(str(error))
        self.ui.statusLabel.setText(f"Error: {error}")

    def onPointTool(self, positive=True, trace=False):
        self.arm("trace" if trace else "positive" if positive else "negative")

    def arm(self, tool):
        """A tool button: armed for the next clicks (or drags) in the views; a point tool
        acts at once at a point placed and not used yet."""
        if self.ui.promptPointsSelector.currentNode() is None:     # clicks need a home
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "prompts")
            self.ui.promptPointsSelector.setCurrentNode(node)
        if not self.armed.press(tool):
            name = tool[1] if isinstance(tool, tuple) else tool
            gesture = "drag" if self.armed.dragging else "click"
            self.ui.statusLabel.setText(f"{name}: {gesture} in a view (Esc: stop)")

    def onArmedTool(self, tool, where):
        """A point placed (or, for box, scribble and lasso, a stroke dragged) in a view with
        `tool` armed."""
        positive = self.ui.scribblePositiveCheckBox.isChecked()
        if isinstance(tool, tuple):                    # ("text", command)
            self.call("text_command", tool[1], where)
        elif tool == "trace":
            self.call("trace", where)
        elif tool in ("positive", "negative"):
            self.call("add_point", where, tool == "positive")
        elif tool == "box" and len(where) >= 2:
            self.call("add_box", where[0], where[-1])
        elif tool == "scribble":
            self.call("add_scribble", where, positive)
        elif tool == "lasso" and len(where) >= 3:
            self.call("add_lasso", where, positive)
        else:
            self.show_error(f"{tool}: drag further in the view to draw it")

    def onExcludeOthersToggled(self, checked):
        self.ensure_logic().exclude_others = checked

    def onLockToggled(self, checked):
        self.call("set_locked", bool(checked), start=False)

    def onTextCommand(self, command):
        self.arm(("text", command))

    def onStructure(self, name):
        """A structure button; the segment selector follows the structure to its own
        segment."""
        self.call("segment_structure", name)
        self.show_segment()

    def show_segment(self):
        """The selector shows the logic's current segment (a structure button may have
        chosen or made another)."""
        segment_id = self.logic.segment_id if self.logic is not None else None
        if segment_id and segment_id != self.ui.segmentSelector.currentSegmentID():
            self.ui.segmentSelector.setCurrentSegmentID(segment_id)

    def onStructureSegmentsToggled(self, checked):
        qt.QSettings().setValue(SETTINGS + "structureSegments", "true" if checked else "false")
        self.ensure_logic().structures_to_own_segments = bool(checked)

    def onManualToggled(self, checked):
        self.ensure_logic().manual = bool(checked)

    def onEngineSettingsChanged(self, *_):
        self.onEngineChanged(qt_value(self.ui.engineComboBox, "currentText"))

    def onEngineChanged(self, name):
        if self.logic is None or not name:
            return
        self.pathTimer.stop()
        device = qt_value(self.ui.deviceComboBox, "currentText")
        weights = qt_value(self.ui.weightsPathLineEdit, "currentPath")
        intensity = self.show_intensity(name)
        settings = qt.QSettings()
        for key, value in (("engine", name), ("weights", weights), ("device", device),
                           ("intensity", intensity or "")):
            settings.setValue(SETTINGS + key, value)
        self.logic.set_engine(name, weights or None, None if device in ("", "auto") else device,
                              {"intensity": intensity} if intensity else {})
        for tool, reason in self.logic.engine_tools(name).items():
            for button in self.tool_buttons(tool):
                button.setEnabled(reason is None)
                button_name = qt_value(button, "objectName")
                words = self.tool_tips.setdefault(button_name, button.toolTip())   # the .ui's
                key = f" (key {TOOL_KEYS[button_name]})" if button_name in TOOL_KEYS else ""
                button.setToolTip(reason or words + key)
        self.rebuild_vocabulary_buttons(name)

    def show_intensity(self, name):
        """The intensity windows of an engine that has them (else hidden); the chosen one."""
        windows = self.logic.engine_settings(name).get("intensity", ())
        combo = self.ui.intensityComboBox
        for widget in (combo, self.ui.intensityLabel):
            widget.setVisible(bool(windows))
        if [combo.itemText(i) for i in range(qt_value(combo, "count"))] != list(windows):
            chosen = qt_value(combo, "currentText") or self.remembered_intensity
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(list(windows))
            combo.setCurrentText(chosen if chosen in windows else (windows or [""])[0])
            combo.blockSignals(False)
        return qt_value(combo, "currentText") if windows else None

    def tool_buttons(self, tool):
        """The fixed buttons of a tool (text and structure buttons come from the engine)."""
        ui = self.ui
        return {"point": [ui.positivePointButton, ui.negativePointButton, ui.traceButton],
                "box": [ui.boxButton], "scribble": [ui.scribbleButton],
                "lasso": [ui.lassoButton]}.get(tool, [])

    def onInputsChanged(self, *_):
        if self.logic is None:
            return
        self.logic.set_inputs(self.ui.inputVolumeSelector.currentNode(),
                              self.ui.segmentSelector.currentNode(),
                              self.ui.segmentSelector.currentSegmentID())
        self.ui.lockCheckBox.blockSignals(True)        # shows the chosen segment's lock
        self.ui.lockCheckBox.setChecked(self.logic.locked)
        self.ui.lockCheckBox.blockSignals(False)

    def onPump(self):
        try:
            idle = self.logic.pump()
        except Exception as error:
            self.timer.stop()
            self.ui.progressBar.setVisible(False)
            self.show_error(error)
            return
        if idle:
            self.timer.stop()
            self.ui.progressBar.setVisible(False)
            steps = len(self.logic.session.sequence.steps)
            self.ui.statusLabel.setText(f"{steps} step{'' if steps == 1 else 's'} recorded")

    def onExport(self):
        path = qt.QFileDialog.getSaveFileName(None, "Export prompts", "", "Prompts (*.prompts.json)")
        if path:
            self.call("export_prompts", path, start=False)

    def onImport(self):
        path = qt.QFileDialog.getOpenFileName(None, "Import prompts", "", "Prompts (*.prompts.json)")
        if path:
            self.call("import_prompts", path)

    def cleanup(self):
        self.armed.close()
        self.timer.stop()
        if self.logic is not None:
            self.logic.close()


class InteractiveVesselSegLogic(ScriptedLoadableModuleLogic):
    """Slicer's logic class: a thin façade, callable without the widget."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from InteractiveVesselSegLib.logic import VesselSegLogic
        self.impl = VesselSegLogic()

    def __getattr__(self, name):
        return getattr(self.__dict__["impl"], name)


class InteractiveVesselSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: traces a synthetic vessel from one click through the logic."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_trace_and_replay()

    def test_trace_and_replay(self):
        import numpy as np
        from PromptEngines.data.synthetic.cta import vessel_volume
        from PromptEngines.evaluation import metrics

        case = vessel_volume(1007, shape=(48, 72, 72))
        volume = slicer.util.addVolumeFromArray(case.volume.array)
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(case.volume.ijk_to_ras))
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segment = segmentation.GetSegmentation().AddEmptySegment("vessel")
        logic = InteractiveVesselSegLogic()
        engine = "tracer3d" if os.environ.get("IVSEG_TEST_ENGINE") != "regiongrow" and \
            logic.engine_name == "tracer3d" else "regiongrow"
        logic.set_engine(engine)
        logic.set_inputs(volume, segmentation, segment)
        logic.trace(case.seed_ras)
        logic.session.wait()
        mask = logic.session.engine.mask
        self.assertGreater(metrics.dice(mask, case.label), 0.8)
        self.assertEqual(logic.recorded().result_sha256, logic.session.sequence.result_sha256)
        self.assertEqual(metrics.components(mask), 1)
        self.assertLess(metrics.fraction_on(mask, case.distractor), 0.02)
        written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment, volume)
        self.assertTrue(np.array_equal(written > 0, mask > 0))
        logic.close()
