"""`ivseg train --engine prism`: PRISM's iterative training on our synthetic volumes (faint
tumours in an organ crossed by vessels; vessel segments from the CTA source).

Each sample is a cube (the model's size, 1 mm voxels) around its target, jittered. An
interaction of k iterations (k drawn from 1..N, N = 11 as the paper) is rolled out: iteration
1 may get the ground truth's box (kept for every iteration); every iteration gets 1..`max_clicks`
clicks drawn uniformly from FN and FP of the previous prediction, and sometimes a scribble on
the error's skeleton; the previous (refined) logits are the dense prompt. On two CPU cores the
loss of the last `graded` iterations is back-propagated (the paper averages all N: measured
as too slow here); the earlier ones are rolled out without gradients."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.regions import within_mm
from ..data.synthetic.organ_tumour import LABELS, organ_tumour_volume
from ..training.tasks import options_record, tiny_with, train_options
from .config import TINY
from .cube import Cube
from .intensity import DEFAULT_WINDOW, window
from .losses import iteration_loss
from .model import Prism
from .simulated_prompts import error_clicks, error_scribble, truth_box

HELD_OUT_FIRST_SEED = 1000          # evaluation and benchmark volumes: never trained on


@dataclass(frozen=True)
class TrainOptions:
    cases: int = 48                  # organ-tumour volumes (seeds 0 ..)
    vessel_cases: int = 12           # CTA volumes of the source for vessel segments
    vessel_fraction: float = 0.4
    segment_half_mm: tuple = (10.0, 30.0)   # a vessel segment: the tree this far around a voxel
    iterations: int = 11
    graded: int = 1
    max_clicks: int = 10
    box_fraction: float = 0.7
    scribble_fraction: float = 0.5
    jitter_mm: float = 8.0
    min_voxels: int = 30             # a cube whose target is smaller is drawn again


def cube_sample(image, target, spacing, centre, size, rng, jitter_mm, intensity):
    """(windowed image cube, truth cube) around `centre` (volume index) moved by up to
    `jitter_mm`."""
    shift = rng.uniform(-jitter_mm, jitter_mm, 3) / np.asarray(spacing)
    cube = Cube.around(np.asarray(centre) + shift, spacing, size, 1.0)
    truth = cube.sample(target.astype(np.float32)) > 0.5
    return intensity.apply(cube.sample(image)), truth


class PrismTask:
    engine = "prism"

    def __init__(self, source, options: TrainOptions = TrainOptions(), model: dict | None = None,
                 seed: int = 0, batch_size: int = 2):
        self.options, self.seed, self.batch_size = options, seed, batch_size
        self.config = tiny_with(TINY, model)
        self.intensity = window(DEFAULT_WINDOW)
        self.tumours = [organ_tumour_volume(s) for s in range(options.cases)]
        self.vessels = [source[i] for i in range(min(options.vessel_cases, len(source)))]
        self.data = (f"{options.cases} organ-tumour volumes (seeds 0-{options.cases - 1}; "
                     "target: the tumour) and vessel segments (the tree within 10-30 mm of a "
                     f"vessel voxel) of {len(self.vessels)} volumes of: {source.describe()}")

    @property
    def epoch_samples(self) -> int:
        return len(self.tumours) + len(self.vessels)

    def build_model(self):
        return Prism(self.config)

    def model_config(self) -> dict:
        return self.config.to_json()

    def checkpoint_extras(self) -> dict:
        return {"train_options": options_record(self.options), "data": self.data,
                "intensity": DEFAULT_WINDOW}

    def _target(self, rng):
        """(image, target mask, spacing, centre) of one sample's volume. A vessel segment: the
        tree within a box of random size around one of its voxels (the box, or negative clicks
        past its ends, tell the model how much of the tree is wanted)."""
        if self.vessels and rng.random() < self.options.vessel_fraction:
            case = self.vessels[rng.integers(len(self.vessels))]
            voxels = np.argwhere(case.label)
            centre = voxels[rng.integers(len(voxels))]
            half_mm = rng.uniform(*self.options.segment_half_mm)
            near = within_mm(case.label.shape, centre, case.spacing_zyx, half_mm)
            return case.image, (case.label > 0) & near, case.spacing_zyx, centre
        case = self.tumours[rng.integers(len(self.tumours))]
        tumour = case.labels == LABELS["tumour"]
        return (case.volume.array, tumour, case.volume.spacing_zyx,
                np.argwhere(tumour).mean(axis=0))

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng([self.seed, step, rank])
        size = self.config.image_size
        images, truths = [], []
        while len(images) < self.batch_size:
            image, target, spacing, centre = self._target(rng)
            cube, truth = cube_sample(image, target, spacing, centre, size, rng,
                                      self.options.jitter_mm, self.intensity)
            if truth.sum() >= self.options.min_voxels:
                images.append(cube)
                truths.append(truth)
        stack = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None]
        return {"image": stack(images), "truth": stack(truths),
                "iterations": int(rng.integers(1, self.options.iterations + 1)),
                "use_box": bool(rng.random() < self.options.box_fraction),
                "prompt_seed": int(rng.integers(2 ** 31))}

    def loss(self, model, batch):
        return interaction_loss(model, batch, self.options)

    def evaluate(self, model) -> dict:
        model.eval()
        try:
            return evaluate_iterations(model, self.intensity, cases=4)
        finally:
            model.train()


def _padded(per_sample: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks of each sample, padded with not-a-point (-1) to one length."""
    length = max(1, max(len(c) for c in per_sample))
    coords = np.zeros((len(per_sample), length, 3), np.int64)
    labels = -np.ones((len(per_sample), length), np.int64)
    for b, clicks in enumerate(per_sample):
        for i, (voxel, label) in enumerate(clicks):
            coords[b, i], labels[b, i] = voxel, label
    return torch.from_numpy(coords), torch.from_numpy(labels)


def interaction_loss(model, batch, options: TrainOptions):
    image, truth = batch["image"], batch["truth"]
    rng = np.random.default_rng(batch["prompt_seed"])
    truths = truth[:, 0].numpy() > 0.5
    box = (torch.tensor([truth_box(t) for t in truths]) if batch["use_box"] else None)
    features = model.encode(image)
    frozen = tuple(f.detach() if isinstance(f, torch.Tensor) else [g.detach() for g in f]
                   for f in features)
    previous = torch.zeros_like(image)
    every = [[] for _ in truths]
    total, metrics, graded = torch.zeros(()), {}, 0
    count = batch["iterations"]
    for iteration in range(count):
        predicted = previous[:, 0].numpy() > 0
        new = []
        for b, t in enumerate(truths):
            clicks = error_clicks(t, predicted[b], int(rng.integers(1, options.max_clicks + 1)),
                                  rng)
            if rng.random() < options.scribble_fraction:
                clicks += error_scribble(t, predicted[b], rng)
            new.append(clicks)
            every[b] = every[b] + clicks
        grad = iteration >= count - options.graded
        with torch.set_grad_enabled(grad):
            prediction = model.predict(features if grad else frozen, *_padded(new), box,
                                       previous)
            refined = None
            if model.config.refine:
                refined = model.refine(image, prediction, *_padded(every)).logits
        if grad:
            loss, parts = iteration_loss(prediction, refined, truth)
            total, graded = total + loss, graded + 1
            metrics = parts
        previous = (refined if refined is not None else prediction.logits).detach()
    loss = total / max(graded, 1)
    return loss, {"loss": float(loss.detach()), "iterations": count, **metrics}


def evaluate_iterations(model, intensity, cases: int = 4, iterations: int = 5,
                        first_seed: int = HELD_OUT_FIRST_SEED) -> dict:
    """Held-out tumours, a simulated user with the box and one error click per iteration:
    Dice inside the cube after each iteration (median over cases)."""
    size = model.config.image_size
    curves = []
    for seed in range(first_seed, first_seed + cases):
        case = organ_tumour_volume(seed)
        tumour = case.labels == LABELS["tumour"]
        rng = np.random.default_rng(seed)
        image, truth = cube_sample(case.volume.array, tumour, case.volume.spacing_zyx,
                                   np.argwhere(tumour).mean(axis=0), size, rng, 0.0, intensity)
        curves.append(simulate(model, image, truth, iterations, rng, use_box=True))
    curve = np.median(np.asarray(curves), axis=0)
    return {f"dice_iteration_{i + 1}": float(d) for i, d in enumerate(curve)} | {
        "median_final_dice": float(curve[-1]), "cases": cases}


def simulate(model, image: np.ndarray, truth: np.ndarray, iterations: int, rng,
             use_box: bool = True, clicks: int = 1, scribbles: bool = False,
             refine: bool = True) -> list[float]:
    """Dice after each iteration of a simulated user in one cube."""
    x = torch.from_numpy(image)[None, None]
    box = torch.tensor([truth_box(truth)]) if use_box else None
    previous, every, curve = torch.zeros_like(x), [], []
    with torch.no_grad():
        features = model.encode(x)
        for _ in range(iterations):
            predicted = previous[0, 0].numpy() > 0
            new = error_clicks(truth, predicted, clicks, rng)
            if scribbles:
                new += error_scribble(truth, predicted, rng)
            every += new
            prediction = model.predict(features, *_padded([new]), box, previous)
            if refine and model.config.refine:
                prediction = model.refine(x, prediction, *_padded([every]))
            previous = prediction.logits
            mask = previous[0, 0].numpy() > 0
            curve.append(float(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1)))
    return curve


def model_recipe(config: dict) -> dict:
    """The model config a config file gives today, as checkpoints record it (no data built)."""
    return tiny_with(TINY, config.get("model")).to_json()


def training_task(source, config: dict, seed: int, batch_size: int, rank: int = 0,
                  world: int = 1) -> PrismTask:
    options = train_options(TrainOptions, config, "prism")
    return PrismTask(source, options, config.get("model"), seed, batch_size)
