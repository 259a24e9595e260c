"""VerSe's weights files: our checkpoints (the tiny config, written by `ivseg train`) or an
official one (bangwayne/Verse's `medsam_model_epoch_74.pth`: a training dict whose `model`
holds the state dict of the DistributedDataParallel wrapper, so every key starts with
`module.`; a bare state dict, prefixed or not, is taken too).

An official file is loaded strictly with two named exceptions:
- modules the reference builds but never runs (UTNet's decoder half, the fourth downsampling,
  spare projections, an unused point encoder and heads) are set aside by name;
- the click encoders, which the reference draws at random on every call and so never saves,
  start from a fixed seed (one draw of what the official model was trained with) and are
  recorded as such."""
from __future__ import annotations

from pathlib import Path

import torch

from ..backbones.checkpoint import (is_checkpoint, load_strict, our_model,
                                    read_weights_file, state_dict_of)
from ..errors import CheckpointError
from .clicks import SemanticClickEncoder, SparseClickEncoder
from .config import PAPER, VerseConfig
from .model import Verse, build_model

ENGINE = "verse"
UNUSED_PREFIXES = (
    "backbone.up1.", "backbone.up2.", "backbone.up3.", "backbone.up4.", "backbone.down4.",
    "backbone.outc.",
    "sem_seg_head.pixel_decoder.input_proj.3.", "sem_seg_head.pixel_decoder.input_proj.4.",
    "sem_seg_head.pixel_decoder.input_proj.5.",
    "sem_seg_head.pixel_decoder.mask_downsamplelayer.down4.",
    "sem_seg_head.predictor.decoder_norm.", "sem_seg_head.predictor.mask_embed.",
    "sem_seg_head.predictor.aggregate_class_layer.", "sem_seg_head.predictor.point_encoder.",
)
CLICK_ENCODER_PREFIXES = ("sem_seg_head.predictor.sparse_clicks.",
                          "sem_seg_head.predictor.semantic_clicks.")
CLICK_ENCODER_SEED = 0


def official_state(state: dict) -> tuple[dict, int]:
    """The keys of an official state dict that the model runs, and how many were set aside
    as modules the reference never runs."""
    if not any(key.startswith("sem_seg_head.predictor.") for key in state):
        raise CheckpointError("not a VerSe state dict: no sem_seg_head.predictor.* keys")
    used = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    return used, len(state) - len(used)


def load_official(model: Verse, state: dict, source: str) -> int:
    """Strict load of an official state dict (see the module's text); the click encoders
    from CLICK_ENCODER_SEED. Returns the number of unused entries set aside."""
    used, unused = official_state(state)
    stray = sorted(k for k in used if k.startswith(CLICK_ENCODER_PREFIXES))
    if stray:
        raise CheckpointError(f"{source} holds click-encoder keys ({stray[0]}, ...): it is "
                              "one of our checkpoints without its record, not an official one")
    load_strict(model, {**used, **fresh_click_encoders(model.config)}, source)
    return unused


def fresh_click_encoders(config: VerseConfig) -> dict:
    """The click encoders' entries as a model built from CLICK_ENCODER_SEED has them (the
    global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLICK_ENCODER_SEED)
        sparse = SparseClickEncoder(config.hidden_dim, config.image_size)
        semantic = SemanticClickEncoder(config.hidden_dim, config.click_mlp_hidden,
                                        config.scales)
    sparse_prefix, semantic_prefix = CLICK_ENCODER_PREFIXES
    return {**{sparse_prefix + k: v for k, v in sparse.state_dict().items()},
            **{semantic_prefix + k: v for k, v in semantic.state_dict().items()}}


def load_verse(path: str | Path, device: str = "cpu") -> tuple[Verse, dict]:
    """The model (eval mode, on `device`) and its checkpoint record."""
    path = Path(path)
    loaded = read_weights_file(path)
    if is_checkpoint(loaded):
        model, checkpoint = our_model(loaded, path.name, ENGINE,
                                      lambda config: build_model(VerseConfig.from_json(config)))
    else:
        state = state_dict_of(loaded, path.name)
        model = Verse(PAPER)
        try:
            unused = load_official(model, state, path.name)
        except CheckpointError as error:
            raise CheckpointError(f"{path.name} is neither a verse checkpoint nor an official "
                                  f"VerSe one ({error})") from None
        checkpoint = {"config": PAPER.to_json(),
                      "note": f"official VerSe weights ({unused} entries of modules the "
                              "reference never runs set aside; click encoders from seed "
                              f"{CLICK_ENCODER_SEED}, as the release has none)"}
    return model.eval().to(device), checkpoint
