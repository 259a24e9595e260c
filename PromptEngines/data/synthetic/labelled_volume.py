"""A synthetic volume with named label values (cardiac structures, organ and tumour)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..volume import Volume


@dataclass
class LabelledVolume:
    volume: Volume
    labels: np.ndarray            # uint8 label values
    names: dict[str, int]         # structure name -> label value

    def mask(self, name: str) -> np.ndarray:
        return (self.labels == self.names[name]).astype(np.uint8)
