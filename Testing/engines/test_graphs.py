"""The decoder replayed from captured graphs: inputs go through static buffers, outputs come
back as copies, each call form is captured once, and a capture that fails or does not
reproduce the plain call is never used. CUDA itself is exercised by the GPU benchmark
(bench/tracer3d_paper_gpu.py); here a stand-in records the graph."""
import warnings

import pytest
import torch

from PromptEngines.tracer3d.graphs import GraphedDecode
from PromptEngines.tracer3d.model import build_tracer


class Recording:
    """Stands in for a CUDA graph: replay() re-runs into the captured output buffers."""
    captures = 0

    def __init__(self, run, device):
        Recording.captures += 1
        self.run = run
        self.outputs = run()

    def replay(self):
        for buffer, value in zip(self.outputs, self.run()):
            buffer.copy_(value)


@pytest.fixture
def graphed(monkeypatch):
    monkeypatch.setattr(GraphedDecode, "recorder", Recording)
    Recording.captures = 0
    torch.manual_seed(0)
    model = build_tracer().eval()
    return model, GraphedDecode(model.decode, "cpu")


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


def test_a_capture_that_fails_falls_back_to_plain_calls(graphed, monkeypatch):
    model, decode = graphed

    def broken(run, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(GraphedDecode, "recorder", staticmethod(broken))
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

    monkeypatch.setattr(GraphedDecode, "recorder", Stale)
    args = prompts(1, with_logits=True)
    with torch.no_grad(), pytest.warns(UserWarning, match="differs from the plain one"):
        out = decode(*args)
    assert all(torch.equal(a, b) for a, b in zip(out, model.decode(*args)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # warned once; plain calls from then on
        with torch.no_grad():
            decode(*prompts(2, with_logits=False))
