"""`ivseg train --engine verse`: VerSe's training on our synthetic short-axis stacks.

A sample is one slice (resized to the model's square exactly as the engine does) and one
structure drawn among those it shows (in automatic batches now and then one it lacks, whose
answer is an empty mask: `absent_fraction`); shifts (ours: the generator centres the heart),
flips, rot90, gamma and brightness as augmentation.
Each batch is one mode, drawn as the reference draws it: either the automatic result and two
correction rounds (Modes 1, 2, 2) or one, two, three clicks alone (Mode 3); each round's click
is the simulated user's (simulated_clicks.py) on the round before, drawn without gradients.
The loss is the rounds' deep-supervision loss, weighted 1, 0.8, 0.8. The image is encoded
once per batch (the reference encodes it again every round: the same features)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.regions import window
from ..data.synthetic.cardiac import CARDIAC_LABELS
from ..errors import IVSegError
from ..evaluation.metrics import dice
from ..training.tasks import named_weights, options_record, tiny_with, train_options
from .config import HELD_OUT_FIRST_SEED, TINY
from .evaluation import evaluate_modes
from .field_of_view import cut_and_padded
from .losses import mask_loss
from .model import Verse, build_model
from .simulated_clicks import next_click, padded
from .stacks import stack_case

ROUND_WEIGHTS = (1.0, 0.8, 0.8)
EVALUATION_STACKS = 10
STRUCTURE_VALUES = tuple(CARDIAC_LABELS.values())     # label values = structure indices


@dataclass(frozen=True)
class TrainOptions:
    cases: int = 400                 # synthetic stacks (seeds 0 ..)
    slices: tuple = (8, 14)          # slices per stack (drawn per case)
    sizes: tuple = (128, 160, 192, 224, 256)   # in-plane pixels (drawn per case)
    auto_fraction: float = 0.5       # batches of Modes 1-2-2 (else Mode 3)
    absent_fraction: float = 0.3     # of a Mode 1-2-2 batch: a structure the slice lacks
    flip: float = 0.3                # per axis, as the reference
    rot90: float = 0.5
    gamma: float = 0.2               # probability of a gamma in 0.6 .. 1.6
    brightness: float = 0.3          # probability of a scale in 0.85 .. 1.15
    shift: float = 0.5               # probability of moving the slice by up to `shift_range`
    shift_range: float = 0.2         # of the side, the uncovered part left at the minimum
    # {"RV": 2.0}: that structure's samples drawn twice as often as the others' (empty: all
    # samples equally often, as the first two stages were trained)
    structure_weights: dict = field(default_factory=dict)
    field_of_view_cut: float = 0.0   # probability of a rectangular field of view (see below)


def _augment(image: np.ndarray, truth: np.ndarray, heart: np.ndarray, rng,
             options: TrainOptions):
    # Cine MRI is often acquired with a rectangular field of view; the engine pads such a
    # slice to its square: the model meets bands of the minimum beside the heart.
    if options.field_of_view_cut and rng.random() < options.field_of_view_cut:
        image, truth = cut_and_padded(image, truth, heart, rng)
    # The generator centres the heart, as an operator plans the field of view; clinical
    # stacks have it off-centre too.
    if rng.random() < options.shift:          # (samples are the model's square)
        reach = options.shift_range * np.array(image.shape)
        rows, cols = (int(round(v)) for v in rng.uniform(-reach, reach))
        image = window(image, (-rows, -cols), len(image))        # zeros: the minimum
        truth = window(truth, (-rows, -cols), len(truth), False)
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
        self.config = tiny_with(TINY, model)
        if options.cases > HELD_OUT_FIRST_SEED:
            raise IVSegError(f"train.cases is at most {HELD_OUT_FIRST_SEED}: stacks from seed "
                             f"{HELD_OUT_FIRST_SEED} up are the held-out ones")
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
        self.draw_chances = _draw_chances(self.samples, options.structure_weights)
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
        return {"train_options": options_record(self.options), "data": self.data}

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng([self.seed, step, rank])
        auto = bool(rng.random() < self.options.auto_fraction)
        images, truths, structures = [], [], []
        if self.draw_chances is None:
            drawn = rng.integers(len(self.samples), size=self.batch_size)
        else:
            drawn = rng.choice(len(self.samples), size=self.batch_size, p=self.draw_chances)
        for index in drawn:
            stack, k, value = self.samples[index]
            slices, labels = self.stacks[stack]
            if auto and rng.random() < self.options.absent_fraction:
                # Asked for a structure this slice does not show (the RV below its apex):
                # the answer is nothing, not the nearest look-alike.
                missing = sorted(set(STRUCTURE_VALUES) - set(np.unique(labels[k].numpy())))
                value = int(rng.choice(missing)) if missing else value
            image, truth = _augment(slices[k, 0].numpy(), (labels[k] == value).numpy(),
                                    (labels[k] > 0).numpy(), rng, self.options)
            images.append(image)
            truths.append(truth)
            structures.append(value)
        as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None]
        return {"image": as_tensor(images), "truth": as_tensor(truths),
                "structure": torch.tensor(structures), "auto": auto,
                "click_seed": int(rng.integers(2 ** 31))}

    def loss(self, model, batch):
        return interaction_loss(model, batch)

    def evaluate(self, model) -> dict:
        model.eval()
        try:
            return evaluate_modes(model, stacks=EVALUATION_STACKS)
        finally:
            model.train()


def _draw_chances(samples: list, weights: dict) -> np.ndarray | None:
    """Each sample's chance of being drawn, its structure weighted by `weights` (by name);
    None when no weight is given (samples drawn uniformly)."""
    by_name = named_weights(weights, list(CARDIAC_LABELS), "structure_weights")
    if not by_name:
        return None
    by_value = {CARDIAC_LABELS[name]: weight for name, weight in by_name.items()}
    chances = np.array([by_value.get(value, 1.0) for _, _, value in samples])
    return chances / chances.sum()


def interaction_loss(model: Verse, batch: dict):
    """Three rounds of one mode (see the module's text)."""
    image, truth, structure = batch["image"], batch["truth"], batch["structure"]
    rng = np.random.default_rng(batch["click_seed"])
    truths = truth[:, 0].cpu().numpy() > 0.5
    features = model.encode(image)
    auto = batch["auto"]
    previous = torch.zeros_like(image)
    clicks = [[] for _ in truths]
    total, metrics = torch.zeros((), device=image.device), {}
    for round_index, weight in enumerate(ROUND_WEIGHTS):
        if round_index > 0 or not auto:           # a click on the last round's errors
            predicted = previous[:, 0].cpu().numpy() > 0.5
            for b, t in enumerate(truths):
                click = next_click(predicted[b], t, rng)
                if click is not None:
                    clicks[b].append(click)
        points, labels = padded(clicks, image.device) if any(clicks) else (None, None)
        outputs = model.decode(features, structure.to(image.device) if auto else None,
                               points, labels,
                               previous if round_index > 0 else None)
        loss, parts = mask_loss(outputs, truth)
        total = total + weight * loss
        previous = model.full_size(outputs[-1]).detach().sigmoid()
        metrics = parts
    predicted = previous[:, 0].cpu().numpy() > 0.5
    return total, {"loss": float(total.detach()), "mode": "1-2-2" if auto else "3",
                   "dice_last_round": float(np.mean([dice(p, t) for p, t in zip(predicted,
                                                                                 truths)])),
                   **metrics}


def model_recipe(config: dict) -> dict:
    """The model config a config file gives today, as checkpoints record it (no data built)."""
    return tiny_with(TINY, config.get("model")).to_json()


def training_task(source, config: dict, seed: int, batch_size: int, rank: int = 0,
                  world: int = 1) -> VerseTask:
    options = train_options(TrainOptions, config, "verse")
    return VerseTask(source, options, config.get("model"), seed, batch_size)
