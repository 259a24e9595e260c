"""Drags in the slice views, as RAS polylines: how the box, scribble and lasso tools are drawn.

While a drag tool is armed, an event filter on every slice view takes the left button's
press, moves and release (Slicer's own window/level drag does not see them) and turns the
mouse positions into RAS millimetres through the view's slice node (its XY-to-RAS matrix:
any orientation, oblique reformats included). On release the whole stroke goes to the armed
tool at once: the engine starts then, with no other button. Esc or a right click drops a
stroke being drawn.
"""
from __future__ import annotations

import qt
import slicer

MIN_STEP_PX = 3.0          # a stroke keeps a point when the mouse has moved this far


def view_xy_to_ras(slice_node, view, x: float, y: float) -> list[float]:
    """A Qt mouse position in a slice view (logical pixels, origin top left) in RAS: the
    slice node's XY frame is the view's device pixels with the origin bottom left."""
    ratio = view.devicePixelRatioF() if hasattr(view, "devicePixelRatioF") else 1.0
    height = view.height() if callable(view.height) else view.height
    xy = [x * ratio, (height - y) * ratio, 0.0, 1.0]
    return list(slice_node.GetXYToRAS().MultiplyPoint(xy)[:3])


class _ViewFilter(qt.QObject):
    def __init__(self, drags, view, slice_node):
        qt.QObject.__init__(self)
        self.drags, self.view, self.slice_node = drags, view, slice_node

    def eventFilter(self, _watched, event):
        return self.drags.on_event(self, event)


class SliceDrags:
    def __init__(self, on_stroke, on_move=None):
        """`on_stroke(points)`: a finished stroke (RAS points); `on_move(points)`: the stroke
        so far, while drawing (for a preview)."""
        self.on_stroke, self.on_move = on_stroke, on_move
        self._filters: list[_ViewFilter] = []
        self._stroke: list[list[float]] | None = None
        self._last_xy = None

    @staticmethod
    def slice_views():
        """(view widget, slice node) of each slice view of Slicer's layout."""
        layout = slicer.app.layoutManager() if hasattr(slicer.app, "layoutManager") else None
        if layout is None:
            return []
        views = []
        for name in layout.sliceViewNames():
            widget = layout.sliceWidget(name)
            views.append((widget.sliceView(), widget.mrmlSliceNode()))
        return views

    @property
    def active(self) -> bool:
        return bool(self._filters)

    def start(self) -> None:
        """Take the left-button drags of every slice view (the views there now)."""
        if self._filters:
            return
        for view, slice_node in self.slice_views():
            event_filter = _ViewFilter(self, view, slice_node)
            view.installEventFilter(event_filter)
            self._filters.append(event_filter)

    def stop(self) -> None:
        for event_filter in self._filters:
            event_filter.view.removeEventFilter(event_filter)
        self._filters = []
        self.cancel()

    def cancel(self) -> None:
        """Drop a stroke being drawn."""
        self._stroke, self._last_xy = None, None

    def on_event(self, source: _ViewFilter, event) -> bool:
        """True when the event was a drag tool's (Slicer's view does not get it)."""
        kind = event.type()
        left = qt.Qt.LeftButton
        if kind == qt.QEvent.MouseButtonPress and event.button() == qt.Qt.RightButton:
            drawing = self._stroke is not None
            self.cancel()
            return drawing
        if kind == qt.QEvent.MouseButtonPress and event.button() == left:
            self._stroke, self._last_xy = [], None
            self._add(source, event)
            return True
        if self._stroke is None:
            return False
        if kind == qt.QEvent.MouseMove and event.buttons() & left:
            self._add(source, event)
            return True
        if kind == qt.QEvent.MouseButtonRelease and event.button() == left:
            self._add(source, event)
            stroke, self._stroke, self._last_xy = self._stroke, None, None
            self.on_stroke(stroke)
            return True
        return False

    def _add(self, source: _ViewFilter, event) -> None:
        position = event.position() if hasattr(event, "position") else event.pos()
        x, y = float(position.x()), float(position.y())
        if self._last_xy is not None:
            step = ((x - self._last_xy[0]) ** 2 + (y - self._last_xy[1]) ** 2) ** 0.5
            if step < MIN_STEP_PX:
                return
        self._last_xy = (x, y)
        self._stroke.append(view_xy_to_ras(source.slice_node, source.view, x, y))
        if self.on_move is not None:
            self.on_move(self._stroke)
