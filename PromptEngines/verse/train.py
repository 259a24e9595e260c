"""`ivseg train --engine verse`: VerSe's training on our synthetic short-axis stacks.

A sample is one slice (resized to the model's square exactly as the engine does) and one
structure drawn among those it shows; flips, rot90, gamma and brightness as augmentation.
Each batch is one mode, drawn as the reference draws it: either the automatic result and two
correction rounds (Modes 1, 2, 2) or one, two, three clicks alone (Mode 3); each round's click
is the simulated user's (simulated_clicks.py) on the round before, drawn without gradients.
The loss is the rounds' deep-supervision loss, weighted 1, 0.8, 0.8. The image is encoded
once per batch (the reference encodes it again every round: the same features)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.synthetic.cardiac import CARDIAC_LABELS, cardiac_volume
from ..errors import IVSegError
from ..training.tasks import train_options
from .config import STRUCTURE_CLASSES, TINY, VerseConfig
from .losses import mask_loss
from .model import Verse, build_model
from .simulated_clicks import next_click, padded
from .slices import normalised, to_model

HELD_OUT_FIRST_SEED = 1000          # evaluation and benchmark stacks: never trained on
ROUND_WEIGHTS = (1.0, 0.8, 0.8)


@dataclass(frozen=True)
class TrainOptions:
    cases: int = 80                  # synthetic stacks (seeds 0 ..)
    slices: tuple = (8, 14)          # slices per stack (drawn per case)
    sizes: tuple = (128, 160, 192, 224, 256)   # in-plane pixels (drawn per case)
    auto_fraction: float = 0.5       # batches of Modes 1-2-2 (else Mode 3)
    flip: float = 0.3                # per axis, as the reference
    rot90: float = 0.5
    gamma: float = 0.2               # probability of a gamma in 0.6 .. 1.6
    brightness: float = 0.3          # probability of a scale in 0.85 .. 1.15


def stack_case(seed: int, slices: int, size: int, model_size: int):
    """(slices as the model sees them (S, 1, M, M), labels on that grid (S, M, M))."""
    case = cardiac_volume(seed, slices=slices, size=size)
    images = to_model(normalised(case.volume.array), model_size)
    labels = F.interpolate(torch.from_numpy(case.labels.astype(np.float32))[:, None],
                           size=(model_size, model_size), mode="nearest-exact")[:, 0]
    return images, labels.to(torch.uint8)


def _augment(image: np.ndarray, truth: np.ndarray, rng, options: TrainOptions):
    for axis in (0, 1):
        if rng.random() < options.flip:
            image, truth = np.flip(image, axis), np.flip(truth, axis)
    if rng.random() < options.rot90:
        k = int(rng.integers(1, 4))
        image, truth = np.rot90(image, k), np.rot90(truth, k)
    if rng.random() < options.gamma:
        image = np.clip(image, 0, None) ** rng.uniform(0.6, 1.6)
    if rng.random() < options.brightness:
        image = image * rng.uniform(0.85, 1.15)
    return np.ascontiguousarray(image), np.ascontiguousarray(truth)


class VerseTask:
    engine = "verse"

    def __init__(self, source=None, options: TrainOptions = TrainOptions(),
                 model: dict | None = None, seed: int = 0, batch_size: int = 4):
        self.options, self.seed, self.batch_size = options, seed, batch_size
        self.config = VerseConfig.from_json({**TINY.to_json(), **(model or {})})
        if self.config.architecture != "verse" and options.auto_fraction:
            raise IVSegError(f"a {self.config.architecture} model has no structure queries: "
                             "set train.auto_fraction to 0")
        rng = np.random.default_rng(seed)
        self.stacks = [stack_case(s, int(rng.integers(options.slices[0], options.slices[1] + 1)),
                                  int(rng.choice(options.sizes)), self.config.image_size)
                       for s in range(options.cases)]
        # (stack, slice, label value) of every structure a slice shows.
        self.samples = [(i, k, int(v)) for i, (_, labels) in enumerate(self.stacks)
                        for k in range(len(labels)) for v in np.unique(labels[k].numpy())
                        if v > 0]
        self.data = (f"{options.cases} synthetic short-axis cardiac stacks "
                     f"(PromptEngines.data.synthetic.cardiac, seeds 0-{options.cases - 1}, "
                     f"{options.slices[0]}-{options.slices[1]} slices of "
                     f"{min(options.sizes)}-{max(options.sizes)} pixels); one sample = one "
                     f"slice and one structure it shows ({len(self.samples)} in all)")

    @property
    def epoch_samples(self) -> int:
        return len(self.samples)

    def build_model(self):
        return build_model(self.config)

    def model_config(self) -> dict:
        return self.config.to_json()

    def checkpoint_extras(self) -> dict:
        return {"train_options": asdict(self.options), "data": self.data}

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng([self.seed, step, rank])
        images, truths, structures = [], [], []
        for index in rng.integers(len(self.samples), size=self.batch_size):
            stack, k, value = self.samples[index]
            slices, labels = self.stacks[stack]
            image, truth = _augment(slices[k, 0].numpy(), (labels[k] == value).numpy(), rng,
                                    self.options)
            images.append(image)
            truths.append(truth)
            structures.append(value)
        stack = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None]
        return {"image": stack(images), "truth": stack(truths),
                "structure": torch.tensor(structures),
                "auto": bool(rng.random() < self.options.auto_fraction),
                "click_seed": int(rng.integers(2 ** 31))}

    def loss(self, model, batch):
        return interaction_loss(model, batch)

    def evaluate(self, model) -> dict:
        model.eval()
        try:
            return evaluate_modes(model, stacks=3)
        finally:
            model.train()


def interaction_loss(model: Verse, batch: dict):
    """Three rounds of one mode (see the module's text)."""
    image, truth, structure = batch["image"], batch["truth"], batch["structure"]
    rng = np.random.default_rng(batch["click_seed"])
    truths = truth[:, 0].numpy() > 0.5
    features = model.encode(image)
    auto = batch["auto"]
    previous = torch.zeros_like(image)
    clicks = [[] for _ in truths]
    total, metrics = torch.zeros(()), {}
    for round_index, weight in enumerate(ROUND_WEIGHTS):
        if round_index > 0 or not auto:           # a click on the last round's errors
            predicted = previous[:, 0].numpy() > 0.5
            for b, t in enumerate(truths):
                click = next_click(predicted[b], t, rng)
                if click is not None:
                    clicks[b].append(click)
        points, labels = padded(clicks) if any(clicks) else (None, None)
        outputs = model.decode(features, structure if auto else None, points, labels,
                               previous if round_index > 0 else None)
        loss, parts = mask_loss(outputs, truth)
        total = total + weight * loss
        previous = model.full_size(outputs[-1]).detach().sigmoid()
        metrics = parts
    predicted = previous[:, 0].numpy() > 0.5
    dice = [2 * (p & t).sum() / max(p.sum() + t.sum(), 1) for p, t in zip(predicted, truths)]
    return total, {"loss": float(total.detach()), "mode": "1-2-2" if auto else "3",
                   "dice_last_round": float(np.mean(dice)), **metrics}


def evaluate_modes(model, stacks: int = 3, first_seed: int = HELD_OUT_FIRST_SEED,
                   clicks: int = 3) -> dict:
    """Held-out stacks: Mode 1 Dice per structure (over the slices that show it; VerSe only)
    and Mode 3 Dice after `clicks` clicks (mean over slice-structure pairs), on the model's
    grid."""
    size = model.config.image_size
    automatic = model.config.architecture == "verse"
    per_structure = {name: [] for name in STRUCTURE_CLASSES}
    mode3 = []
    with torch.no_grad():
        for seed in range(first_seed, first_seed + stacks):
            images, labels = stack_case(seed, 10, 192, size)
            features = model.encode(images)
            for name, index in STRUCTURE_CLASSES.items():
                truth = (labels == CARDIAC_LABELS[name]).numpy()
                shown = [k for k in range(len(truth)) if truth[k].any()]
                if automatic:
                    structure = torch.full((len(images),), index)
                    logits = model.full_size(model.decode(features, structure)[-1])
                    predicted = logits[:, 0].numpy() > 0
                    per_structure[name] += [_dice(predicted[k], truth[k]) for k in shown]
                k = shown[len(shown) // 2]
                mode3.append(_clicks_only(model, [f[k:k + 1] for f in features], truth[k],
                                          clicks))
    mode1 = {f"mode1_dice_{name}": float(np.mean(d)) for name, d in per_structure.items() if d}
    return {**mode1, f"mode3_dice_at_{clicks}": float(np.mean(mode3)), "stacks": stacks,
            "first_seed": first_seed}


def _clicks_only(model, features, truth, count: int) -> float:
    previous, clicks = torch.zeros(1, 1, *truth.shape), []
    for _ in range(count):
        click = next_click(previous[0, 0].numpy() > 0.5, truth)
        if click is None:
            break
        clicks.append(click)
        logits = model.decode(features, None, *padded([clicks]), previous)[-1]
        previous = model.full_size(logits).sigmoid()
    return _dice(previous[0, 0].numpy() > 0.5, truth)


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (predicted & truth).sum() / max(predicted.sum() + truth.sum(), 1))


def training_task(source, config: dict, seed: int, batch_size: int, rank: int = 0,
                  world: int = 1) -> VerseTask:
    options = train_options(TrainOptions, config, "verse")
    return VerseTask(source, options, config.get("model"), seed, batch_size)
