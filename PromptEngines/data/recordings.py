"""Recorded interactive sessions as training cases: what radiologists clicked and accepted.

A session is `NAME.prompts.json` (DESIGN.md's prompt file, exported by the Slicer module or
written by `ivseg trace/segment`) with the accepted segmentation `NAME.seg.nrrd` beside it.
Its volume is the file the prompts file names (absolute, or relative to the prompts file),
checked against the recorded voxel sha256; the segmentation is checked against the recorded
result sha256, so a case is exactly what the session produced. The case's label is that
result, its click the first positive point, and its steps the whole prompt sequence in index
coordinates (for engines that learn from interaction sequences).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VolumeError
from ..prompts import Point, PromptSequence, map_all, sha256_array
from ..recording_files import PROMPTS_SUFFIX, recording_name, segmentation_path_for
from .labelled_case import LabelledCase
from .segmentation_file import read_mask
from .volume import grid_mismatch, read_volume

VOLUME_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")


class RecordedSessions:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise VolumeError(f"recorded sessions folder not found: {self.folder}")
        self.files = sorted(self.folder.glob(f"*{PROMPTS_SUFFIX}"))
        if not self.files:
            raise VolumeError(f"{self.folder} holds no *{PROMPTS_SUFFIX} session")
        for prompts in self.files:
            segmentation = segmentation_path_for(prompts)
            if not segmentation.is_file():
                raise VolumeError(f"{prompts.name}: its result {segmentation.name} is missing "
                                  "(export the segmentation beside the prompts file)")

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"{self.folder} ({len(self.files)} recorded sessions)"

    def volume_path(self, prompts: Path, sequence: PromptSequence) -> Path:
        if sequence.volume is None or not sequence.volume.path:
            raise VolumeError(f"{prompts.name} does not name its volume")
        recorded = Path(sequence.volume.path)
        # As recorded; relative to the prompts file; beside it (a moved folder); or beside it
        # under a Slicer node name plus a volume suffix.
        candidates = [recorded, prompts.parent / recorded, prompts.parent / recorded.name]
        candidates += [prompts.parent / (recorded.name + suffix) for suffix in VOLUME_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise VolumeError(f"{prompts.name}: volume {recorded} not found (looked beside the "
                          "prompts file too)")

    def __getitem__(self, index: int) -> LabelledCase:
        prompts = self.files[index]
        sequence = PromptSequence.load(prompts)
        volume = read_volume(self.volume_path(prompts, sequence))
        if sequence.volume.sha256 != sha256_array(volume.array):
            raise VolumeError(f"{prompts.name}: {volume.path} is not the volume the session "
                              "was recorded on (voxel sha256 differs)")
        mask, geometry = read_mask(segmentation_path_for(prompts), sequence.segment)
        mismatch = grid_mismatch(mask.shape, geometry.ijk_to_ras, volume)
        if mismatch:
            raise VolumeError(f"{segmentation_path_for(prompts).name} does not share the grid "
                              f"of {Path(volume.path).name} ({mismatch})")
        if sequence.result_sha256 and sequence.result_sha256 != sha256_array(mask.astype(np.uint8)):
            raise VolumeError(f"{segmentation_path_for(prompts).name} is not the result recorded "
                              f"in {prompts.name} (mask sha256 differs)")
        steps = map_all(sequence.steps, volume.ras_to_index)
        click = next((volume.voxel_of(step.position) for step in sequence.steps
                      if isinstance(step, Point) and step.label == 1), None)
        return LabelledCase(recording_name(prompts), volume.array.astype(np.float32),
                            (mask > 0).astype(np.uint8), volume.spacing_zyx, real=True,
                            click=click, steps=steps)
