"""multimodal's paper configuration (Lim & Lee, MICCAI 2025): SAM ViT-b's image encoder and
prompt encoder, SAM-HQ's mask decoder (HQ token, early ViT features fused), CLIP ViT-B-32's
text tower (open_clip) with one added Linear 512 -> 256, the Prompt Sequence Module and the
Text Prompt Predictor (a CLS token + 3-layer MLP in the HQ decoder).

Built from the libraries' own modules, so the official files load strictly with our loaders:
`sam_hq_vit_b.pth` (a plain state dict of SAM-HQ's whole `Sam`, 339 keys) and an open_clip
ViT-B-32 file (a state dict of the whole CLIP model, 302 keys, `visual.*` included). Weights
files do not say which GELU they were trained with: OpenAI's and the laion400m tags need
`quick_gelu=True`.

The text tower is frozen, as in the paper, and with five fixed commands a frozen tower only
ever gives five vectors: they are computed once at build (`encode_text` of open_clip's tokens)
and kept as a buffer (`command_embeddings`, (5, 512), saved with our checkpoints), and the
tower itself is dropped (63 M parameters, 150 of its 302 keys the text's). The Linear to the
prompt width learns. Fine-tuning official weights keeps SAM's image and prompt encoders
frozen (`PRETRAINED_KEPT`; the paper fine-tunes the image encoder in its first phase only).

The same calls as the tiny configuration (tiny_model.py), so engine and trainer treat both
alike:

    encode(images (B,1,256,256)) -> [image embeddings (B,256,s,s), early ViT features
                                     (B,s,s,768)], s = image_size / 16
    decode(features, points (B,K,2) yx crop px, labels (B,K), commands (B,K) (-1: none),
           mask_logits (B,1,256,256) | None, multimask=False) -> logits (B,1,256,256), iou (B,)
    predict_command(features, points (B,1,2), mask_logits) -> (B, 5) command logits
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.checkpoint import load_strict, read_state_dict
from ..backbones.sam import SAM_IMAGE_SIZE, mlp, resize_sam, sam_input
from ..backbones.sam_encoder import vit_block
from ..errors import CheckpointError
from ..prompts import TEXT_COMMANDS
from .psm import DEFAULT_PSM, PromptSequenceModule

CLIP_MODEL = "ViT-B-32"
CLIP_WIDTH = 512               # ViT-B-32's text embedding
PROMPT_DIM = 256               # SAM's prompt tokens
CROP = 256                     # the paper's crop around the largest errors
HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder",
            "embedding_maskfeature")


@contextmanager
def _quiet():
    """segment_anything_hq re-registers timm's TinyViT names on import (UserWarnings), and
    open_clip logs "initialized randomly" for every build without a tag, also those we load
    a file into right after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def build_sam_hq_vit_b():
    """SAM-HQ ViT-b at 1024², randomly initialised, every parameter trainable."""
    with _quiet():
        from segment_anything_hq import sam_model_registry

        # Never given the checkpoint: pip 0.3's build_sam reads it without map_location
        # (a CUDA-saved file fails on a CPU) and loads it non-strictly.
        sam = sam_model_registry["vit_b"](checkpoint=None)
    # build_sam also freezes all but the HQ parts and sets eval(): undone, what is frozen
    # is ours to say (PRETRAINED_KEPT).
    return sam.requires_grad_(True).train()


def build_clip(quick_gelu: bool = False):
    """open_clip's CLIP ViT-B-32, randomly initialised (`pretrained=None`: nothing fetched)."""
    with _quiet():
        import open_clip

        return open_clip.create_model(CLIP_MODEL, pretrained=None, force_quick_gelu=quick_gelu)


def load_sam_hq(sam, path: str | Path) -> None:
    """An official SAM-HQ ViT-b file (plain state dict of the whole model), strictly."""
    state, name = read_state_dict(path), Path(path).name
    if any(k.startswith("token_embedding") or k.startswith("visual.") for k in state):
        raise CheckpointError(f"{name} is a CLIP checkpoint, not a SAM-HQ ViT-b one "
                              "(sam_hq_vit_b.pth)")
    hq = any(k.startswith("mask_decoder.") and k.split(".")[1] in HQ_PARTS for k in state)
    if not hq and any(k.startswith("image_encoder.patch_embed") for k in state):
        raise CheckpointError(f"{name} is a SAM checkpoint without SAM-HQ's decoder parts "
                              f"({', '.join(HQ_PARTS)}): give sam_hq_vit_b.pth")
    load_strict(sam, state, name)


def load_clip(clip, path: str | Path) -> None:
    """An official open_clip ViT-B-32 file (state dict of the whole CLIP model), strictly."""
    state, name = read_state_dict(path), Path(path).name
    if any(k.startswith("image_encoder.") or k.startswith("mask_decoder.") for k in state):
        raise CheckpointError(f"{name} is a SAM checkpoint, not an open_clip {CLIP_MODEL} one")
    load_strict(clip, state, name)


@torch.no_grad()
def command_embeddings(clip) -> torch.Tensor:
    """(5, 512): CLIP's text embedding of each of TEXT_COMMANDS (unnormalised `encode_text`)."""
    import open_clip

    tokens = open_clip.get_tokenizer(CLIP_MODEL)(list(TEXT_COMMANDS))
    was_training = clip.training
    embeddings = clip.eval().encode_text(tokens).float()
    clip.train(was_training)
    return embeddings


class PaperMultimodal(nn.Module):
    """The paper configuration. `sam_hq_checkpoint` / `clip_checkpoint`: official files to
    start from (loaded strictly; never kept in `config`). `image_size`: SAM's input (the
    256² crop is resized to it; 1024 as SAM was trained, a multiple of 16 below it runs
    faster with the position embedding interpolated)."""

    PRETRAINED_KEPT = ("sam.image_encoder", "sam.prompt_encoder")
    # What each training phase trains (train.py): (name prefixes, prefixes left out). The
    # paper: (1) image encoder + HQ decoder, (2) the TPP, (3) the PSM + HQ decoder.
    PHASES = {1: (("sam.image_encoder", "sam.mask_decoder", "text_projection"), ()),
              2: (("tpp_",), ()),
              3: (("psm.", "sam.mask_decoder"), ())}
    # Phase 2 with train.tpp_trains "decoder": the decoder and the TPP, the encoders frozen.
    TPP_DECODER = (("sam.mask_decoder", "tpp_"), ())

    def __init__(self, sam_hq_checkpoint=None, clip_checkpoint=None, psm: str = DEFAULT_PSM,
                 image_size: int = SAM_IMAGE_SIZE, quick_gelu: bool = False):
        super().__init__()
        sam = build_sam_hq_vit_b()
        if sam_hq_checkpoint is not None:
            load_sam_hq(sam, sam_hq_checkpoint)
        self.sam = resize_sam(sam, image_size)
        clip = build_clip(quick_gelu)
        if clip_checkpoint is not None:
            load_clip(clip, clip_checkpoint)
        self.register_buffer("command_embeddings", command_embeddings(clip), persistent=True)
        del clip                                   # frozen: its five outputs are all we use
        self.crop, self.dim, self.image_size = CROP, PROMPT_DIM, image_size
        self.text_projection = nn.Linear(CLIP_WIDTH, self.dim)
        self.psm = PromptSequenceModule(self.dim, psm)
        self.tpp_token = nn.Embedding(1, self.dim)              # the TPP's CLS token
        self.tpp_head = mlp(self.dim, self.dim, len(TEXT_COMMANDS))
        self.config = {"kind": "paper", "psm": psm, "image_size": image_size,
                       "quick_gelu": quick_gelu}

    # ------------------------------------------------------------------ image
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, 256, 256) ~[0, 1] -> [image embeddings (B, 256, s, s), the ViT's features
        after its first global-attention block (B, s, s, 768)]: SAM-HQ's `image_embeddings`
        and `interm_embeddings[0]`."""
        encoder = self.sam.image_encoder
        x = encoder.patch_embed(sam_input(images, self.image_size))
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        early = None
        for block in encoder.blocks:
            # SAM's own blocks, run without host waits (backbones/sam_encoder.py).
            x = vit_block(block, x)
            if early is None and block.window_size == 0:
                early = x
        return [encoder.neck(x.permute(0, 3, 1, 2)), early]

    # ------------------------------------------------------------------ prompts
    def _point_tokens(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """SAM's point embedding, one token per step: (y, x) crop px -> (x, y) SAM input px,
        +0.5 (pixel centre), random Fourier features, + the positive / negative embedding."""
        encoder = self.sam.prompt_encoder
        # Flipped, not indexed with [1, 0] (a host-to-device copy; see tracer3d).
        coords = points.flip(-1).to(torch.float32) * (self.image_size / self.crop) + 0.5
        encoded = encoder.pe_layer.forward_with_coords(coords, encoder.input_image_size)
        kinds = torch.cat([encoder.point_embeddings[0].weight, encoder.point_embeddings[1].weight])
        return encoded + kinds[labels.clamp(0, 1)]

    def _padding(self, batch: int) -> torch.Tensor:
        """SAM's not-a-point token, appended as SAM does when no box is given."""
        return self.sam.prompt_encoder.not_a_point_embed.weight.expand(batch, 1, -1)

    def _dense(self, mask_logits, batch: int, size: int) -> torch.Tensor:
        """SAM's mask prompt: the current logits at SAM's low-res size (4 × the embedding,
        256² at 1024) through its mask downscaling, or the no-mask embedding."""
        encoder = self.sam.prompt_encoder
        if mask_logits is None:
            return encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, size,
                                                                           size)
        low = F.interpolate(mask_logits.to(torch.float32), size=(4 * size, 4 * size),
                            mode="bilinear", align_corners=False)
        return encoder.mask_downscaling(low)

    def text_tokens(self, commands: torch.Tensor):
        """commands (B, K), -1 for none -> text tokens (B, K, 256), has_text (B, K)."""
        table = self.text_projection(self.command_embeddings)
        return table[commands.clamp(min=0)], commands >= 0

    # ------------------------------------------------------------------ decoder
    def _decoder(self, features, sparse, dense, classify: bool = False):
        """SAM-HQ's MaskDecoderHQ.predict_masks on its own submodules, for B images each
        with its own prompts (the stock one repeats every image for every prompt of one
        image and breaks for several images), computing only the HQ mask (hq_token_only)
        and, with `classify`, the TPP's CLS token placed after the output tokens.
        -> HQ low-res mask logits (B, 1, 4s, 4s), IoU predictions (B, 4), CLS output."""
        decoder = self.sam.mask_decoder
        embeddings, early = features
        batch = sparse.shape[0]
        if embeddings.shape[0] != batch:          # one image, several prompt sets
            embeddings = embeddings.expand(batch, -1, -1, -1)
            early = early.expand(batch, -1, -1, -1)
        output = [decoder.iou_token.weight, decoder.mask_tokens.weight, decoder.hf_token.weight]
        if classify:
            output.append(self.tpp_token.weight)
        output = torch.cat(output)
        tokens = torch.cat([output.expand(batch, -1, -1), sparse], dim=1)
        image = embeddings + dense
        position = self.sam.prompt_encoder.get_dense_pe().expand_as(image)
        tokens_out, image_out = decoder.transformer(image, position, tokens)
        upscaled = decoder.output_upscaling(image_out.transpose(1, 2).reshape(image.shape))
        hq_features = (decoder.embedding_encoder(embeddings)
                       + decoder.compress_vit_feat(early.permute(0, 3, 1, 2)))
        upscaled_hq = decoder.embedding_maskfeature(upscaled) + hq_features
        hq_index = decoder.num_mask_tokens         # iou, SAM's 4 mask tokens, then HQ
        weights = decoder.hf_mlp(tokens_out[:, hq_index])[:, None]          # (B, 1, 32)
        masks = (weights @ upscaled_hq.flatten(2)).unflatten(2, upscaled_hq.shape[-2:])
        iou = decoder.iou_prediction_head(tokens_out[:, 0])
        cls = tokens_out[:, hq_index + 1] if classify else None
        return masks, iou, cls

    def decode(self, features, points, labels, commands, mask_logits=None, multimask=False):
        """One step of the sequence: -> HQ mask logits (B, 1, 256, 256) and predicted IoU
        (B,): SAM-HQ's single-mask IoU token, or with `multimask` the best of its three
        multimask IoUs (as SAM-HQ reports it with hq_token_only)."""
        batch, size = points.shape[0], features[0].shape[-1]
        texts, has_text = self.text_tokens(commands)
        sparse = self.psm(self._point_tokens(points, labels), texts, has_text)
        sparse = torch.cat([sparse, self._padding(batch)], dim=1)
        low, iou, _ = self._decoder(features, sparse, self._dense(mask_logits, batch, size))
        logits = F.interpolate(low, size=(self.crop, self.crop), mode="bilinear",
                               align_corners=False)
        return logits, (iou[:, 1:].amax(dim=1) if multimask else iou[:, 0])

    def predict_command(self, features, points, mask_logits=None) -> torch.Tensor:
        """The Text Prompt Predictor: (B, 1, 2) point on the current mask -> (B, 5) logits
        over TEXT_COMMANDS. The point enters as SAM's positive point token (the predictor
        is not told a label) beside SAM's padding token, without the PSM (no text, no
        sequence); the CLS token's decoder output goes through the 3-layer MLP."""
        batch, size = points.shape[0], features[0].shape[-1]
        labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        sparse = torch.cat([self._point_tokens(points, labels), self._padding(batch)], dim=1)
        _, _, cls = self._decoder(features, sparse, self._dense(mask_logits, batch, size),
                                  classify=True)
        return self.tpp_head(cls)
