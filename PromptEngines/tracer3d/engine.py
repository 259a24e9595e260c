"""`tracer3d`: one click, the whole vessel tree, streamed slice by slice."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..backbones.checkpoint import file_sha256, load_strict, read_checkpoint, read_state_dict
from ..backbones.sam import is_sam_state_dict, load_sam
from ..backbones.scribbleprompt_unet import (is_scribbleprompt_unet_state_dict,
                                             load_scribbleprompt_unet)
from ..data import intensity
from ..engine import Engine, Update, register_engine
from ..errors import CheckpointError, EngineError, PromptError
from .model import build_tracer
from .tracking import SliceTracer, TraceOptions, slice_calls

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "tracer3d_tiny.pt"
NORMALISED_RANGE = (-3.0, 4.0)       # bounds calcium and bone after normalisation


def load_model(path: str | Path, device: str = "cpu", sam_image_size: int = 256):
    """Our checkpoint (tiny or a paper config), or an official state dict: SAM /
    ScribblePrompt-SAM ViT-b (the SAM paper configuration) or ScribblePrompt-UNet, with an
    untrained offset MLP (it starts at "no movement", so tracing falls back to
    confidence-guided refinement until trained)."""
    path = Path(path)
    try:
        checkpoint = read_checkpoint(path, "tracer3d")
    except CheckpointError as not_ours:
        if "not an InteractiveVesselSeg checkpoint" not in str(not_ours):
            raise
        model = _official_model(read_state_dict(path), path, sam_image_size)
        checkpoint = {"config": model.config, "trace_options": {},
                      "note": "official weights; offset MLP untrained"}
    else:
        model = build_tracer(checkpoint["config"])
        load_strict(model, checkpoint["model"], path.name)
    # Channels-last: the tiny decoder's small convolutions run about a fifth faster on CPU.
    model.eval().to(device, memory_format=torch.channels_last)
    return model, checkpoint


def _official_model(state: dict, path: Path, sam_image_size: int):
    if is_sam_state_dict(state):
        from .paper_model import SamTracer
        return SamTracer(sam_image_size, sam=load_sam(path, sam_image_size, state))
    if is_scribbleprompt_unet_state_dict(state):
        from .unet_model import UNetTracer
        return UNetTracer(unet=load_scribbleprompt_unet(path, state))
    raise CheckpointError(f"{path.name} is neither a tracer3d checkpoint nor a SAM ViT-b or "
                          "ScribblePrompt-UNet state dict (no image_encoder.* or downs.* keys)")


def normalised_volume(image, spacing_zyx, seed_voxel, smooth=None) -> np.ndarray:
    """Click-conditioned normalisation (structure -> 1, surroundings -> 0), clipped.
    `smooth`: the image's light smoothing, if already computed."""
    smooth = intensity.smoothed(image, spacing_zyx) if smooth is None else smooth
    levels = intensity.levels_at(image, smooth, seed_voxel, spacing_zyx)
    intensity.require_contrast(levels, "vessel")
    return np.clip(levels.normalise(image), *NORMALISED_RANGE)


@register_engine
class Tracer3DEngine(Engine):
    name = "tracer3d"
    capabilities = frozenset({"point"})
    needs_3d = True
    takes_weights = True

    def __init__(self, weights=None, device=None, options: TraceOptions | None = None):
        super().__init__(weights=weights, device=device)
        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if weights is None and not path.is_file():
            raise EngineError(f"tracer3d has no weights: {path} is missing; train them with "
                              "`ivseg train --engine tracer3d`")
        self.model, checkpoint = load_model(path, self.device)
        saved = checkpoint.get("trace_options", {})
        self.options = options or TraceOptions(**saved)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        # Kept for every trace of this engine: on a GPU their graphs are captured once, not
        # in each trace.
        self._calls = slice_calls(self.model, self.options, self.device)

    @classmethod
    def ready(cls) -> bool:
        return DEFAULT_WEIGHTS.is_file()

    @classmethod
    def training_task(cls, source, config, seed, batch_size, rank=0, world=1):
        from ..errors import IVSegError
        from .train import Tracer3DTask, TrainOptions

        try:
            options = TrainOptions(**config.get("train", {}))
            options.parts
        except (TypeError, KeyError) as error:
            raise IVSegError(f"bad tracer3d train options: {error}") from None
        return Tracer3DTask(source, options, config.get("model"), config.get("trace"), seed,
                            batch_size, rank=rank, world=world)

    @classmethod
    def benchmark(cls, weights, out, cases, with_speed=True, threads=2):
        from . import benchmark
        return benchmark.run(weights or DEFAULT_WEIGHTS, out, cases, with_speed, threads)

    @classmethod
    def benchmark_table(cls, results):
        from . import benchmark
        return benchmark.table(results)

    def _on_image(self) -> None:
        self._smooth = None              # computed on the first click, kept for the next

    def _interact(self, prompt):
        if prompt.label != 1:
            raise PromptError("tracer3d traces from positive clicks only; erase with undo or "
                              "another engine")
        z, y, x = (int(np.clip(round(c), 0, n - 1)) for c, n in zip(prompt.position, self.image.shape))
        if self._smooth is None:
            self._smooth = intensity.smoothed(self.image, self.spacing_zyx)
        volume = normalised_volume(self.image, self.spacing_zyx, (z, y, x), self._smooth)
        tracer = SliceTracer(self.model, volume, self.options, self.device, self._calls)
        depth = self.image.shape[0]
        empty = tuple(slice(0, 0) for _ in range(3))
        for result in tracer.trace((prompt.position[1], prompt.position[2]), z, heartbeat=True):
            if result.tentative:                       # progress only; a place to cancel
                yield Update(empty, np.zeros((0, 0, 0), np.uint8),
                             progress=min(tracer.slices_traced / depth, 1.0),
                             message=f"second look: trying slice {result.z}")
                continue
            region = (slice(result.z, result.z + 1), result.rows, result.cols)
            patch = self._mask[region] | result.mask[None].astype(np.uint8)
            stage = ("branch kept by the second look" if result.second_look
                     else f"{result.tracks} tracks waiting")
            yield Update(region, patch, progress=min(tracer.slices_traced / depth, 1.0),
                         message=f"slice {result.z}: {stage}")
        yield Update(empty, np.zeros((0, 0, 0), np.uint8), final=True, progress=1.0,
                     message=f"traced {tracer.slices_traced} slices")
