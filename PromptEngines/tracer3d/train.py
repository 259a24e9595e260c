"""Training tracer3d on runs of adjacent slices (the method's training scheme).

A sample is four consecutive slices along z, in either direction, cropped around one vessel
cross-section: slice 0 gives the previous mask, slice 1 is segmented from a point near the
vessel's centre, and slices 2 and 3 from points the offset MLP moves along from the
features of the slice before (Zhang, Yu, Xue: "features and prediction of slice i-1 generate
the prompt for slice i"). Targets are the pieces of the vessel each slice continues; other
vessels in the crop (the tree's other branches, the unconnected neighbour) are background.

Losses: BCE + Dice per slice, L_local = |∇z P_2 − ∇z P_3|₁ + λ_TV |∇xy P_2|₁ (λ_TV = 0.1),
L_global = Σ (1 − cos(F_i, F_i+1)) over bottleneck features, and a confidence (IoU) head.
We add a small direct loss on the offset (predicted vs true centre); `variant` switches the
parts off for the ablation.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from torch.utils.data.distributed import DistributedSampler

from ..backbones.checkpoint import file_sha256
from ..data.regions import deepest_point, full_structure, window
from ..errors import IVSegError
from ..training.tasks import options_record
from .build import START_KEYS, build_tracer, freeze_pretrained
from .evaluate import evaluate_tracer
from .normalise import NORMALISED_RANGE, normalised_volume

VARIANTS = {
    "naive": dict(use_offset=False, use_local=False, use_global=False),
    "local": dict(use_offset=False, use_local=True, use_global=False),
    "global": dict(use_offset=False, use_local=True, use_global=True),
    "offset": dict(use_offset=True, use_local=True, use_global=True),
}


@dataclass(frozen=True)
class TrainOptions:
    variant: str = "offset"
    crop: int = 64
    lambda_tv: float = 0.1
    local_weight: float = 1.0
    global_weight: float = 0.1
    offset_weight: float = 0.02
    confidence_weight: float = 0.1
    jitter: float = 8.0              # crop centre jitter (pixels): half the tile step (tracking.py)
    # Share of samples drawn where another bright structure comes within `contact_pixels` of
    # the vessel (a vein beside or across it, bone): the hard negatives a slice model meets
    # at contacts, rare in uniformly drawn samples.
    contact_fraction: float = 0.0
    contact_pixels: int = 3

    @property
    def parts(self) -> dict:
        return VARIANTS[self.variant]

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- samples
@dataclass
class Sample:
    images: np.ndarray      # (4, S, S) normalised slices, tracing order
    targets: np.ndarray     # (4, S, S) bool: the traced vessel on each slice
    point: np.ndarray       # (y, x) prompt on slice 1, crop pixels


def _continuation(label_slice, previous) -> np.ndarray:
    """Pieces of `label_slice` touching `previous` (3D 26-connectivity between slices)."""
    if not previous.any():
        return np.zeros_like(previous)
    pieces, _ = ndimage.label(label_slice, full_structure(2))
    touching = np.unique(pieces[ndimage.binary_dilation(previous, full_structure(2)) & (pieces > 0)])
    return np.isin(pieces, touching[touching > 0])


def normalise_for_training(image, label, spacing, rng, click=None) -> np.ndarray:
    """As at inference (structure -> 1, surroundings -> 0), with the structure level taken
    at the user's recorded click, or near a random vessel voxel as a click would give it."""
    if click is None:
        inside = np.argwhere(ndimage.binary_erosion(label, iterations=1)) if label.sum() > 50 else np.argwhere(label)
        click = tuple(inside[rng.integers(len(inside))])
    return normalised_volume(image, spacing, click)


CONTACT_LEVEL = 0.4       # normalised intensity (vessel at the click: 1) of "bright"


def contacts(volume, label, reach: int) -> np.ndarray:
    """Where another bright structure comes within `reach` pixels (in-slice) of the vessel:
    bool (z, y, x), the vessel's voxels there. Found in the image, not in a generator's
    masks, so recorded sessions give them too."""
    in_slice = full_structure(2)[None]
    grown = ndimage.binary_dilation(label, in_slice, iterations=reach)
    # Beyond the vessel's own blurred rim, and a structure, not a noise speck.
    other = (volume > CONTACT_LEVEL) & ~ndimage.binary_dilation(label, in_slice, iterations=2)
    other = ndimage.binary_opening(other, in_slice)
    near_other = ndimage.binary_dilation(grown & other, in_slice, iterations=reach)
    return label & near_other


def draw_sample(volume, label, rng, crop: int, jitter: float,
                near: np.ndarray | None = None) -> Sample | None:
    """Four slices in a random direction around a random vessel cross-section (one that
    holds a voxel of `near`, if given)."""
    depth = volume.shape[0]
    direction = int(rng.choice([-1, 1]))
    where = label if near is None else near
    zs = np.nonzero(where.reshape(depth, -1).any(axis=1))[0]
    zs = zs[(zs - direction >= 0) & (zs - direction < depth) & (zs + 2 * direction >= 0)
            & (zs + 2 * direction < depth)]
    if len(zs) == 0:
        return None
    z1 = int(zs[rng.integers(len(zs))])
    pieces, count = ndimage.label(label[z1], full_structure(2))
    labels = np.unique(pieces[where[z1]])
    piece = pieces == labels[rng.integers(len(labels))]
    order = [z1 - direction, z1, z1 + direction, z1 + 2 * direction]
    targets = [None, piece]
    targets[0] = _continuation(label[order[0]], piece)
    targets.append(_continuation(label[order[2]], targets[1]))
    targets.append(_continuation(label[order[3]], targets[2]))
    centre = np.asarray(deepest_point(piece), float)
    top_left = np.round(centre + rng.uniform(-jitter, jitter, 2) - crop / 2).astype(int)
    images, masks = [], []
    for z, target in zip(order, targets):
        images.append(window(volume[z], top_left, crop, 0.0))
        masks.append(window(target, top_left, crop, False))
    point = centre - top_left + rng.normal(0.0, 1.0, 2)
    return Sample(np.stack(images).astype(np.float32), np.stack(masks), point)


def augment(sample: Sample, rng) -> Sample:
    """In-plane flips and quarter turns (same for all slices), contrast and noise jitter."""
    images, targets, point = sample.images, sample.targets, sample.point.copy()
    size = images.shape[-1]
    turns = int(rng.integers(4))
    for _ in range(turns):
        images, targets = np.rot90(images, axes=(1, 2)), np.rot90(targets, axes=(1, 2))
        point = np.array([size - 1 - point[1], point[0]])
    if rng.random() < 0.5:
        images, targets = images[:, :, ::-1], targets[:, :, ::-1]
        point = np.array([point[0], size - 1 - point[1]])
    images = images * rng.uniform(0.8, 1.25) + rng.uniform(-0.1, 0.1)
    images = images + rng.normal(0, rng.uniform(0.0, 0.08), images.shape)
    images = np.clip(images, *NORMALISED_RANGE).astype(np.float32)
    return Sample(np.ascontiguousarray(images), np.ascontiguousarray(targets), point)


def jittered_previous(target: np.ndarray, rng) -> np.ndarray:
    """The previous slice's mask as the tracer would have it: a pixel too wide or narrow."""
    choice = rng.random()
    if choice < 0.2:
        return ndimage.binary_dilation(target)
    if choice < 0.4:
        return ndimage.binary_erosion(target)
    return target


def monai_intensity(sample: Sample, rng) -> Sample:
    """Scanner variation for real (folder) data with MONAI's transforms: intensity scale,
    contrast (gamma), bias field, blur and noise, seeded from the step's generator so that
    batches stay a function of (seed, step, rank)."""
    from monai.transforms import (Compose, RandAdjustContrast, RandBiasField,
                                  RandGaussianNoise, RandGaussianSmooth, RandScaleIntensity)

    transforms = Compose([
        RandScaleIntensity(factors=0.2, prob=0.5),
        RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5)),
        RandBiasField(coeff_range=(0.0, 0.1), prob=0.2),
        RandGaussianSmooth(sigma_x=(0.25, 0.8), sigma_y=(0.25, 0.8), prob=0.2),
        RandGaussianNoise(prob=0.3, std=0.05),
    ])
    transforms.set_random_state(seed=int(rng.integers(2 ** 31)))
    images = np.asarray(transforms(sample.images), dtype=np.float32)
    images = np.clip(images, *NORMALISED_RANGE)
    return Sample(np.ascontiguousarray(images), sample.targets, sample.point)


def collate(samples: list[Sample], rng) -> dict:
    previous = np.stack([jittered_previous(s.targets[0], rng) for s in samples])
    return {"images": torch.from_numpy(np.stack([s.images for s in samples])),
            "targets": torch.from_numpy(np.stack([s.targets for s in samples])).float(),
            "previous": torch.from_numpy(previous[:, None]).float(),
            "points": torch.from_numpy(np.stack([s.point for s in samples])).float(),
            "first_slice": bool(rng.random() < 0.25)}


# ---------------------------------------------------------------------------- losses
def dice_loss(logits, target):
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum(dim=(-2, -1))
    total = probability.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
    return (1 - (2 * overlap + 1) / (total + 1)).mean()


def segmentation_loss(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)


def soft_centre(probability, anchor, radius=12.0):
    """Probability-weighted centre near `anchor` (the previous mask's centre, naive variant)."""
    size = probability.shape[-1]
    grid = torch.arange(size, dtype=probability.dtype, device=probability.device)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    near = ((yy - anchor[:, :1, None]) ** 2 + (xx - anchor[:, 1:, None]) ** 2) <= radius ** 2
    weights = probability[:, 0] * near
    total = weights.sum(dim=(1, 2)).clamp_min(1e-6)
    centre = torch.stack([(weights * yy).sum(dim=(1, 2)) / total,
                          (weights * xx).sum(dim=(1, 2)) / total], dim=1)
    empty = weights.sum(dim=(1, 2)) < 1e-3
    return torch.where(empty[:, None], anchor, centre)


def true_centres(targets, fallback):
    """Centre of each target mask (batch), or the fallback where it is empty."""
    size = targets.shape[-1]
    grid = torch.arange(size, dtype=targets.dtype, device=targets.device)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    total = targets.sum(dim=(1, 2))
    centre = torch.stack([(targets * yy).sum(dim=(1, 2)), (targets * xx).sum(dim=(1, 2))], 1)
    centre = centre / total.clamp_min(1)[:, None]
    return torch.where((total > 0)[:, None], centre, fallback), total > 0


def tracer_loss(model, batch, options: TrainOptions) -> tuple[torch.Tensor, dict]:
    parts = options.parts
    images, targets, point = batch["images"], batch["targets"], batch["points"]
    batch_size, _, size, _ = images.shape
    features = model.encode(images.reshape(-1, 1, size, size))
    per_slice = [[f.reshape(batch_size, 4, *f.shape[1:])[:, k] for f in features] for k in range(4)]
    # Slice 0's mask as logits; in a quarter of the batches none, as on the clicked slice.
    previous = None if batch.get("first_slice") else (batch["previous"] * 2 - 1) * 4.0
    losses, logits_list, bottlenecks = {}, [], []
    seg = offset_error = confidence_error = 0.0
    for k in (1, 2, 3):
        logits, confidence, bottleneck = model.decode(per_slice[k], point, previous)
        target = targets[:, k:k + 1]
        seg = seg + segmentation_loss(logits, target)
        with torch.no_grad():
            hard = (logits > 0).float()
            iou = (hard * target).sum(dim=(1, 2, 3)) / ((hard + target) > 0).float().sum(dim=(1, 2, 3)).clamp_min(1)
        confidence_error = confidence_error + F.mse_loss(confidence, iou)
        logits_list.append(logits)
        bottlenecks.append(bottleneck)
        if k == 3:
            break
        # The prompt for the next slice: offset MLP (method) or previous mask centre (naive).
        if parts["use_offset"]:
            point = point + model.offset(bottleneck)
            centre, present = true_centres(targets[:, k + 1], point.detach())
            if present.any():
                offset_error = offset_error + F.smooth_l1_loss(point[present], centre[present])
        else:
            point = soft_centre(torch.sigmoid(logits).detach(), point.detach())
        previous = logits
    total = seg / 3 + options.confidence_weight * confidence_error / 3
    losses["seg"] = float(seg.detach() / 3)
    if parts["use_offset"]:
        total = total + options.offset_weight * offset_error
        losses["offset"] = float(offset_error.detach()) if torch.is_tensor(offset_error) else 0.0
    probabilities = [torch.sigmoid(l) for l in logits_list]
    if parts["use_local"]:
        gradient_z = [probabilities[1] - probabilities[0], probabilities[2] - probabilities[1]]
        smooth_z = (gradient_z[0] - gradient_z[1]).abs().mean()
        p = probabilities[1]
        tv = (p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., 1:] - p[..., :-1]).abs().mean()
        local = smooth_z + options.lambda_tv * tv
        total = total + options.local_weight * local
        losses["local"] = float(local.detach())
    if parts["use_global"]:
        flat = [b.flatten(1) for b in bottlenecks]
        global_ = sum((1 - F.cosine_similarity(a, b, dim=1)).mean() for a, b in zip(flat, flat[1:]))
        total = total + options.global_weight * global_
        losses["global"] = float(global_.detach())
    losses["loss"] = float(total.detach())
    return total, losses


def new_model(config: dict | None = None):
    return build_tracer(config)


def model_settings(options: TrainOptions, model: dict | None) -> dict:
    """The config a model is built from: the crop it is trained on, and the config file's
    "model" section."""
    return {"crop": options.crop, **(model or {})}


def model_recipe(config: dict) -> dict:
    """The model config a config file gives today, as checkpoints record it (no data built;
    a paper configuration is built with random weights: its config never holds the path of
    the official ones it starts from)."""
    settings = model_settings(_options(config), config.get("model"))
    return new_model({k: v for k, v in settings.items() if k not in START_KEYS}).config


# ---------------------------------------------------------------------------- the task
class Tracer3DTask:
    """What `ivseg train --engine tracer3d` trains: a pool of normalised volumes, batches of
    augmented slice runs, the losses above, and held-out tracing as the evaluation."""

    engine = "tracer3d"

    def __init__(self, source, options: TrainOptions = TrainOptions(), model: dict | None = None,
                 trace: dict | None = None, seed: int = 0, batch_size: int = 16,
                 evaluation_cases: int = 4, rank: int = 0, world: int = 1):
        self.options, self.seed, self.batch_size = options, seed, batch_size
        self.config = model_settings(options, model)
        self._model_config = self._initial_weights = None
        self._kept: list[str] = []                # what the built model keeps frozen
        self.trace = dict(trace or {})
        if not options.parts["use_offset"]:
            self.trace.setdefault("use_offset", False)
        self.evaluation_cases = evaluation_cases
        self.data = source.describe()
        # Each rank loads its own share of the volumes (DistributedSampler's split).
        indices = list(DistributedSampler(range(len(source)), num_replicas=world, rank=rank,
                                          shuffle=False))
        rng = np.random.default_rng([seed, rank, 12345])
        self.pool = []
        for index in indices:
            case = source[index]
            if not case.label.any():
                warnings.warn(f"{case.name}: the label is empty; skipped")
                continue
            volume = normalise_for_training(case.image, case.label, case.spacing_zyx, rng,
                                            case.click)
            label = case.label.astype(bool)
            near = (contacts(volume, label, options.contact_pixels)
                    if options.contact_fraction > 0 else None)
            self.pool.append((volume, label, case.real, near))
        if not self.pool:
            raise IVSegError("no training case has a labelled structure")

    @property
    def epoch_samples(self) -> int:
        """One pass over the data (`ivseg train --epochs`): 64 slice runs per volume."""
        return 64 * len(self.pool)

    def _start(self) -> str | None:
        """The official weights training starts from, if any."""
        return next((self.config[key] for key in START_KEYS if self.config.get(key)), None)

    def build_model(self):
        model = new_model(self.config)
        if self._start():                          # fine-tuning official weights (the method)
            freeze_pretrained(model)
        return model

    def model_config(self) -> dict:
        # Asked at every checkpoint; building the paper config (and reading its SAM file)
        # each time would cost seconds, so once (with what it keeps frozen).
        if self._model_config is None:
            built = self.build_model()
            self._model_config = built.config
            self._kept = list(getattr(built, "PRETRAINED_KEPT", ()))
        return self._model_config

    def checkpoint_extras(self) -> dict:
        extras = {"trace_options": self.trace, "train_options": options_record(self.options),
                  "data": self.data}
        start = self._start()
        if start:                                 # which official weights training began from
            if self._initial_weights is None:     # hashed once, not at every checkpoint
                self.model_config()
                self._initial_weights = {"file": Path(start).name, "sha256": file_sha256(start),
                                         "frozen": self._kept}
            extras["initial_weights"] = self._initial_weights
        return extras

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng([self.seed, step, rank])
        samples = []
        while len(samples) < self.batch_size:
            volume, label, real, near = self.pool[rng.integers(len(self.pool))]
            at_contact = near is not None and rng.random() < self.options.contact_fraction
            sample = draw_sample(volume, label, rng, self.options.crop, self.options.jitter,
                                 near if at_contact else None)
            if sample is not None:
                sample = augment(sample, rng)
                if real:                     # scanner variation for real scans (MONAI)
                    sample = monai_intensity(sample, rng)
                samples.append(sample)
        return collate(samples, rng)

    def loss(self, model, batch):
        return tracer_loss(model, batch, self.options)

    def evaluate(self, model) -> dict:
        model.eval()
        try:
            return evaluate_tracer(model, self.trace, cases=self.evaluation_cases)
        finally:
            model.train()


def training_task(source, config: dict, seed: int, batch_size: int, rank: int = 0,
                  world: int = 1) -> Tracer3DTask:
    """`ivseg train --engine tracer3d`: the task for a config file's train / model / trace
    sections (the descriptor's entry point)."""
    return Tracer3DTask(source, _options(config), config.get("model"), config.get("trace"),
                        seed, batch_size, rank=rank, world=world)


def _options(config: dict) -> TrainOptions:
    try:
        options = TrainOptions(**config.get("train", {}))
        options.parts
    except (TypeError, KeyError) as error:
        raise IVSegError(f"bad tracer3d train options: {error}") from None
    return options
