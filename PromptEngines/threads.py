"""Work beside the main flow: a function run on its own thread, its result asked for later
(for work that releases the GIL, such as hashing a volume's voxels)."""
from __future__ import annotations

import threading


class InBackground:
    def __init__(self, function):
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True,
                                        name="InteractiveVesselSeg background")
        self._thread.start()

    def _run(self, function) -> None:
        try:
            self._result = function()
        except BaseException as error:          # re-raised where the result is asked for
            self._error = error

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result
