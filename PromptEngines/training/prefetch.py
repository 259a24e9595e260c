"""Training batches drawn ahead by worker processes (`ivseg train --workers N`).

A task's batch depends on (step, rank, world) alone, so drawing it in a worker gives the same
batch as drawing it in the loop: training with workers is bit-identical to training without.
Workers are forked before the model moves to the GPU and never touch CUDA themselves.
"""
from __future__ import annotations

import multiprocessing
import time

import torch

_TASK = None            # the task a forked worker draws from (inherited, not pickled)
CLOSE_WAIT_S = 15.0     # how long closing waits for batches in flight, all together


def _draw(step: int, rank: int, world: int) -> dict:
    torch.set_num_threads(1)
    return _TASK.batch(step, rank, world)


class Prefetcher:
    """`prefetcher(step)` is `task.batch(step, rank, world)`, drawn up to 2 × workers ahead."""

    def __init__(self, task, workers: int, rank: int, world: int, end: int):
        global _TASK
        _TASK = task
        self.rank, self.world, self.end, self.ahead = rank, world, end, 2 * workers
        before = set(multiprocessing.active_children())
        self.pool = multiprocessing.get_context("fork").Pool(workers)
        self.workers = [p for p in multiprocessing.active_children() if p not in before]
        self.pending = {}

    def __call__(self, step: int) -> dict:
        for future in range(step, min(step + self.ahead, self.end)):
            if future not in self.pending:
                self.pending[future] = self.pool.apply_async(_draw, (future, self.rank, self.world))
        return self.pending.pop(step).get()

    def close(self) -> None:
        # Stopping a pool with batches in flight can trip CPython's "Cannot have cache with
        # result_handler not alive" assertion before it stops the workers: let the batches
        # land first (for a few seconds in all: a dead worker's never does), and stop the
        # workers ourselves if the pool still trips.
        deadline = time.monotonic() + CLOSE_WAIT_S
        for result in self.pending.values():
            result.wait(timeout=max(0.0, deadline - time.monotonic()))
        self.pending.clear()
        try:
            self.pool.terminate()
            self.pool.join()
        except AssertionError:
            for worker in self.workers:
                worker.terminate()
                worker.join()


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
