"""`tracer3d`: one click, the whole vessel tree, streamed slice by slice."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..backbones.checkpoint import file_sha256
from ..data.intensity import brightest_near
from ..engine import Engine, Update
from ..errors import PromptError
from ..prompts import Point
from .checkpoints import load_model
from .descriptor import TRACER3D
from .normalise import click_normalised
from .tracking import SliceTracer, TraceOptions, slice_calls

SNAP_MM = 2.0        # a click this close to a vessel (in its slice) is moved onto it


class Tracer3DEngine(Engine):
    descriptor = TRACER3D

    def __init__(self, weights=None, device=None, options: TraceOptions | None = None):
        super().__init__(weights=weights, device=device)
        path = self._weights_file(weights, "an official SAM / ScribblePrompt ViT-b or "
                                           "ScribblePrompt-UNet checkpoint")
        self.model, checkpoint = load_model(path, self.device)
        saved = checkpoint.get("trace_options", {})
        self.options = options or TraceOptions(**saved)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        # Kept for every trace of this engine: on a GPU their graphs are captured once, not
        # in each trace.
        self._calls = slice_calls(self.model, self.options, self.device)
        self._known: np.ndarray | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Encode a chunk of blank tiles and decode a point on one, with and without a
        previous slice, as the engine loads: the runtime's one-time work (kernel choices,
        working buffers; on a GPU the CUDA graphs' capture) is paid here, where the panel
        loads engines in the background, not by the first click or its memory."""
        size = self.model.crop
        tiles = torch.zeros(self.options.chunk, 1, size, size, device=self.device)
        point = torch.full((1, 2), size / 2, device=self.device)
        with torch.no_grad():
            crops = [level[:1] for level in self._calls.encode(tiles)]
            for previous in (None, torch.full((1, 1, size, size), -8.0, device=self.device)):
                bottleneck = self._calls.decode(crops, point, previous)[2]
            self.model.offset(bottleneck)

    def _interact(self, prompt):
        if prompt.label != 1:
            raise PromptError("tracer3d traces from positive clicks only; erase with undo or "
                              "another engine")
        click = tuple(int(np.clip(round(c), 0, n - 1))
                      for c, n in zip(prompt.position, self.image.shape))
        try:
            tracer, results = self._start(click, prompt.position[1:])
            moved = ""
        except PromptError as refused:
            # A click that misses a small vessel by a little: the vessel's middle nearby.
            nearby = brightest_near(self.image, click, self.spacing_zyx, SNAP_MM)
            if nearby == click:
                raise
            try:
                tracer, results = self._start(nearby, nearby[1:])
            except PromptError:
                raise refused from None
            distance = float(np.linalg.norm(np.subtract(nearby, click) * self.spacing_zyx))
            moved = f"click moved {distance:.1f} mm onto the nearest vessel; "
        depth = self.image.shape[0]
        empty = tuple(slice(0, 0) for _ in range(3))
        for result in results:
            if result.tentative:                       # progress only; a place to cancel
                yield Update(empty, np.zeros((0, 0, 0), np.uint8),
                             progress=min(tracer.slices_traced / depth, 1.0),
                             message=(f"second look: trying slice {result.z}"
                                      if result.second_look else
                                      f"{moved}slice {result.z}: telling touching vessels "
                                      "apart"))
                continue
            region = (slice(result.z, result.z + 1), result.rows, result.cols)
            patch = self._mask[region] | result.mask[None].astype(np.uint8)
            stage = ("branch kept by the second look" if result.second_look
                     else f"{result.tracks} tracks waiting")
            yield Update(region, patch, progress=min(tracer.slices_traced / depth, 1.0),
                         message=f"{moved}slice {result.z}: {stage}")
        yield Update(empty, np.zeros((0, 0, 0), np.uint8), final=True, progress=1.0,
                     message=f"{moved}traced {tracer.slices_traced} slices")

    def trace_beyond(self, position, known: np.ndarray):
        """A click's trace with `known` (a mask already made, the volume's shape) taken as
        traced: tracks stop where they reach it, so only what lies beyond it is traced
        (multimodal's "extend" continues a vessel this way, paying for the new part only).
        Yields the click's updates; the engine's mask holds the trace afterwards."""
        if np.shape(known) != self.image.shape:
            raise PromptError(f"the known mask's shape {np.shape(known)} is not the image's "
                              f"{self.image.shape}")
        self._known = np.asarray(known, bool)
        try:
            yield from self.interact(Point(tuple(position)))
        finally:
            self._known = None

    def _start(self, voxel, seed_yx):
        """Normalise where the tracker reads it (the click costs what the vessel costs) and
        trace from `voxel` up to its first slice, which raises if there is no vessel."""
        volume = click_normalised(self.image, self.spacing_zyx, voxel)
        tracer = SliceTracer(self.model, volume, self.options, self.device, self._calls,
                             known=self._known, spacing=self.spacing_zyx,
                             excluded=self._excluded)
        results = tracer.trace(seed_yx, voxel[0], heartbeat=True)
        first = next(results)
        return tracer, itertools.chain([first], results)
