"""Which of PromptEngines' Python requirements (requirements.txt beside this file, the list
pyproject.toml installs) are missing here: what the Slicer module offers to install."""
from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements.txt"
# Slicer users get these from the PyTorch extension, never from pip.
FROM_PYTORCH_EXTENSION = ("torch", "torchvision")
# Where a distribution's import name differs from its name: a package that Slicer builds
# itself (SimpleITK, numpy) may have no installed metadata, but it imports.
IMPORT_NAMES = {"scikit-image": "skimage", "pillow": "PIL", "open_clip_torch": "open_clip",
                "segment-anything": "segment_anything",
                "segment-anything-hq": "segment_anything_hq"}


def requirements() -> list[str]:
    """The requirement lines ("name>=version"), comments left out."""
    lines = REQUIREMENTS_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def distribution_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def installed(requirement: str) -> bool:
    name = distribution_name(requirement)
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is not None


def missing_requirements() -> list[str]:
    """The requirement lines whose distribution is neither installed nor importable."""
    return [r for r in requirements() if not installed(r)]
