"""The slice decoder replayed from a CUDA graph.

On a GPU the per-slice decode is bound by launching its kernels (a few hundred small ones for
SAM's two-way transformer, each a Python call), not by running them. During a trace its
shapes never change (one prompt on one tile), so each form of the call (with or without the
previous slice's logits) is captured once and then replayed: one launch per decode. A graph
is used only if its first replay matches the plain call (to rounding); anything else falls
back to plain calls, with a warning. A decode that waits for the host cannot be captured at all
(`host_waits` finds such ops on any device).
"""
from __future__ import annotations

import time
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
# Ops that on a GPU make the host wait for the device (a result's size or value decides what
# happens next) or copy Python data onto it. Each stalls the launch queue, and none may run
# while a CUDA graph is being captured.
_WAITING = {aten.lift_fresh: "a tensor made from Python data (copied to the device)",
            aten._local_scalar_dense: "a tensor's value read on the host (.item(), float())",
            aten.nonzero: "nonzero (output size depends on values)",
            aten.masked_select: "masked_select (output size depends on values)",
            aten._unique2: "unique", aten.unique_dim: "unique",
            aten.unique_consecutive: "unique_consecutive"}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class _HostWaits(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet in _WAITING:
            self.found.append(f"{func}: {_WAITING[packet]}")
        elif packet in _INDEXING and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                         for i in args[1]):
            self.found.append(f"{func}: indexing with a boolean mask (a nonzero)")
        return func(*args, **(kwargs or {}))


def host_waits(run) -> list[str]:
    """The ops of `run()` that would wait for the host on a GPU, each with why; none for a
    function that can be replayed from a CUDA graph. Works on any device (the ops are the
    same on the CPU), so a test needs no GPU."""
    with _HostWaits() as mode:
        run()
    return mode.found


def _inputs(crops, points, previous_logits) -> list[torch.Tensor]:
    return [*crops, points] + ([] if previous_logits is None else [previous_logits])


class CudaGraphReplay:
    """`run()` captured in a CUDA graph; `replay()` re-runs it into the same output buffers."""

    def __init__(self, run, device):
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):           # warm-up off the default stream, as
            for _ in range(3):                    # capture requires
                run()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        # Traces run on a worker thread: only its own calls must keep off capture-unsafe
        # CUDA APIs, not the panel's thread.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = run()

    def replay(self):
        self.graph.replay()


class GraphedDecode:
    """`model.decode` with the signature the tracker calls, replayed from captured graphs."""

    recorder = CudaGraphReplay

    def __init__(self, decode, device):
        self.decode, self.device = decode, device
        self.graphs: dict[tuple, tuple] = {}      # input shapes -> (replay, static inputs)
        self.failed: str | None = None
        self.difference = 0.0                     # largest |replay - plain call| seen
        self.capture_seconds = 0.0                # checks, warm-up, capture, first replay

    def __call__(self, crops, points, previous_logits=None):
        if self.failed is not None:
            return self.decode(crops, points, previous_logits)
        values = _inputs(crops, points, previous_logits)
        key = tuple(tuple(v.shape) for v in values)
        if key not in self.graphs:
            started = time.perf_counter()
            try:
                self.graphs[key] = self._capture(crops, points, previous_logits, values)
            except Exception as error:          # noqa: BLE001 (any failure: decode plainly)
                self.failed = f"{type(error).__name__}: {error}"
            self.capture_seconds += time.perf_counter() - started
            if self.failed is not None:
                warnings.warn(f"decoding without CUDA graphs ({self.failed})")
                return self.decode(crops, points, previous_logits)
        replay, static = self.graphs[key]
        for buffer, value in zip(static, values):
            buffer.copy_(value)
        replay.replay()
        return tuple(out.clone() for out in replay.outputs)

    def _capture(self, crops, points, previous_logits, values):
        """Record on zero-filled buffers, then check one replay on the real inputs against
        the plain call: a graph that ignored its inputs, or computes something else, fails.
        A decode that waits for the host is not tried (its capture would fail midway)."""
        waits = host_waits(lambda: self.decode(crops, points, previous_logits))
        if waits:
            raise RuntimeError(f"the decode waits for the host: {waits[0]}")
        static = [torch.zeros_like(v) for v in values]
        levels, with_logits = len(crops), previous_logits is not None

        def run():
            return self.decode(static[:levels], static[levels],
                               static[levels + 1] if with_logits else None)

        replay = self.recorder(run, self.device)
        for buffer, value in zip(static, values):
            buffer.copy_(value)
        replay.replay()
        expected = self.decode(crops, points, previous_logits)
        # Kernels may be chosen differently under capture: rounding apart is the same decode.
        difference = max(float((a - b).abs().max()) for a, b in zip(replay.outputs, expected))
        if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-4)
                   for a, b in zip(replay.outputs, expected)):
            raise RuntimeError(f"the captured decode differs from the plain one (by up to "
                               f"{difference:.3g})")
        self.difference = max(self.difference, difference)
        return replay, static
