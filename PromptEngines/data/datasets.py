"""Training volumes: our synthetic generators and a folder in the nnU-Net / Medical
Segmentation Decathlon layout (imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz, dataset.json).
Recorded sessions are in recordings.py; `training_source` (all of them) in training_sources.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import VolumeError
from .labelled_case import LabelledCase
from .synthetic.cta import vessel_volume
from .synthetic.cta_tissue import CONTRAST_FALL
from .synthetic.cta_neighbours import NoRoom
from .volume import grid_mismatch, read_volume

TRAINING_SEEDS_BELOW = 1000      # synthetic seeds >= 1000 are held out for evaluation


class SyntheticVessels:
    """Synthetic vessel volumes; case i is seed i (all below the held-out range).
    `slice_mm` = (thinnest, thickest): each case's slice spacing drawn from that range (the
    volume keeps its physical extent), for models that must cope with thick-slice CT.
    `paired_fraction`: the share of cases drawn with the vessels that lie around an artery in
    real CTA (`neighbours="paired"`: veins beside and across it, a second artery tree), hard
    negatives for a model that must keep to the clicked vessel.
    `contrast_fall` = (least, most): the range each tree's loss of contrast at its farthest
    point is drawn from (None: the generator's 0.45-0.6); deeper falls give a model dimmer
    distal vessels to follow."""

    def __init__(self, count: int, shape=(80, 112, 112), slice_mm=None,
                 paired_fraction: float = 0.0, contrast_fall=None):
        if count > TRAINING_SEEDS_BELOW:
            raise ValueError(f"at most {TRAINING_SEEDS_BELOW} training seeds")
        if slice_mm is not None and not 0 < slice_mm[0] <= slice_mm[1]:
            raise VolumeError(f"slice_mm must be (thinnest, thickest) in mm, got {slice_mm}")
        if not 0.0 <= paired_fraction <= 1.0:
            raise VolumeError(f"paired_fraction must be between 0 and 1, got {paired_fraction}")
        if contrast_fall is not None and not 0 <= contrast_fall[0] <= contrast_fall[1] < 1:
            raise VolumeError("contrast_fall must be (least, most) shares of the trunk's "
                              f"contrast lost, 0 <= least <= most < 1, got {contrast_fall}")
        self.count, self.shape, self.slice_mm = count, shape, slice_mm
        self.paired_fraction, self.contrast_fall = paired_fraction, contrast_fall

    def __len__(self) -> int:
        return self.count

    def describe(self) -> str:
        slices = "" if self.slice_mm is None else (
            f", slice spacing {self.slice_mm[0]}-{self.slice_mm[1]} mm")
        paired = "" if not self.paired_fraction else (
            f", {self.paired_fraction:.0%} with paired neighbours (veins, a second tree)")
        fall = "" if self.contrast_fall is None else (
            f", contrast lost along the tree {self.contrast_fall[0]}-{self.contrast_fall[1]}")
        return (f"synthetic vessel volumes (PromptEngines.data.synthetic.cta.vessel_volume), seeds "
                f"0-{self.count - 1}, shape {tuple(self.shape)}{slices}{paired}{fall}; evaluation "
                f"seeds start at {TRAINING_SEEDS_BELOW}")

    def neighbours(self, index: int) -> str:
        """Which neighbours case `index` is drawn with (decided by its seed alone)."""
        paired = np.random.default_rng([index, 23]).random() < self.paired_fraction
        return "paired" if paired else "classic"

    def geometry(self, index: int):
        """(shape, spacing_zyx) of case `index`; None spacing: the generator's own."""
        if self.slice_mm is None:
            return self.shape, None
        rng = np.random.default_rng([index, 17])
        in_plane, slice_mm = rng.uniform(0.6, 0.85), rng.uniform(*self.slice_mm)
        depth = max(16, round(self.shape[0] * 1.3 / slice_mm))     # 1.3 mm: the usual spacing
        return (depth, *self.shape[1:]), (slice_mm, in_plane, in_plane)

    def __getitem__(self, index: int) -> LabelledCase:
        shape, spacing = self.geometry(index)
        fall = tuple(self.contrast_fall or CONTRAST_FALL)
        try:
            case = vessel_volume(index, shape, spacing, neighbours=self.neighbours(index),
                                 contrast_fall=fall)
        except NoRoom:                      # a short volume: the classic neighbour instead
            case = vessel_volume(index, shape, spacing, contrast_fall=fall)
        return LabelledCase(f"synthetic-{index}", case.volume.array, case.label,
                            case.volume.spacing_zyx, real=False)


class NnUNetFolder:
    """imagesTr/labelsTr pairs; any label value > 0 is the structure."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        images, labels = self.root / "imagesTr", self.root / "labelsTr"
        for folder in (images, labels):
            if not folder.is_dir():
                raise VolumeError(f"{self.root}: missing folder {folder.name}/ (nnU-Net layout "
                                  "needs imagesTr/ and labelsTr/)")
        if not (self.root / "dataset.json").is_file():
            raise VolumeError(f"{self.root}: missing dataset.json")
        try:
            json.loads((self.root / "dataset.json").read_text())
        except json.JSONDecodeError as error:
            raise VolumeError(f"{self.root / 'dataset.json'} is not valid JSON: {error}") from None
        self.pairs = []
        for image in sorted(images.iterdir()):
            name = image.name
            for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
                if name.endswith(suffix):
                    case = name[: -len(suffix)]
                    case = case[:-5] if case.endswith("_0000") else case
                    label = labels / f"{case}{suffix}"
                    if not label.is_file():
                        raise VolumeError(f"no label for {image}: expected {label}")
                    self.pairs.append((case, image, label))
                    break
        if not self.pairs:
            raise VolumeError(f"{images} holds no volumes")

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self) -> str:
        return f"{self.root} (nnU-Net layout, {len(self.pairs)} cases)"

    def __getitem__(self, index: int) -> LabelledCase:
        case, image_path, label_path = self.pairs[index]
        image, label = read_volume(image_path), read_volume(label_path, validate=False)
        mismatch = grid_mismatch(label.shape, label.ijk_to_ras, image)
        if mismatch:
            raise VolumeError(f"{label_path} is not on the grid of {image_path} ({mismatch})")
        return LabelledCase(case, image.array.astype(np.float32),
                            (label.array > 0).astype(np.uint8), image.spacing_zyx)
