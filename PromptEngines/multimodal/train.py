"""`ivseg train --engine multimodal`: the paper's three training phases in one run.

    phase 1 (steps < phase_steps[0])   image encoder, prompt encoders, text projection and
                                       HQ decoder on one-defect samples (point + its command),
                                       BCE on the mask (+ the IoU head's MSE, as SAM)
    phase 2 (< phase_steps[1])         the Text Prompt Predictor (CLS token + MLP), everything
                                       else frozen, cross-entropy over the five commands
    phase 3 (the rest)                 the Prompt Sequence Module and the HQ decoder on
                                       sequences: several defects, each step's point at the
                                       centre of the largest remaining error, its command
                                       from the TPP, its mask the model's previous output;
                                       BCE on the last step

The PSM starts as the identity (psm.py), so phases 1 and 2 see each step's point and text
tokens as they are. The paper trains with Adam at 1e-5, batch 1, from SAM's weights; from
scratch the tiny model needs the shared trainer's AdamW at 1e-3 with batches of 8.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.checkpoint import read_checkpoint
from ..errors import IVSegError
from ..prompts import TEXT_COMMANDS
from ..training.tasks import is_number, named_weights, options_record, train_options
from .crops import MASK_LOGIT
from .defects import DEFECT_COMMANDS, DEFECT_KINDS, next_step
from .evaluate import evaluate_corrections
from .samples import cta_pictures, fundus_pictures, one_defect_sample, sequence_sample
from .tiny_model import TinyConfig, TinyMultimodal


@dataclass(frozen=True)
class TrainOptions:
    phase_steps: tuple = (3000, 3600)    # ends of phases 1 and 2 (phase 3 runs to the end)
    sequence_steps: int = 4              # phase 3: up to this many steps, the last trained
    fundus_images: int = 48              # fundus-like training pictures (seeds 0..n-1)
    fundus_size: int = 320
    fundus_realism: tuple = ("clean", "clinical")   # that many pictures of each
    cta_slices: int = 2                  # slices along the vessels per training volume
    fundus_fraction: float = 0.7         # of the samples
    jitter: int = 24                     # pixels the crop's centre moves off the defect
    plain_fraction: float = 0.2          # steps that are plain clicks (no text), phases 1, 3
    tpp_trains: str = "cls"              # phase 2: "cls" (the CLS token and its MLP alone) or
                                         # "decoder" (the whole mask decoder, the encoders
                                         # frozen, as the paper says; its mask kept by the
                                         # mask's BCE beside the commands' cross-entropy)
    tpp_lr_scale: float = 1.0            # phase 2's learning rate over the schedule's
    start: str = ""                      # a multimodal checkpoint (.resume too) whose weights,
                                         # all but the PSM's, start the model: the ablations
                                         # re-run phase 3 from the same earlier weights
    # {"extend": 3.0}: phases 1-2 draw that command's defects three times as often as each
    # other's (empty: every kind equally often, as the first weights were trained)
    command_weights: dict = field(default_factory=dict)
    # Phases 1 and 3: the BCE of the pixels the sample's mask has wrong weighs 1 + this (0:
    # plain BCE). A small branch's 50 pixels are lost among a crop's 65,536 otherwise.
    defect_weight: float = 0.0
    # Phases 1 and 3: the BCE of the right pixels within SURROUND_PX of the sample's wrong
    # ones weighs 1 + this (0: plain): what a step must leave as it is right past a defect's
    # end, the counterweight of `defect_weight` (which alone teaches widening on past it).
    surround_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"phase_steps": list(self.phase_steps),
                               "fundus_realism": list(self.fundus_realism)}

    def phase(self, step: int) -> int:
        return 1 if step < self.phase_steps[0] else 2 if step < self.phase_steps[1] else 3

    def __post_init__(self):
        kind_chances(self.command_weights)              # refused here, in one line
        for name in ("defect_weight", "surround_weight"):
            extra = getattr(self, name)
            if not is_number(extra) or extra < 0:
                raise IVSegError(f"train.{name} must be a number of 0 or more, not {extra!r}")
        if self.tpp_trains not in TPP_TRAINS:
            raise IVSegError(f"train.tpp_trains must be one of {', '.join(TPP_TRAINS)}, not "
                             f"{self.tpp_trains!r}")
        scale = self.tpp_lr_scale
        if not is_number(scale) or scale <= 0:
            raise IVSegError(f"train.tpp_lr_scale must be a number above 0, not {scale!r}")


TPP_TRAINS = ("cls", "decoder")


def kind_chances(command_weights: dict) -> np.ndarray | None:
    """Each defect kind's chance of being drawn, weighted by its command's weight (named as
    the commands are); None when no weight is given (every kind equally often)."""
    by_command = named_weights(command_weights, TEXT_COMMANDS, "command_weights")
    if not by_command:
        return None
    chances = np.array([by_command.get(DEFECT_COMMANDS[kind], 1.0) for kind in DEFECT_KINDS])
    return chances / chances.sum()


def train_only(model, phase: int, tpp_trains: str = "cls") -> None:
    """Freeze all but what the model says this phase trains (its PHASES: per phase, the
    name prefixes trained and those excluded from them; phase 2 with `tpp_trains`
    "decoder": its TPP_DECODER)."""
    included, excluded = (model.TPP_DECODER if phase == 2 and tpp_trains == "decoder"
                          else model.PHASES[phase])
    trained = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(included) and not name.startswith(excluded))
        trained += parameter.requires_grad
    if not trained:
        raise IVSegError(f"phase {phase} would train nothing of {type(model).__name__}")


def mask_loss(logits, iou, truth, weight=None):
    """BCE on the mask (per pixel `weight`, None: all 1), and the IoU head's squared error
    against the mask's real IoU."""
    bce = F.binary_cross_entropy_with_logits(logits, truth, weight=weight)
    with torch.no_grad():
        predicted = logits > 0
        union = (predicted | (truth > 0)).flatten(1).sum(1).clamp(min=1)
        real = (predicted & (truth > 0)).flatten(1).sum(1) / union
    return bce, F.mse_loss(iou, real)


SURROUND_PX = 12       # the band around a sample's defects that surround_weight weighs


def defect_weights(batch, extra: float, surround: float = 0.0):
    """Per-pixel BCE weights: 1, 1 + `extra` where the sample's mask is wrong (its defects),
    1 + `surround` where it is right within SURROUND_PX of a wrong pixel (a square
    neighbourhood); None when both are 0 (plain BCE, as the paper and the first weights)."""
    if not extra and not surround:
        return None
    wrong = (batch["mask"] != batch["truth"]).to(batch["truth"].dtype)
    weights = 1.0 + extra * wrong
    if surround:
        near = F.max_pool2d(wrong, 2 * SURROUND_PX + 1, stride=1, padding=SURROUND_PX)
        weights = weights + surround * (near - wrong)
    return weights


def _one_step(model, batch, features=None):
    if features is None:
        features = model.encode(batch["image"])
    return model.decode(features, batch["point"][:, None], batch["label"][:, None],
                        batch["command"][:, None], _prompt(batch["mask"]))


def _tpp_loss(model, batch, keep_masks: bool):
    """Phase 2: the commands' cross-entropy; with `keep_masks` (the decoder trained too)
    plus the one-step mask loss of phase 1 on the same samples, so masks stay as good."""
    with torch.no_grad():
        features = model.encode(batch["image"])
    logits = model.predict_command(features, batch["point"][:, None], _prompt(batch["mask"]))
    loss = F.cross_entropy(logits, batch["command"])
    parts = {"phase": 2, "tpp_accuracy": float((logits.argmax(1) == batch["command"])
                                               .float().mean())}
    if keep_masks:
        masks, iou = _one_step(model, batch, features)
        bce, iou_error = mask_loss(masks, iou, batch["truth"])
        parts |= {"cross_entropy": float(loss.detach()), "bce": float(bce.detach())}
        loss = loss + bce + iou_error
    return loss, {"loss": float(loss.detach()), **parts}


def _prompt(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, MASK_LOGIT, -MASK_LOGIT)


def _rollout(model, batch, steps: int):
    """Phase 3: `steps - 1` steps run without gradients from each sample's imperfect mask
    (point: centre of the largest error; command: the TPP's, or a plain click labelled by
    the error's sign where `batch["plain"]` says so), then the last one trained. Returns
    the last step's (logits, iou)."""
    features = model.encode(batch["image"])
    masks = batch["mask"].clone()
    truth = batch["truth"] > 0
    count, device = masks.shape[0], masks.device
    points, labels, commands = ([[] for _ in range(count)] for _ in range(3))
    for step in range(steps):
        signs = []
        for i in range(count):
            found = next_step(masks[i, 0].cpu().numpy() > 0, truth[i, 0].cpu().numpy())
            if found is None:            # nothing left to fix: the defect's point again
                point, missing = tuple(batch["point"][i].tolist()), True
            else:
                point, region = found
                missing = bool(truth[i, 0].cpu().numpy()[region].mean() > 0.5)
            points[i].append([float(p) for p in point[-2:]])
            signs.append(int(missing))
        yx = torch.tensor([p[-1:] for p in points], dtype=torch.float32, device=device)
        with torch.no_grad():
            tpp = model.predict_command(features, yx, _prompt(masks)).argmax(1)
        for i in range(count):
            plain = bool(batch["plain"][i, step])
            commands[i].append(-1 if plain else int(tpp[i]))
            labels[i].append(signs[i] if plain else 1)
        sequence = (torch.tensor(points, dtype=torch.float32, device=device),
                    torch.tensor(labels, dtype=torch.long, device=device),
                    torch.tensor(commands, dtype=torch.long, device=device))
        if step == steps - 1:
            return model.decode(features, *sequence, _prompt(masks))
        with torch.no_grad():
            logits, _ = model.decode(features, *sequence, _prompt(masks))
        masks = (logits > 0).to(masks.dtype)


def start_from(model, path: str) -> None:
    """Load every parameter but the Prompt Sequence Module's from the checkpoint at `path`;
    the rest of the model must be the checkpoint's exactly (same config but for the PSM)."""
    checkpoint = read_checkpoint(path, "multimodal")
    ours, theirs = (_settings(config) for config in (model.config, checkpoint["config"]))
    if ours != theirs:
        raise IVSegError(f"{Path(path).name}: its model config {theirs} differs from this "
                         f"run's {ours} beyond the PSM")
    state = {k: v for k, v in checkpoint["model"].items() if not k.startswith("psm.")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("psm.")]
    if missing or result.unexpected_keys:
        raise IVSegError(f"{Path(path).name} does not fit the model: missing {missing}, "
                         f"unexpected {result.unexpected_keys}")


def _settings(config: dict) -> dict:
    """A model config without its PSM, a tiny one with today's defaults filled in (settings
    added since a checkpoint was written are its old behaviour)."""
    if config.get("kind", "tiny") == "tiny":
        try:
            config = TinyConfig.from_dict(config).record()
        except ValueError as error:                 # a setting of newer code
            raise IVSegError(f"a model config this code cannot build: {error}") from None
    return {k: v for k, v in config.items() if k != "psm"}


class MultimodalTask:
    engine = "multimodal"

    def __init__(self, source, options: TrainOptions = TrainOptions(), model: dict | None = None,
                 seed: int = 0, batch_size: int = 8, evaluation_cases: int = 8):
        self.options, self.seed, self.batch_size = options, seed, batch_size
        self.config = dict(model or {})
        self.evaluation_cases = evaluation_cases
        self.kind_chances = kind_chances(options.command_weights)
        self.fundus = [picture for realism in options.fundus_realism for picture in
                       fundus_pictures(range(options.fundus_images), options.fundus_size,
                                       realism)]
        self.cta = []
        for index in range(len(source)):
            case = source[index]
            self.cta += cta_pictures(case.image, case.label, options.cta_slices)
        realism = " and ".join(options.fundus_realism)
        self.data = (f"{len(self.fundus)} fundus-like images ({realism}, seeds "
                     f"0-{options.fundus_images - 1}, {options.fundus_size}²) and {len(self.cta)} "
                     f"CTA slices along the vessels from: {source.describe()}")

    @property
    def epoch_samples(self) -> int:
        return 16 * (len(self.fundus) + len(self.cta))

    def build_model(self):
        model = TinyMultimodal(TinyConfig.from_dict(self.config))
        if self.options.start:
            start_from(model, self.options.start)
        return model

    def model_config(self) -> dict:
        return model_recipe({"model": self.config})

    def checkpoint_extras(self) -> dict:
        return {"train_options": options_record(self.options), "data": self.data}

    def _picture(self, rng):
        use_fundus = not self.cta or rng.random() < self.options.fundus_fraction
        pool = self.fundus if use_fundus else self.cta
        return pool[rng.integers(len(pool))]

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng([self.seed, step, rank])
        phase = self.options.phase(step)
        plain = self.options.plain_fraction if phase == 1 else 0.0
        samples = []
        while len(samples) < self.batch_size:
            picture = self._picture(rng)
            sample = (sequence_sample(picture, rng, 256, self.options.jitter) if phase == 3
                      else one_defect_sample(picture, rng, 256, self.options.jitter, plain,
                                             self.kind_chances))
            if sample is not None:
                samples.append(sample)
        steps = int(rng.integers(1, self.options.sequence_steps + 1))
        stack = lambda key: torch.from_numpy(np.stack([getattr(s, key) for s in samples])
                                             .astype(np.float32))[:, None]
        return {"image": stack("image"), "mask": stack("mask"), "truth": stack("truth"),
                "point": torch.tensor(np.stack([s.point for s in samples]), dtype=torch.float32),
                "command": torch.tensor([s.command for s in samples], dtype=torch.long),
                "label": torch.tensor([s.label for s in samples], dtype=torch.long),
                # phase 3: which steps of each sequence are plain clicks
                "plain": torch.from_numpy(rng.random((len(samples), steps))
                                          < self.options.plain_fraction),
                "phase": phase, "steps": steps}

    def loss(self, model, batch):
        phase = batch["phase"]
        train_only(model, phase, self.options.tpp_trains)
        if phase == 2:
            return _tpp_loss(model, batch, self.options.tpp_trains == "decoder")
        logits, iou = (_one_step(model, batch) if phase == 1
                       else _rollout(model, batch, batch["steps"]))
        bce, iou_error = mask_loss(logits, iou, batch["truth"],
                                   defect_weights(batch, self.options.defect_weight,
                                                  self.options.surround_weight))
        loss = bce + iou_error
        return loss, {"loss": float(loss.detach()), "phase": phase, "bce": float(bce.detach()),
                      "iou_mse": float(iou_error.detach())}

    def lr_scale(self, step: int) -> float:
        return self.options.tpp_lr_scale if self.options.phase(step) == 2 else 1.0

    def evaluate(self, model) -> dict:
        model.eval()
        try:
            return evaluate_corrections(model, cases=self.evaluation_cases)
        finally:
            train_only(model, 1)
            model.train()


def model_recipe(config: dict) -> dict:
    """The model config a config file gives today, as checkpoints record it (no data built)."""
    return TinyConfig.from_dict(dict(config.get("model") or {})).record()


def training_task(source, config: dict, seed: int, batch_size: int, rank: int = 0,
                  world: int = 1) -> MultimodalTask:
    options = train_options(TrainOptions, config, "multimodal")
    return MultimodalTask(source, options, config.get("model"), seed, batch_size)
