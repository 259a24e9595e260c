"""VerSe's sizes: the paper's (the reference code's UTNet + 6-layer query decoder, whose
official checkpoints load strictly) and our tiny one (the same modules, small enough to train
on two CPU cores with `ivseg train --engine verse`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

ARCHITECTURES = ("verse", "sam-style")


@dataclass(frozen=True)
class VerseConfig:
    architecture: str = "verse"            # or "sam-style": the benchmark's baseline
    image_size: int = 256                  # slices are resized to this square
    in_channels: int = 3                   # the grey slice, repeated (as the reference)
    base_channels: int = 48                # UTNet: 2x, 4x, 8x this at 1/2, 1/4, 1/8
    encoder_heads: int = 4
    reduce_size: int = 8                   # UTNet attention: keys and values at 8x8
    encoder_dropout: float = 0.1
    hidden_dim: int = 256
    heads: int = 8
    ffn_dim: int = 2048
    layers: int = 6                        # 2 rounds over 1/8, 1/4, 1/2
    classes: int = 6                       # object-query groups (1-based class index)
    queries_per_class: int = 4
    mask_head_channels: int = 32
    click_mlp_hidden: int = 128            # the semantic click queries' projection
    pixel_mean: float = 0.367              # the reference's normalisation of [0, 1] slices
    pixel_std: float = 3.13

    @property
    def scales(self) -> tuple[int, ...]:
        """Downsampling of the decoder's levels, coarse to fine: 1/8, 1/4, 1/2."""
        return (8, 4, 2)

    @property
    def level_channels(self) -> tuple[int, ...]:
        """UTNet's channels at 1/8, 1/4, 1/2."""
        return tuple(self.base_channels * m for m in (8, 4, 2))

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: "
                             f"{', '.join(ARCHITECTURES)}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "VerseConfig":
        return cls(**values)


PAPER = VerseConfig()
# Ours: the same modules, narrow (UTNet base 8, decoder width 32 in 4 heads, mask heads of 8
# channels) and only our three ACDC classes (1 RV, 2 Myo, 3 LV). A slice costs 0.9 GFLOP to
# encode and 2.7 (Mode 1) to 3.1 (a click) to decode; width 64 costs 4x as much (11.9).
TINY = VerseConfig(base_channels=8, encoder_heads=2, hidden_dim=32, heads=4, ffn_dim=256,
                   classes=3, queries_per_class=4, mask_head_channels=8, click_mlp_hidden=32)

# The object-query group of each structure: ACDC's label values, as the reference numbers its
# first three groups (its groups 4-6 are other datasets' structures).
STRUCTURE_CLASSES = {"RV": 1, "Myo": 2, "LV": 3}

# Stacks from this seed up are held out: evaluation and benchmark only, never trained on.
HELD_OUT_FIRST_SEED = 1000
