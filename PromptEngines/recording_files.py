"""How a recording's files are named: NAME.seg.nrrd (the accepted segmentation) beside
NAME.prompts.json (the prompts that made it), whichever of the two is known."""
from __future__ import annotations

from pathlib import Path

PROMPTS_SUFFIX = ".prompts.json"
SEGMENTATION_SUFFIX = ".seg.nrrd"
_MASK_SUFFIXES = (SEGMENTATION_SUFFIX, ".nrrd", ".nii.gz", ".nii")


def prompts_path_for(segmentation: str | Path) -> Path:
    """SEG.seg.nrrd (or .nrrd, .nii.gz, .nii) -> SEG.prompts.json beside it."""
    path = Path(segmentation)
    stem = path.name
    for suffix in _MASK_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(stem + PROMPTS_SUFFIX)


def segmentation_path_for(prompts: str | Path) -> Path:
    """NAME.prompts.json -> NAME.seg.nrrd beside it: where a recording's accepted result lives."""
    prompts = Path(prompts)
    return prompts.with_name(recording_name(prompts) + SEGMENTATION_SUFFIX)


def recording_name(prompts: str | Path) -> str:
    """NAME of NAME.prompts.json."""
    return Path(prompts).name[: -len(PROMPTS_SUFFIX)]
