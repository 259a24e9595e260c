"""Which of PromptEngines' Python requirements (requirements.txt beside this file, the list
pyproject.toml installs) are missing here: what the Slicer module offers to install."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements.txt"
# Slicer users get these from the PyTorch extension, never from pip.
FROM_PYTORCH_EXTENSION = ("torch", "torchvision")


def requirements() -> list[str]:
    """The requirement lines ("name>=version"), comments left out."""
    lines = REQUIREMENTS_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def distribution_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def missing_requirements() -> list[str]:
    """The requirement lines whose distribution is not installed."""
    missing = []
    for requirement in requirements():
        try:
            metadata.distribution(distribution_name(requirement))
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing
