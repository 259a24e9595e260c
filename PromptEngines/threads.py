"""Work beside the main flow, its result asked for later through a `Future`: a function run
on a thread of its own (work that releases the GIL, such as hashing a volume's voxels), or
on a thread that already exists (the Slicer module's inference worker)."""
from __future__ import annotations

import threading
from concurrent.futures import Future


def run_into(future: Future, function) -> None:
    """Call `function` and put its result, or what it raised, in `future` (for whoever asks
    `future.result()`)."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(function())
    except BaseException as error:          # re-raised where the result is asked for
        future.set_exception(error)


def in_background(function) -> Future:
    future: Future = Future()
    threading.Thread(target=run_into, args=(future, function), daemon=True,
                     name="InteractiveVesselSeg background").start()
    return future
