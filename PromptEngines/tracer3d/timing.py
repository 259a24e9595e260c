"""Time per traced slice, encoding included: the benchmark's speed figure.

`speed` traces a volume from its click. With `oracle=True` the tracker does all of its
per-slice model work as usual (tile encoding, offset MLP, decoding, refinement decoding) but
keeps the ground truth's mask in place of the model's, so a model that cannot trace yet (the
paper configuration from random weights, when no official checkpoint is at hand) follows the
whole tree and its time per slice can be measured: weights change the values computed, not
the work done for them.
"""
from __future__ import annotations

import functools
import platform
import time

import numpy as np
import torch

from ..data.regions import window
from ..data.synthetic import vessel_volume
from .engine import normalised_volume
from .graphs import GraphedDecode
from .tracking import SliceTracer, TraceOptions


class OracleTracer(SliceTracer):
    """The tracker with the model's work unchanged and the ground truth as its answer."""

    def __init__(self, model, volume, truth: np.ndarray, options=TraceOptions(), device="cpu"):
        super().__init__(model, volume, options, device)
        self.truth = truth.astype(np.float32)

    def _segment(self, z, point, previous_logits_fn, bottleneck, moved_from=None):
        _, origin, logits, features = super()._segment(z, point, previous_logits_fn, bottleneck,
                                                       moved_from)
        # The crop's "probability": the truth in the crop's window (padded slice pixels).
        truth = window(self.truth[z], (origin[0] - self.pad, origin[1] - self.pad), self.size)
        return truth, origin, logits, features


@functools.lru_cache(maxsize=2)
def _volume(seed: int, shape: tuple):
    """A benchmark times the same volume many ways, and generating it takes longer than
    tracing it: generated once, read-only since every timing shares it."""
    case = vessel_volume(seed, shape=shape)
    case.volume.array.setflags(write=False)
    case.label.setflags(write=False)
    return case


def speed(model, shape=(200, 256, 256), seed=1100, device: str = "cpu",
          oracle: bool = False, options: TraceOptions = TraceOptions()) -> dict:
    """Per-slice time of one trace from the volume's click, encoding included. On a GPU,
    every encode is synchronised so its share is measured, not just queued."""
    case = _volume(seed, tuple(shape))
    started = time.perf_counter()
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    normalise_s = time.perf_counter() - started
    tracer = (OracleTracer(model, volume, case.label, options, device) if oracle
              else SliceTracer(model, volume, options, device))
    synchronise = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    encode = [0.0]
    original = model.encode

    def counted(tiles):
        t = time.perf_counter()
        out = original(tiles)
        synchronise()
        encode[0] += time.perf_counter() - t
        return out

    model.encode = counted
    started = time.perf_counter()
    try:
        results = list(tracer.trace(case.seed_index[1:], case.seed_index[0]))
        synchronise()
    finally:
        del model.encode
    total = time.perf_counter() - started
    where = (torch.cuda.get_device_name(device) if device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads")
    traced, spanned = len(results), len({r.z for r in results})
    decode, capture_s = "plain calls", 0.0
    if isinstance(tracer.decode, GraphedDecode):
        failed, capture_s = tracer.decode.failed, tracer.decode.capture_seconds
        decode = (f"CUDA graphs (up to {tracer.decode.difference:.2g} from plain calls)"
                  if failed is None else f"plain calls (graphs failed: {failed})")
    return {"shape": list(shape), "propagation": "ground truth (oracle)" if oracle else "model",
            "traced_slices": traced, "slices_spanned": spanned, "total_s": total,
            "normalise_s": normalise_s, "encode_s": encode[0], "tiles_encoded": tracer.tiles.encoded,
            "ms_per_slice": 1000 * total / max(traced, 1),
            "ms_per_slice_with_normalisation": 1000 * (total + normalise_s) / max(traced, 1),
            # A slice may be traced in several windows (in-plane runs, branches): per z too.
            "ms_per_z": 1000 * total / max(spanned, 1),
            # Capturing the graphs (once per engine, so once per trace here) is in total_s.
            "decode": decode, "graph_capture_s": capture_s,
            "threads": torch.get_num_threads(), "device": device,
            "hardware": where}
