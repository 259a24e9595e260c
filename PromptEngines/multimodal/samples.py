"""Training samples as the paper makes them: 2D vessel images with their ground truth,
imperfect masks built from the truth (defects.py), and 256 x 256 crops around the errors.

The images are fundus-like photographs (dark vessels, `synthetic/fundus.py`) and CTA slices
cut along the vessels (bright lumen) from the training volumes (`ivseg train`'s data, recorded
sessions included), so one model serves both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.synthetic.fundus import vessel_correction_case
from ..data.synthetic.fundus_clinical import clinical_vessel_picture
from ..prompts import TEXT_COMMANDS
from .crops import crop_origin, cropped
from .defects import DEFECT_KINDS, imperfect_mask, make_defect


@dataclass
class Picture:
    image: np.ndarray          # float32 (H, W)
    truth: np.ndarray          # bool (H, W)
    kind: str                  # "fundus" | "cta"


@dataclass
class Sample:
    image: np.ndarray          # float32 (S, S), normalised crop
    mask: np.ndarray           # bool (S, S): the mask before the step
    truth: np.ndarray          # bool (S, S)
    point: np.ndarray          # (y, x) crop pixels of the defect (phases 1 and 2)
    command: int               # index into TEXT_COMMANDS of the command that fixes it; -1:
                               # a plain click (the engine takes those too)
    label: int = 1             # a plain click's: 1 the error is missing vessel, 0 too much

FUNDUS_REALISM = ("clinical", "clean")

# Defects that add voxels to the truth: a plain click on them is a negative one.
ADDING = ("too_thick", "false_positive")


def fundus_pictures(seeds, size: int = 320, realism: str = "clinical") -> list[Picture]:
    """Fundus-like images and their vessel trees. `realism`: "clinical" (ambiguous pictures:
    faint thin vessels, blur, unannotated vessel-like structures; fundus_clinical.py) or
    "clean" (every annotated vessel plainly visible, nothing else; fundus.py, whose own
    imperfect mask is not used: defects are built from the truth as the paper does)."""
    if realism not in FUNDUS_REALISM:
        raise ValueError(f"unknown fundus realism {realism!r}; known: {', '.join(FUNDUS_REALISM)}")
    pictures = []
    for seed in seeds:
        if realism == "clinical":
            image, truth = clinical_vessel_picture(int(seed), size)
        else:
            case = vessel_correction_case(int(seed), size=size)
            image, truth = case.image.array[0], case.truth[0] > 0
        pictures.append(Picture(image, truth, "fundus"))
    return pictures


def cta_pictures(image: np.ndarray, label: np.ndarray, count: int) -> list[Picture]:
    """The `count` slices of a CTA volume that hold the most vessel, among the axial ones
    (the engine works on those: vessels in cross-section) and those cut across y or x
    (along the vessels, which run mostly along z in our volumes)."""
    candidates = []
    for axis in (0, 1, 2):
        area = label.sum(axis=tuple(a for a in range(3) if a != axis))
        for index in np.argsort(area)[::-1][:count]:
            if area[index] > 50:
                candidates.append((area[index], axis, int(index)))
    candidates.sort(reverse=True)
    pictures = []
    for _, axis, index in candidates[:count]:
        take = lambda a: np.take(a, index, axis=axis)
        pictures.append(Picture(take(image).astype(np.float32), take(label) > 0, "cta"))
    return pictures


def _augmented(arrays, point, rng):
    """The same random flip / transpose of every (S, S) array and of the point."""
    point = np.asarray(point, float)
    size = arrays[0].shape[0]
    if rng.random() < 0.5:
        arrays, point = [a.T for a in arrays], point[::-1].copy()
    if rng.random() < 0.5:
        arrays, point = [a[::-1] for a in arrays], np.array([size - 1 - point[0], point[1]])
    if rng.random() < 0.5:
        arrays, point = [a[:, ::-1] for a in arrays], np.array([point[0], size - 1 - point[1]])
    return [np.ascontiguousarray(a) for a in arrays], point


def _crop(picture: Picture, mask, centre, size: int, rng, jitter: int):
    """image, mask, truth crops around `centre` (moved by up to `jitter`), and its origin."""
    moved = np.asarray(centre[-2:], float) + rng.integers(-jitter, jitter + 1, 2)
    origin = crop_origin(moved, size, picture.image.shape)
    image, _, (mask, truth) = cropped(picture.image, origin, size, mask, picture.truth)
    return image, mask, truth, origin


def one_defect_sample(picture: Picture, rng, size: int, jitter: int = 24,
                      plain_fraction: float = 0.0, kind_chances=None) -> Sample | None:
    """Phases 1 and 2: the truth with one defect of a random kind (each as likely, or by
    `kind_chances`), cropped around it; a share of them fixed by a plain click instead of
    the command."""
    kind = DEFECT_KINDS[rng.integers(len(DEFECT_KINDS)) if kind_chances is None
                        else rng.choice(len(DEFECT_KINDS), p=kind_chances)]
    defect = make_defect(kind, picture.truth, rng, image=picture.image)
    if defect is None:
        return None
    image, mask, truth, origin = _crop(picture, defect.mask, defect.point, size, rng, jitter)
    point = np.subtract(defect.point[-2:], origin)
    (image, mask, truth), point = _augmented([image, mask, truth], point, rng)
    if rng.random() < plain_fraction:
        return Sample(image, mask, truth, point, -1, int(defect.kind not in ADDING))
    return Sample(image, mask, truth, point, TEXT_COMMANDS.index(defect.command))


def sequence_sample(picture: Picture, rng, size: int, jitter: int = 24) -> Sample | None:
    """Phase 3: the truth with several defects, cropped around one of them; the steps are
    generated during training from the model's own outputs."""
    mask, defects = imperfect_mask(picture.truth, rng, image=picture.image)
    if not defects:
        return None
    chosen = defects[rng.integers(len(defects))]
    image, mask, truth, origin = _crop(picture, mask, chosen.point, size, rng, jitter)
    point = np.subtract(chosen.point[-2:], origin)
    (image, mask, truth), point = _augmented([image, mask, truth], point, rng)
    return Sample(image, mask, truth, point, TEXT_COMMANDS.index(chosen.command))
