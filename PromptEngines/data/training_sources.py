"""The data a training run reads: a base source (synthetic volumes or an nnU-Net folder) plus
any folders of recorded sessions, one after the other."""
from __future__ import annotations

from ..errors import VolumeError
from .datasets import NnUNetFolder, SyntheticVessels
from .labelled_case import LabelledCase
from .recordings import RecordedSessions


class Combined:
    """Several sources one after the other (e.g. synthetic volumes plus recorded sessions)."""

    def __init__(self, sources):
        self.sources = [s for s in sources if len(s)]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.sources)

    def __getitem__(self, index: int) -> LabelledCase:
        for source in self.sources:
            if index < len(source):
                return source[index]
            index -= len(source)
        raise IndexError(index)


def training_source(data: str, count: int = 32, sessions=(), slice_mm=None,
                    paired_fraction: float = 0.0, contrast_fall=None):
    """`slice_mm`, `paired_fraction` and `contrast_fall`: how synthetic volumes are drawn
    (SyntheticVessels)."""
    given = [name for name, value in (("slice_mm", slice_mm), ("paired_fraction", paired_fraction),
                                      ("contrast_fall", contrast_fall)) if value]
    if given and data != "synthetic":
        raise VolumeError(f"{' and '.join(given)} (config section data) "
                          f"appl{'y' if len(given) > 1 else 'ies'} to synthetic data only")
    base = (SyntheticVessels(count, slice_mm=slice_mm, paired_fraction=paired_fraction,
                             contrast_fall=contrast_fall)
            if data == "synthetic" else NnUNetFolder(data))
    if not sessions:
        return base
    return Combined([base, *(RecordedSessions(folder) for folder in sessions)])
