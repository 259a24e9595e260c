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

from ..backbones.graphs import GraphedCall
from ..data.regions import window
from ..data.synthetic.cta import vessel_volume
from .normalise import click_normalised
from .tracking import SliceCalls, SliceTracer, TraceOptions, slice_calls


class OracleTracer(SliceTracer):
    """The tracker with the model's work unchanged and the ground truth as its answer."""

    def __init__(self, model, volume, truth: np.ndarray, options=TraceOptions(), device="cpu",
                 calls=None):
        super().__init__(model, volume, options, device, calls)
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


def _timed_trace(model, volume, case, options, device, calls, oracle):
    """One trace from the case's click: (results, seconds, seconds encoding, tracer). On a
    GPU each encode is synchronised so its share is measured, not just queued."""
    tracer = (OracleTracer(model, volume, case.label, options, device, calls) if oracle
              else SliceTracer(model, volume, options, device, calls))
    synchronise = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    encode, encode_s = tracer.tiles.encode, [0.0]

    def counted(tiles):
        started = time.perf_counter()
        out = encode(tiles)
        synchronise()
        encode_s[0] += time.perf_counter() - started
        return out

    tracer.tiles.encode = counted
    started = time.perf_counter()
    results = list(tracer.trace(case.seed_index[1:], case.seed_index[0]))
    synchronise()
    return results, time.perf_counter() - started, encode_s[0], tracer


def _how_called(calls: SliceCalls) -> tuple[str, float]:
    """How the model was called, and the seconds spent capturing graphs."""
    graphed = [c for c in (calls.encode, calls.decode) if isinstance(c, GraphedCall)]
    if not graphed:
        return "plain calls", 0.0
    failed = [f"{c.what}: {c.failed}" for c in graphed if c.failed is not None]
    if failed:
        how = f"plain calls (graphs failed, {'; '.join(failed)})"
    else:
        how = "CUDA graphs (" + ", ".join(f"{c.what} up to {c.difference:.2g}"
                                          for c in graphed) + " from plain calls)"
    return how, sum(c.capture_seconds for c in graphed)


def speed(model, shape=(200, 256, 256), seed=1100, device: str = "cpu",
          oracle: bool = False, options: TraceOptions = TraceOptions()) -> dict:
    """Per-slice time of a trace from the volume's click, encoding included, as the engine
    traces: with CUDA graphs (on a GPU), its first trace captures them, once for the engine's
    life, and every later trace replays them. So then two traces run: the first is reported
    (`first_trace_ms_per_slice`, `graph_capture_s`), the second is `ms_per_slice`."""
    case = _volume(seed, tuple(shape))
    started = time.perf_counter()
    volume = click_normalised(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    normalise_s = time.perf_counter() - started
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    calls = slice_calls(model, options, device)
    graphed = isinstance(calls.decode, GraphedCall)
    first = _timed_trace(model, volume, case, options, device, calls, oracle) if graphed else None
    results, total, encode_s, tracer = _timed_trace(model, volume, case, options, device, calls,
                                                    oracle)
    where = (torch.cuda.get_device_name(device) if device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads")
    # Per slice window the model traced (held contacts are shown merged per slice when
    # judged, so the results are fewer than the windows).
    traced, spanned = tracer.slices_traced, len({r.z for r in results if r.mask.size})
    how, capture_s = _how_called(calls)
    report = {"shape": list(shape), "propagation": "ground truth (oracle)" if oracle else "model",
              "traced_slices": traced, "slices_spanned": spanned, "total_s": total,
              "normalise_s": normalise_s, "encode_s": encode_s,
              "tiles_encoded": tracer.tiles.encoded,
              "ms_per_slice": 1000 * total / max(traced, 1),
              "ms_per_slice_with_normalisation": 1000 * (total + normalise_s) / max(traced, 1),
              # A slice may be traced in several windows (in-plane runs, branches): per z too.
              "ms_per_z": 1000 * total / max(spanned, 1),
              "calls": how, "graph_capture_s": capture_s,
              "threads": torch.get_num_threads(), "device": device, "hardware": where}
    if first is not None:
        report["first_trace_ms_per_slice"] = 1000 * first[1] / max(first[3].slices_traced, 1)
    if cuda:       # what tracing needs on top of what was there (the weights, say)
        report["weights_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        report["peak_gpu_mb_while_tracing"] = (torch.cuda.max_memory_allocated(device)
                                               - before) / 2**20
    return report


def median_speed(repeats: int = 5, **kwargs) -> dict:
    """`speed(**kwargs)` run `repeats` times: the median run (by ms per slice), with every
    run's ms per slice (a shared machine's timings spread by a third)."""
    runs = sorted((speed(**kwargs) for _ in range(repeats)), key=lambda r: r["ms_per_slice"])
    return {**runs[len(runs) // 2], "repeats_ms_per_slice": [r["ms_per_slice"] for r in runs]}
