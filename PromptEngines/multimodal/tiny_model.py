"""multimodal's tiny configuration: the method's structure at a size we train on a CPU.

The same pipeline as the paper's (paper_model.py): image encoder -> prompt encoder (each
step's point, the current mask) -> text tokens (command embedding + the Linear to the prompt
width) -> Prompt Sequence Module -> HQ mask decoder (+ the Text Prompt Predictor's CLS head).
Both configurations offer the same calls, so engine, trainer and benchmark treat them alike:

    encode(images (B,1,S,S)) -> features
    decode(features, points (B,K,2) yx crop px, labels (B,K), commands (B,K) (-1: none),
           mask_logits (B,1,S,S) | None) -> logits (B,1,S,S), iou (B,)
    predict_command(features, points (B,1,2), mask_logits) -> (B, 5) command logits

A step with text encodes its point as SAM's positive point: the text says what to do there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..prompts import TEXT_COMMANDS
from .psm import DEFAULT_PSM, PromptSequenceModule
from .text import BagOfTokens, text_tokens
from .tiny_parts import HQMaskDecoder, ImageEncoder, PromptEncoder


@dataclass(frozen=True)
class TinyConfig:
    crop: int = 256                      # the square crop a step works on (the paper's)
    widths: tuple = (16, 32, 48, 64)     # 1/2, 1/4, 1/8 resolution; 1/16: the prompt width
                                         # (at token_stride 16)
    heads: int = 4
    depth: int = 2                       # two-way transformer layers
    text_width: int = 64                 # the text tower's output (CLIP's is 512)
    token_stride: int = 16               # crop pixels per image token: the paper's SAM sees
                                         # the 256 crop at 1024, 4 crop pixels a token
    psm: str = DEFAULT_PSM

    def to_dict(self) -> dict:
        return asdict(self) | {"widths": list(self.widths)}

    def record(self) -> dict:
        """The config as models and checkpoints keep it."""
        return self.to_dict() | {"kind": "tiny"}

    @classmethod
    def from_dict(cls, values: dict) -> "TinyConfig":
        unknown = set(values) - set(cls.__dataclass_fields__) - {"kind"}
        if unknown:
            raise ValueError(f"unknown tiny multimodal settings: {', '.join(sorted(unknown))}")
        known = {k: v for k, v in values.items() if k != "kind"}
        return cls(**known | {"widths": tuple(known.get("widths", cls.widths))})


class TinyMultimodal(nn.Module):
    # What each training phase trains (train.py): (name prefixes, prefixes left out).
    PHASES = {1: (("image_encoder", "prompt_encoder", "text_tower", "text_projection",
                   "mask_decoder"), ("mask_decoder.cls_",)),
              2: (("mask_decoder.cls_",), ()),
              3: (("psm.", "mask_decoder."), ("mask_decoder.cls_",))}
    # Phase 2 with train.tpp_trains "decoder": the decoder and the TPP, the encoders frozen.
    TPP_DECODER = (("mask_decoder.",), ())

    def __init__(self, config: TinyConfig = TinyConfig(), tokens: torch.Tensor | None = None):
        """`tokens`: the commands' CLIP tokens (None: from open_clip's tokenizer); a model
        about to load a checkpoint passes `placeholder_tokens()`, the file holds them."""
        super().__init__()
        if config.crop % 16:
            raise ValueError("the crop must be a multiple of 16")
        if config.token_stride not in (4, 8, 16):
            raise ValueError(f"token_stride must be 4, 8 or 16 crop pixels, not "
                             f"{config.token_stride}")
        self.config = config.record()
        self.crop, self.dim = config.crop, config.widths[-1]
        self.image_encoder = ImageEncoder(config.widths, config.token_stride)
        self.prompt_encoder = PromptEncoder(self.dim, config.crop, config.token_stride)
        self.text_tower = BagOfTokens(config.text_width, tokens=tokens)
        self.text_projection = nn.Linear(config.text_width, self.dim)
        self.psm = PromptSequenceModule(self.dim, config.psm, config.heads)
        self.mask_decoder = HQMaskDecoder(config.widths, config.heads, config.depth,
                                          len(TEXT_COMMANDS), config.token_stride)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.image_encoder(images)

    def command_table(self) -> torch.Tensor:
        """(5, D): each command's token in the prompt width."""
        return self.text_projection(self.text_tower())

    def _decoder_inputs(self, features, mask_logits):
        embedding, early = features
        batch, _, size, _ = embedding.shape
        dense = self.prompt_encoder.dense(mask_logits, batch, size)
        return embedding, early, self.prompt_encoder.position.grid(size)[None], dense

    def decode(self, features, points, labels, commands, mask_logits=None):
        texts, has_text = text_tokens(self.command_table(), commands)
        sparse = self.psm(self.prompt_encoder.points(points, labels), texts, has_text)
        embedding, early, image_pe, dense = self._decoder_inputs(features, mask_logits)
        return self.mask_decoder(embedding, early, image_pe, sparse, dense)

    def predict_command(self, features, points, mask_logits=None) -> torch.Tensor:
        """The Text Prompt Predictor: which command fits the point on this mask (the point
        alone as the prompt, as a positive click; no sequence, no text)."""
        labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        sparse = self.prompt_encoder.points(points, labels)
        embedding, early, image_pe, dense = self._decoder_inputs(features, mask_logits)
        return self.mask_decoder(embedding, early, image_pe, sparse, dense, classify=True)
