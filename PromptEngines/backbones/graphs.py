"""A model's calls replayed from CUDA graphs (tracer3d's slice model first; any SAM-based engine).

On a GPU the per-slice decode is bound by launching its kernels (a few hundred small ones for
SAM's two-way transformer, each a Python call), not by running them; the encoder of a chunk of
tiles (12 ViT blocks) nearly so. During a trace their shapes hardly change (one prompt on one
tile; a chunk of tiles), so each form of a call (with or without the previous slice's logits;
a shorter last chunk) is captured once and then replayed: one launch per call. A graph is
used only if its first replay matches the plain call (to rounding); anything else falls back
to plain calls, with a warning. A call that waits for the host cannot be captured at all
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
        elif packet in _INDEXING:
            indices = [i for i in args[1] if isinstance(i, torch.Tensor)]
            if any(i.dtype == torch.bool for i in indices):
                self.found.append(f"{func}: indexing with a boolean mask (a nonzero)")
            elif any(i.device != args[0].device for i in indices):
                self.found.append(f"{func}: an index made on another device (copied to the "
                                  f"indexed one)")
        return func(*args, **(kwargs or {}))


def host_waits(run) -> list[str]:
    """The ops of `run()` that would wait for the host on a GPU, each with why; none for a
    function that can be replayed from a CUDA graph. Works on any device (the ops are the
    same on the CPU), so a test needs no GPU; an index made on the CPU for a GPU tensor shows
    only off the CPU (on the "meta" device, say)."""
    with _HostWaits() as mode:
        run()
    return mode.found


def _flatten(args) -> tuple[list[torch.Tensor], tuple]:
    """A call's tensors (arguments are tensors, lists of tensors or None) and its form: what
    each argument is, with the shapes and types of its tensors."""
    tensors, form = [], []
    for arg in args:
        if arg is None:
            form.append(None)
        elif isinstance(arg, torch.Tensor):
            tensors.append(arg)
            form.append(("tensor", tuple(arg.shape), arg.dtype))
        else:
            tensors.extend(arg)
            form.append(("list", tuple((tuple(t.shape), t.dtype) for t in arg)))
    return tensors, tuple(form)


def _rebuild(form, tensors) -> list:
    """The arguments of a call of `form` from its tensors (`_flatten`'s inverse)."""
    args, position = [], 0
    for entry in form:
        if entry is None:
            args.append(None)
        elif entry[0] == "tensor":
            args.append(tensors[position])
            position += 1
        else:
            args.append(list(tensors[position:position + len(entry[1])]))
            position += len(entry[1])
    return args


class CudaGraphReplay:
    """`run()` captured in a CUDA graph; `replay()` re-runs it into the same output buffers.
    `pool`: the memory pool of an earlier capture to share (`self.pool`: this one's)."""

    def __init__(self, run, device, pool=None):
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):           # warm-up off the default stream, as
            for _ in range(3):                    # capture requires
                run()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        # Traces run on a worker thread: only its own calls must keep off capture-unsafe
        # CUDA APIs, not the panel's thread.
        with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
            self.outputs = run()
        self.pool = self.graph.pool()

    def replay(self):
        self.graph.replay()


class GraphedCall:
    """`function(*args)` (returning a tuple or list of tensors) replayed from captured
    graphs, one per form of its arguments; `what` names it in warnings ("decoding")."""

    recorder = CudaGraphReplay

    def __init__(self, function, device, what: str):
        self.function, self.device, self.what = function, device, what
        self.graphs: dict[tuple, tuple] = {}      # form -> (replay, static inputs)
        self.failed: str | None = None
        self.difference = 0.0                     # largest |replay - plain call| seen
        self.capture_seconds = 0.0                # checks, warm-up, capture, first replay
        # One memory pool for all of this call's graphs (a shorter last chunk of tiles; a
        # decode with and without logits): they never run at once, and each replay's outputs
        # are copied out before the next replay, so one may reuse what another left.
        self.pool = None

    def __call__(self, *args):
        if self.failed is not None:
            return self.function(*args)
        values, form = _flatten(args)
        if form not in self.graphs:
            started = time.perf_counter()
            try:
                self.graphs[form] = self._capture(args, values, form)
            except Exception as error:          # noqa: BLE001 (any failure: call plainly)
                self.failed = f"{type(error).__name__}: {error}"
            self.capture_seconds += time.perf_counter() - started
            if self.failed is not None:
                warnings.warn(f"{self.what} without CUDA graphs ({self.failed})")
                return self.function(*args)
        replay, static = self.graphs[form]
        for buffer, value in zip(static, values):
            buffer.copy_(value)
        replay.replay()
        return type(replay.outputs)(out.clone() for out in replay.outputs)

    def _capture(self, args, values, form):
        """Record on zero-filled buffers, then check one replay on the real inputs against
        the plain call: a graph that ignored its inputs, or computes something else, fails.
        A call that waits for the host is not tried (its capture would fail midway)."""
        waits = host_waits(lambda: self.function(*args))
        if waits:
            raise RuntimeError(f"the call waits for the host: {waits[0]}")
        static = [torch.zeros_like(v) for v in values]
        replay = self.recorder(lambda: self.function(*_rebuild(form, static)), self.device,
                               pool=self.pool)
        self.pool = getattr(replay, "pool", None)
        for buffer, value in zip(static, values):
            buffer.copy_(value)
        replay.replay()
        expected = self.function(*args)
        # Kernels may be chosen differently under capture: rounding apart is the same call.
        difference = max(float((a - b).abs().max()) for a, b in zip(replay.outputs, expected))
        if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-4)
                   for a, b in zip(replay.outputs, expected)):
            raise RuntimeError(f"the captured call differs from the plain one (by up to "
                               f"{difference:.3g})")
        self.difference = max(self.difference, difference)
        return replay, static
