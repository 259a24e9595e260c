"""PRISM's sizes: the paper's (the reference code's ViT-b hybrid, 118 M parameters, whose
official checkpoints load strictly) and our tiny one (the same modules, small enough to train
on two CPU cores with `ivseg train --engine prism`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PrismConfig:
    image_size: int = 128                  # the model's input cube (voxels, 1 mm apart)
    patch_size: int = 16                   # ViT patches: 8^3 tokens at 128^3
    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    global_blocks: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14                  # > the 8^3 token grid: one zero-padded window
    cnn_features: tuple[int, ...] = (32, 32, 64, 128, 384)   # UNet encoder, 128^3 .. 8^3
    prompt_dim: int = 384
    mask_in_chans: int = 16
    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp: int = 2048
    outputs: int = 3                       # candidate masks (one more token is trained, unused)
    iou_hidden: int = 256                  # the predicted-Dice head's width
    refine: bool = True
    refine_channels: int = 32

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mask_input_size(self) -> int:
        """The previous logits enter the prompt encoder at 4x the token grid (32^3)."""
        return 4 * self.grid

    @property
    def fusion_blocks(self) -> tuple[int, ...]:
        """ViT blocks after which tokens join the CNN skips (after every depth/4 blocks, the
        last excepted): 2, 5, 8 at depth 12."""
        step = self.depth // 4
        return tuple(step * i - 1 for i in (1, 2, 3))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "PrismConfig":
        values = dict(values)
        for key in ("global_blocks", "cnn_features"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


PAPER = PrismConfig()
# Ours: a 64^3 cube (1 mm voxels in the same way), 4^3 tokens of 16^3 voxels (the patch is
# the CNN's four halvings, as in the paper), a narrow ViT and UNet. The window equals the
# token grid, so no block pays for padded tokens.
TINY = PrismConfig(image_size=64, patch_size=16, embed_dim=96, depth=4, heads=4,
                   global_blocks=(1, 3), window_size=4, cnn_features=(8, 16, 24, 32, 96),
                   prompt_dim=96, mask_in_chans=8, transformer_depth=2, transformer_heads=4,
                   transformer_mlp=256, iou_hidden=64, refine_channels=16)
