"""The slice decoder replayed from a CUDA graph.

On a GPU the per-slice decode is bound by launching its kernels (a few hundred small ones for
SAM's two-way transformer, each a Python call), not by running them. During a trace its
shapes never change (one prompt on one tile), so each form of the call (with or without the
previous slice's logits) is captured once and then replayed: one launch per decode. A graph
is used only if its first replay equals the plain call; anything else falls back to plain
calls, with a warning.
"""
from __future__ import annotations

import warnings

import torch


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
        with torch.cuda.graph(self.graph):
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

    def __call__(self, crops, points, previous_logits=None):
        if self.failed is not None:
            return self.decode(crops, points, previous_logits)
        values = _inputs(crops, points, previous_logits)
        key = tuple(tuple(v.shape) for v in values)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(crops, points, previous_logits, values)
            except Exception as error:          # noqa: BLE001 (any failure: decode plainly)
                self.failed = f"{type(error).__name__}: {error}"
                warnings.warn(f"decoding without CUDA graphs ({self.failed})")
                return self.decode(crops, points, previous_logits)
        replay, static = self.graphs[key]
        for buffer, value in zip(static, values):
            buffer.copy_(value)
        replay.replay()
        return tuple(out.clone() for out in replay.outputs)

    def _capture(self, crops, points, previous_logits, values):
        """Record on zero-filled buffers, then check one replay on the real inputs against
        the plain call: a graph that ignored its inputs, or computes something else, fails."""
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
        if not all(torch.equal(a, b) for a, b in zip(replay.outputs, expected)):
            raise RuntimeError("the captured decode differs from the plain one")
        return replay, static
