"""Prompts and recorded prompt sequences.

A prompt's coordinates live in one frame at a time: RAS millimetres where the user and the
`*.prompts.json` file see them, voxel index space (z, y, x floats) where an engine sees them.
`map_coordinates` moves a prompt between frames with any point transform, so the conversion
itself lives in one place (`data.volume.Volume`).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import PromptError, PromptFileError

Coordinate = tuple[float, float, float]

# The five correction commands of the multimodal method, in a fixed order (class index),
# and what each does at the clicked point (the panel's tooltips).
TEXT_COMMANDS = ("make thinner", "make thicker", "make a connection", "extend", "remove")
TEXT_COMMAND_HELP = {
    "make thinner": "narrow the vessel around the clicked point",
    "make thicker": "widen the vessel around the clicked point",
    "make a connection": "join the two pieces nearest the clicked point",
    "extend": "continue the vessel from the clicked point",
    "remove": "delete the clicked piece back to where it joins the rest",
}
FORMAT_VERSION = 1


def _coordinate(values, what: str) -> Coordinate:
    try:
        coordinate = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be three numbers, got {values!r}") from None
    if len(coordinate) != 3:
        raise PromptError(f"{what} must have 3 coordinates, got {len(coordinate)}")
    if not all(math.isfinite(v) for v in coordinate):
        raise PromptError(f"{what} has a NaN or infinite coordinate: {list(coordinate)}")
    return coordinate


def _label(value) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise PromptError(f"label must be 1 (positive) or 0 (negative), got {value!r}")
    return int(value)


def _require_inside(positions, shape) -> None:
    for zyx in positions:
        if not all(-0.5 <= c <= n - 0.5 for c, n in zip(zyx, shape)):
            raise PromptError("prompt point (z, y, x) = ("
                              + ", ".join(f"{c:.1f}" for c in zyx)
                              + f") is outside the image of shape {shape}")


def normalise_command(text: str) -> str:
    """Map free text to one of TEXT_COMMANDS, tolerating case and spacing."""
    key = " ".join(str(text).lower().replace("_", " ").split())
    if key not in TEXT_COMMANDS:
        raise PromptError(f"unknown text command {text!r}; known: {', '.join(TEXT_COMMANDS)}")
    return key


class _NoCoordinates:
    """A prompt with no place in the volume (a structure name, a mask, undo, reset)."""

    def map_coordinates(self, transform):
        return self

    def positions(self) -> list[Coordinate]:
        return []

    def check_inside(self, shape) -> None:
        pass


@dataclass(frozen=True)
class Point:
    position: Coordinate
    label: int = 1
    kind = "point"

    def __post_init__(self):
        object.__setattr__(self, "position", _coordinate(self.position, "point"))
        object.__setattr__(self, "label", _label(self.label))

    def map_coordinates(self, transform: Callable[[Coordinate], Coordinate]) -> "Point":
        return replace(self, position=transform(self.position))

    def positions(self) -> list[Coordinate]:
        """The coordinates that must lie inside the volume."""
        return [self.position]

    def check_inside(self, shape) -> None:
        _require_inside(self.positions(), shape)

    def to_json(self) -> dict:
        return {"kind": "point", "ras": list(self.position), "label": self.label}

    @classmethod
    def from_json(cls, step: dict) -> "Point":
        return cls(step["ras"], step.get("label", 1))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box given by two opposite corners (any order)."""
    corner_a: Coordinate
    corner_b: Coordinate
    kind = "box"

    def __post_init__(self):
        a = _coordinate(self.corner_a, "box corner")
        b = _coordinate(self.corner_b, "box corner")
        object.__setattr__(self, "corner_a", tuple(min(p, q) for p, q in zip(a, b)))
        object.__setattr__(self, "corner_b", tuple(max(p, q) for p, q in zip(a, b)))

    @property
    def low(self) -> Coordinate:
        return self.corner_a

    @property
    def high(self) -> Coordinate:
        return self.corner_b

    def corners(self) -> list[Coordinate]:
        lo, hi = self.low, self.high
        return [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]

    def map_coordinates(self, transform) -> "Box":
        # An oblique transform turns the box; keep the axis-aligned box that encloses it.
        mapped = np.array([transform(c) for c in self.corners()])
        return Box(tuple(mapped.min(axis=0)), tuple(mapped.max(axis=0)))

    def positions(self) -> list[Coordinate]:
        return []            # a box may reach past the volume; the engine clips it

    def check_inside(self, shape) -> None:
        if any(hi < -0.5 or lo > n - 0.5 for lo, hi, n in zip(self.low, self.high, shape)):
            raise PromptError("the box does not overlap the volume")

    def to_json(self) -> dict:
        return {"kind": "box", "ras_min": list(self.low), "ras_max": list(self.high)}

    @classmethod
    def from_json(cls, step: dict) -> "Box":
        return cls(step["ras_min"], step["ras_max"])


@dataclass(frozen=True)
class Scribble:
    points: tuple[Coordinate, ...]
    label: int = 1
    kind = "scribble"

    def __post_init__(self):
        points = tuple(_coordinate(p, "scribble point") for p in self.points)
        if not points:
            raise PromptError("a scribble needs at least one point")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "label", _label(self.label))

    def map_coordinates(self, transform) -> "Scribble":
        return replace(self, points=tuple(transform(p) for p in self.points))

    def positions(self) -> list[Coordinate]:
        return list(self.points)

    def check_inside(self, shape) -> None:
        _require_inside(self.positions(), shape)

    def to_json(self) -> dict:
        return {"kind": "scribble", "ras": [list(p) for p in self.points], "label": self.label}

    @classmethod
    def from_json(cls, step: dict) -> "Scribble":
        return cls(step["ras"], step.get("label", 1))


@dataclass(frozen=True)
class Lasso(Scribble):
    """A closed curve drawn on one slice: everything inside it, on that slice, is (label 1)
    or is not (label 0) the structure. Engines that take scribbles take it as the scribble
    of its filled voxels (`lasso_fill.filled_voxels`)."""
    kind = "lasso"

    def __post_init__(self):
        super().__post_init__()
        if len(self.points) < 3:
            raise PromptError(f"a lasso needs at least 3 points to enclose an area, got "
                              f"{len(self.points)}")

    def to_json(self) -> dict:
        return {"kind": "lasso", "ras": [list(p) for p in self.points], "label": self.label}


@dataclass(frozen=True)
class Text:
    """A correction command, optionally anchored at the point the user clicked with it."""
    command: str
    position: Coordinate | None = None
    kind = "text"

    def __post_init__(self):
        object.__setattr__(self, "command", normalise_command(self.command))
        if self.position is not None:
            object.__setattr__(self, "position", _coordinate(self.position, "text position"))

    def map_coordinates(self, transform) -> "Text":
        return self if self.position is None else replace(self, position=transform(self.position))

    def positions(self) -> list[Coordinate]:
        return [] if self.position is None else [self.position]

    def check_inside(self, shape) -> None:
        _require_inside(self.positions(), shape)

    def to_json(self) -> dict:
        step = {"kind": "text", "text": self.command}
        if self.position is not None:
            step["ras"] = list(self.position)
        return step

    @classmethod
    def from_json(cls, step: dict) -> "Text":
        return cls(step["text"], step.get("ras"))


@dataclass(frozen=True)
class Auto(_NoCoordinates):
    """Automatic segmentation of a named structure (e.g. "LV", "Myo", "RV")."""
    target: str
    kind = "auto"

    def __post_init__(self):
        if not str(self.target).strip():
            raise PromptError("an automatic prompt needs a structure name")

    def to_json(self) -> dict:
        return {"kind": "auto", "target": self.target}

    @classmethod
    def from_json(cls, step: dict) -> "Auto":
        return cls(step["target"])


@dataclass(frozen=True, eq=False)
class MaskPrompt(_NoCoordinates):
    """A starting mask (uint8, the image's shape); `path` is where it came from, if a file."""
    mask: np.ndarray | None = None
    path: str | None = None
    kind = "mask"
    what = "the starting mask"

    def check_inside(self, shape) -> None:
        if self.mask is None or self.mask.shape != tuple(shape):
            got = None if self.mask is None else self.mask.shape
            raise PromptError(f"{self.what} has shape {got}, the image {tuple(shape)}")

    def to_json(self) -> dict:
        if self.path is None:
            raise PromptFileError(f"a {self.kind} step must name the file that holds its mask")
        return {"kind": self.kind, "path": self.path}

    @classmethod
    def from_json(cls, step: dict) -> "MaskPrompt":
        return cls(path=str(step["path"]))


@dataclass(frozen=True, eq=False)
class ExcludeMask(MaskPrompt):
    """Voxels that are not this structure (the other segments of the segmentation, finished
    work): from this step on the engine never puts them in its mask, and removes them from
    it now. Recorded like a starting mask (the file that holds it)."""
    kind = "exclude"
    what = "the excluded region"


class _HistoryStep(_NoCoordinates):
    """A step on the session's history rather than on the volume."""

    def to_json(self) -> dict:
        return {"kind": self.kind}

    @classmethod
    def from_json(cls, step: dict):
        return cls()


@dataclass(frozen=True)
class Undo(_HistoryStep):
    kind = "undo"


@dataclass(frozen=True)
class Reset(_HistoryStep):
    kind = "reset"


@dataclass(frozen=True)
class Redo(_HistoryStep):
    """The last undone step again (as it was made: same prompt, same engine)."""
    kind = "redo"


Prompt = (Point | Box | Scribble | Lasso | Text | Auto | MaskPrompt | ExcludeMask | Undo | Reset
          | Redo)


def has_place(prompt: Prompt) -> bool:
    """The prompt is somewhere in the volume (a viewer can show it): points, boxes, curves,
    a text command given at a point."""
    return isinstance(prompt, Box) or bool(prompt.positions())


# ---------------------------------------------------------------------------- JSON steps
PROMPT_TYPES = {cls.kind: cls for cls in (Point, Box, Scribble, Lasso, Text, Auto, MaskPrompt,
                                           ExcludeMask, Undo, Reset, Redo)}
PROMPT_KINDS = tuple(PROMPT_TYPES)


def step_to_json(prompt: Prompt) -> dict:
    """One step of a prompts file; coordinates are written as they are (RAS in files)."""
    if type(prompt) not in PROMPT_TYPES.values():
        raise PromptFileError(f"cannot record {type(prompt).__name__}")
    return prompt.to_json()


def step_from_json(step: dict, index: int = 0) -> Prompt:
    where = f"step {index}"
    if not isinstance(step, dict) or "kind" not in step:
        raise PromptFileError(f"{where}: each step must be an object with a 'kind'")
    kind = step["kind"]
    if kind not in PROMPT_TYPES:
        raise PromptFileError(f"{where}: unknown kind {kind!r}; known: {', '.join(PROMPT_KINDS)}")
    try:
        return PROMPT_TYPES[kind].from_json(step)
    except KeyError as missing:
        raise PromptFileError(f"{where} ({kind}): missing field {missing}") from None
    except PromptError as bad:
        raise PromptFileError(f"{where} ({kind}): {bad}") from None


# ---------------------------------------------------------------------------- sequences
def sha256_array(array: np.ndarray) -> str:
    """Identity of an array's voxels: dtype, shape and bytes, independent of memory layout."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    if array.size:
        digest.update(array.reshape(-1).view(np.uint8))     # the voxels' bytes, not a copy
    return digest.hexdigest()


@dataclass
class VolumeIdentity:
    path: str | None
    shape: tuple[int, int, int]
    ijk_to_ras: list[list[float]]
    sha256: str


@dataclass
class PromptSequence:
    """The versioned record of one interactive session (`*.prompts.json`)."""
    steps: list = field(default_factory=list)
    volume: VolumeIdentity | None = None
    engine: str | None = None
    weights_sha256: str | None = None
    segment: str = "vessel"
    result_voxels: int | None = None
    result_sha256: str | None = None
    stopped_after: dict[int, int] = field(default_factory=dict)   # cancelled step -> updates
    step_engines: dict[int, str] = field(default_factory=dict)    # step -> another engine
    engine_settings: dict = field(default_factory=dict)   # the engine's choices (intensity)

    def append(self, prompt: Prompt, engine: str | None = None) -> None:
        """A step; `engine`: the engine that made it, when not the file's."""
        if engine is not None and engine != self.engine:
            self.step_engines[len(self.steps)] = engine
        self.steps.append(prompt)

    def engine_of(self, index: int) -> str | None:
        return self.step_engines.get(index, self.engine)

    def remove_step(self, index: int) -> None:
        """Forget step `index` (the last one: it did not happen)."""
        del self.steps[index]
        self.step_engines.pop(index, None)

    def record_result(self, mask: np.ndarray) -> None:
        self.result_voxels = int(np.count_nonzero(mask))
        self.result_sha256 = sha256_array(mask.astype(np.uint8, copy=False))

    def to_json(self) -> dict:
        volume = None
        if self.volume is not None:
            volume = {"path": self.volume.path, "shape": list(self.volume.shape),
                      "ijk_to_ras": self.volume.ijk_to_ras, "sha256": self.volume.sha256}
        return {
            "format": "InteractiveVesselSeg prompts", "version": FORMAT_VERSION,
            "volume": volume,
            "engine": {"name": self.engine, "weights_sha256": self.weights_sha256,
                       **({"settings": self.engine_settings} if self.engine_settings else {})},
            "segment": self.segment,
            "steps": [self._step_json(i, step) for i, step in enumerate(self.steps)],
            "result": {"voxels": self.result_voxels, "sha256": self.result_sha256},
        }

    def _step_json(self, index: int, step: Prompt) -> dict:
        data = step_to_json(step)
        if index in self.step_engines:
            data["engine"] = self.step_engines[index]
        if index in self.stopped_after:
            data["stopped_after_updates"] = self.stopped_after[index]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "PromptSequence":
        if not isinstance(data, dict):
            raise PromptFileError("a prompts file must hold one JSON object")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise PromptFileError(f"unsupported prompts file version {version!r} "
                                  f"(this build reads version {FORMAT_VERSION})")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise PromptFileError("a prompts file needs a 'steps' list")
        volume = None
        if data.get("volume"):
            v = data["volume"]
            try:
                matrix = np.asarray(v["ijk_to_ras"], dtype=float)
                if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
                    raise ValueError
                volume = VolumeIdentity(v.get("path"), tuple(int(n) for n in v["shape"]),
                                        matrix.tolist(), str(v["sha256"]))
            except (KeyError, TypeError, ValueError):
                raise PromptFileError("the 'volume' entry needs shape, a finite 4x4 "
                                      "ijk_to_ras and sha256") from None
        engine = data.get("engine") or {}
        result = data.get("result") or {}
        stopped = {i: s["stopped_after_updates"] for i, s in enumerate(steps)
                   if isinstance(s, dict) and "stopped_after_updates" in s}
        if not all(isinstance(n, int) and n >= 0 for n in stopped.values()):
            raise PromptFileError("'stopped_after_updates' must be a whole number >= 0")
        step_engines = {i: s["engine"] for i, s in enumerate(steps) if isinstance(s, dict)
                        and s.get("engine") not in (None, engine.get("name"))}
        if not all(isinstance(name, str) and name for name in step_engines.values()):
            raise PromptFileError("a step's 'engine' must be an engine's name")
        return cls(steps=[step_from_json(s, i) for i, s in enumerate(steps)], volume=volume,
                   stopped_after=stopped, step_engines=step_engines,
                   engine=engine.get("name"), weights_sha256=engine.get("weights_sha256"),
                   engine_settings=dict(engine.get("settings") or {}),
                   segment=str(data.get("segment", "vessel")),
                   result_voxels=result.get("voxels"), result_sha256=result.get("sha256"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PromptSequence":
        path = Path(path)
        if not path.is_file():
            raise PromptFileError(f"prompts file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as bad:
            raise PromptFileError(f"{path} is not valid JSON: {bad}") from None
        return cls.from_json(data)


def map_all(prompts: Sequence[Prompt], transform) -> list[Prompt]:
    return [p.map_coordinates(transform) for p in prompts]
