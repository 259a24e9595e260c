"""One persistent inference thread (torch keeps its caches per thread).

The main thread submits a job (a generator of updates), then polls: `poll()` returns the
updates ready so far, never blocking for long. Cancel takes effect between two updates; what
was produced stays. An exception in the job comes back in the final JobDone, for the main
thread to raise. No MRML or Qt call is made from the worker."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterator

from PromptEngines.threads import run_into


@dataclass
class JobDone:
    cancelled: bool
    error: BaseException | None = None


class InferenceWorker:
    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name="InteractiveVesselSeg inference",
                                        daemon=True)
        self._thread.start()

    def require_idle(self) -> None:
        if self.busy:
            raise RuntimeError("the engine is still working; wait or cancel first")

    def submit(self, job: Callable[[], Iterator]) -> None:
        self.require_idle()
        self.busy = True
        self._cancel.clear()
        self._jobs.put(job)

    def call(self, function: Callable[[], object]) -> Future:
        """Run `function` on the worker before any job submitted after it, without making
        the worker busy: its result or exception is in the returned future (preparing an
        engine while the user has not clicked yet)."""
        future: Future = Future()
        self._jobs.put((future, function))
        return future

    def cancel(self) -> None:
        self._cancel.set()

    def poll(self, timeout: float = 0.0) -> list:
        """Items produced since the last poll: updates, and last a JobDone when the job
        ended (carrying its exception, if any, for the caller to raise after applying the
        updates that came before it)."""
        items = []
        try:
            items.append(self._results.get(timeout=timeout) if timeout else self._results.get_nowait())
            while True:
                items.append(self._results.get_nowait())
        except queue.Empty:
            pass
        if items and isinstance(items[-1], JobDone):
            self.busy = False
        return items

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, tuple):             # (future, function): a call, not a job
                run_into(*job)
                continue
            cancelled, error = False, None
            stream = None
            try:
                stream = job()
                for update in stream:
                    self._results.put(update)
                    if self._cancel.is_set():
                        cancelled = True
                        break
            except BaseException as failure:          # handed to the main thread
                error = failure
            finally:
                if stream is not None and hasattr(stream, "close"):
                    stream.close()
            self._results.put(JobDone(cancelled, error))

    def shutdown(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)
