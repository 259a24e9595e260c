"""The model's calls replayed from captured graphs: inputs go through static buffers, outputs come
back as copies, each call form is captured once, and a capture that fails or does not
reproduce the plain call is never used. CUDA itself is exercised by the GPU benchmark
(bench/tracer3d_paper_gpu.py); here a stand-in records the graph."""
import warnings

import numpy as np
import pytest
import torch

from PromptEngines.backbones.graphs import GraphedCall, host_waits
from PromptEngines.tracer3d.build import build_tracer


class Recording:
    """Stands in for a CUDA graph: replay() re-runs into the captured output buffers."""
    captures = 0
    pools: list = []

    def __init__(self, run, device, pool=None):
        Recording.captures += 1
        Recording.pools.append(pool)
        self.pool = ("pool", Recording.captures)
        self.run = run
        self.outputs = run()

    def replay(self):
        for buffer, value in zip(self.outputs, self.run()):
            buffer.copy_(value)


@pytest.fixture
def graphed(monkeypatch):
    monkeypatch.setattr(GraphedCall, "recorder", Recording)
    Recording.captures, Recording.pools = 0, []
    torch.manual_seed(0)
    model = build_tracer().eval()
    return model, GraphedCall(model.decode, "cpu", "decoding")


def prompts(seed, with_logits):
    g = torch.Generator().manual_seed(seed)
    crops = [torch.randn(1, c, s, s, generator=g) for c, s in ((8, 64), (24, 32), (48, 16))]
    points = torch.rand(1, 2, generator=g) * 64
    logits = torch.randn(1, 1, 64, 64, generator=g) if with_logits else None
    return crops, points, logits


def test_replays_equal_plain_calls_and_outputs_are_copies(graphed):
    model, decode = graphed
    earlier = []
    with torch.no_grad():
        for seed in range(6):
            args = prompts(seed, with_logits=seed % 2 == 1)
            out = decode(*args)
            for mine, plain in zip(out, model.decode(*args)):
                assert torch.equal(mine, plain)
            earlier.append((args, [t.clone() for t in out], out))
        # A later call leaves earlier results as they were (no shared buffers).
        for args, copy, out in earlier:
            assert all(torch.equal(a, b) for a, b in zip(copy, out))
    assert Recording.captures == 2 and len(decode.graphs) == 2     # with and without logits
    assert Recording.pools == [None, ("pool", 1)]          # the second shares the first's pool
    assert decode.capture_seconds > 0 and decode.failed is None


def test_a_capture_that_fails_falls_back_to_plain_calls(graphed, monkeypatch):
    model, decode = graphed

    def broken(run, device, pool=None):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(GraphedCall, "recorder", staticmethod(broken))
    args = prompts(0, with_logits=True)
    with torch.no_grad(), pytest.warns(UserWarning, match="decoding without CUDA graphs"):
        out = decode(*args)
    assert all(torch.equal(a, b) for a, b in zip(out, model.decode(*args)))
    assert "not permitted" in decode.failed and not decode.graphs


def test_a_capture_that_differs_from_the_plain_call_is_not_used(graphed, monkeypatch):
    model, decode = graphed

    class Stale(Recording):                       # replays without reading the inputs
        def replay(self):
            pass

    monkeypatch.setattr(GraphedCall, "recorder", Stale)
    args = prompts(1, with_logits=True)
    with torch.no_grad(), pytest.warns(UserWarning, match="differs from the plain one"):
        out = decode(*args)
    assert all(torch.equal(a, b) for a, b in zip(out, model.decode(*args)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # warned once; plain calls from then on
        with torch.no_grad():
            decode(*prompts(2, with_logits=False))


def test_host_waits_names_what_would_stall_a_gpu():
    x = torch.arange(6.0)
    assert host_waits(lambda: x + 1) == []
    found = host_waits(lambda: (x[x > 2], x.sum().item(), x[[1, 0]], torch.nonzero(x)))
    assert [f.split(":")[0] for f in found] == [
        "aten.index.Tensor", "aten._local_scalar_dense.default", "aten.lift_fresh.default",
        "aten.nonzero.default"]
    assert "boolean mask" in found[0] and "Python data" in found[2]


@pytest.mark.parametrize("kind", ["tiny", "paper", "scribbleprompt_unet"])
def test_decoders_never_wait_for_the_host(kind):
    """What the tracker replays from a CUDA graph on a GPU: the decode, with and without the
    previous slice's logits (SAM's own prompt encoder waits four times; a list index
    copied Python data to the device before every decode)."""
    torch.manual_seed(0)
    model = build_tracer({"kind": kind}).eval()
    size = model.crop
    with torch.no_grad():
        crops = model.encode(torch.randn(1, 1, size, size))
        points = torch.tensor([[size / 2 - 3.0, size / 2 + 5.0]])
        for logits in (None, torch.randn(1, 1, size, size)):
            assert host_waits(lambda: model.decode(crops, points, logits)) == []
        bottleneck = model.decode(crops, points)[2]
        assert host_waits(lambda: model.offset(bottleneck)) == []


def test_a_decode_that_waits_for_the_host_is_never_captured(graphed, monkeypatch):
    model, _ = graphed

    def decode(crops, points, previous_logits=None):
        logits, confidence, bottleneck = model.decode(crops, points, previous_logits)
        return logits * float(confidence[0]), confidence, bottleneck     # a read on the host

    Recording.captures = 0
    waiting = GraphedCall(decode, "cpu", "decoding")
    args = prompts(3, with_logits=False)
    with torch.no_grad():
        with pytest.warns(UserWarning, match="waits for the host: aten._local"):
            out = waiting(*args)
        assert Recording.captures == 0 and torch.equal(out[0], decode(*args)[0])


def test_a_replay_that_rounds_apart_from_the_plain_call_is_kept_and_reported(graphed,
                                                                             monkeypatch):
    model, decode = graphed

    class Rounding(Recording):                    # other kernels: last-bit differences
        def replay(self):
            super().replay()
            self.outputs[0].mul_(1 + 1e-6)

    monkeypatch.setattr(GraphedCall, "recorder", Rounding)
    args = prompts(4, with_logits=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode(*args)
    assert decode.failed is None and len(decode.graphs) == 1
    assert 0 < decode.difference < 1e-4
    assert torch.allclose(out[0], model.decode(*args)[0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["tiny", "paper", "scribbleprompt_unet"])
def test_encoders_never_wait_for_the_host(kind):
    """The tile encoder is replayed from CUDA graphs too. On the meta device an index made
    on the CPU (SAM's own attention makes one per block) shows as a copy."""
    model = build_tracer({"kind": kind}).eval().to("meta")
    tiles = torch.empty(8, 1, model.crop, model.crop, device="meta")
    with torch.no_grad():
        assert host_waits(lambda: model.encode(tiles)) == []


def test_a_trace_with_graphed_calls_equals_one_with_plain_calls(monkeypatch, vessel_case):
    """Encoder and decoder through GraphedCall (the stand-in recorder): the same mask, bit
    for bit; a graph per form: one chunk size here, the decode with and without logits."""
    monkeypatch.setattr(GraphedCall, "recorder", Recording)
    from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS, load_model
    from PromptEngines.tracer3d.normalise import normalised_volume
    from PromptEngines.tracer3d.tracking import SliceCalls, SliceTracer

    model = load_model(DEFAULT_WEIGHTS, "cpu")[0]
    case = vessel_case
    volume = normalised_volume(case.volume.array, case.volume.spacing_zyx, case.seed_index)
    graphed = SliceCalls(GraphedCall(model.encode, "cpu", "encoding"),
                         GraphedCall(model.decode, "cpu", "decoding"))
    masks = []
    for calls in (None, graphed):
        tracer = SliceTracer(model, volume, calls=calls)
        with torch.no_grad():
            list(tracer.trace(case.seed_index[1:], case.seed_index[0]))
        masks.append(tracer.traced)
    assert masks[1].sum() > 500 and np.array_equal(masks[0], masks[1])
    assert len(graphed.decode.graphs) == 2 and len(graphed.encode.graphs) >= 1
    assert graphed.encode.failed is None and graphed.decode.failed is None
