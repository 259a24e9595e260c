"""Engines the panel tests drive: they join the registry as real engines do."""
import time

import numpy as np

from PromptEngines.engine import Engine, Update
from PromptEngines.prompts import TEXT_COMMANDS
from registered_engine import registered


@registered("all-tools", {"point", "box", "scribble", "lasso", "text", "auto", "mask"},
            text_commands=TEXT_COMMANDS, structures=("LV", "Myo", "RV"))
class AllToolsEngine(Engine):
    """Takes every tool and records it; a point marks its voxel, so effects are visible."""

    def _on_image(self):
        self.received = getattr(self, "received", [])

    def _interact(self, prompt):
        self.received.append(prompt)
        if prompt.kind in ("point", "text") and getattr(prompt, "position", None) is not None:
            z, y, x = (int(round(c)) for c in prompt.position)
            mask = self._mask.copy()
            mask[z, y, x] = 1
            yield self._final_update(mask)


@registered("slow-painter", {"point"})
class SlowPainter(Engine):
    """Paints one slice per update, slowly: something to cancel."""

    def _interact(self, prompt):
        z, y, x = (int(round(c)) for c in prompt.position)
        for k in range(self.image.shape[0]):
            time.sleep(0.05)
            yield Update((slice(k, k + 1), slice(y, y + 2), slice(x, x + 2)),
                         np.ones((1, 2, 2), np.uint8))


@registered("failing-painter", {"point"})
class FailingPainter(SlowPainter):
    """Paints two slices, then fails: a worker exception."""

    def _interact(self, prompt):
        for count, update in enumerate(super()._interact(prompt)):
            if count == 2:
                raise RuntimeError("model crashed on slice 2")
            yield update
