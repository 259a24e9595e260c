"""Training batches drawn ahead by worker processes (`ivseg train --workers N`).

A task's batch depends on (step, rank, world) alone, so drawing it in a worker gives the same
batch as drawing it in the loop: training with workers is bit-identical to training without.
Workers are forked before the model moves to the GPU and never touch CUDA themselves.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from ..errors import IVSegError

_TASK = None            # the task a forked worker draws from (inherited, not pickled)


def _draw(step: int, rank: int, world: int) -> dict:
    torch.set_num_threads(1)
    return _TASK.batch(step, rank, world)


class Prefetcher:
    """`prefetcher(step)` is `task.batch(step, rank, world)`, drawn up to 2 × workers ahead.

    A process-pool executor, not `multiprocessing.Pool`: a worker killed mid-batch (the
    out-of-memory killer) breaks the executor, which says so at once, where Pool waits for
    the lost batch forever and then hangs in its own terminate."""

    def __init__(self, task, workers: int, rank: int, world: int, end: int):
        global _TASK
        _TASK = task
        self.rank, self.world, self.end, self.ahead = rank, world, end, 2 * workers
        before = set(multiprocessing.active_children())
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        self.pool.submit(int).result()      # fork the workers now, before CUDA starts
        self.workers = [p for p in multiprocessing.active_children() if p not in before]
        self.pending = {}

    def __call__(self, step: int) -> dict:
        try:
            for future in range(step, min(step + self.ahead, self.end)):
                if future not in self.pending:
                    self.pending[future] = self.pool.submit(_draw, future, self.rank,
                                                            self.world)
            return self.pending.pop(step).result()
        except BrokenProcessPool as broken:
            # (Once the pool has seen a worker die, submitting raises this too.)
            raise IVSegError(f"a batch worker died while drawing step {step}'s batch or one "
                             f"ahead of it (out of memory?): train with fewer --workers "
                             f"({broken})") from None

    def close(self) -> None:
        """Stop at once: batches drawn ahead are not needed any more."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for worker in self.workers:
            worker.kill()
            worker.join()
        self.pending.clear()


class InLoop:
    """`source(step)` is `task.batch(step, rank, world)`, drawn when asked."""

    def __init__(self, task, rank: int, world: int):
        self.task, self.rank, self.world = task, rank, world

    def __call__(self, step: int) -> dict:
        return self.task.batch(step, self.rank, self.world)

    def close(self) -> None:
        pass


def batch_source(task, workers: int, rank: int, world: int, end: int):
    """The step -> batch function the training loop calls (and closes), with or without
    workers."""
    if workers > 0:
        return Prefetcher(task, workers, rank, world, end)
    return InLoop(task, rank, world)
