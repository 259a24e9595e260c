"""The training loop shared by every engine (`ivseg train`).

An engine supplies a task: how to build its model, a batch for a given step, a loss, and a
held-out evaluation. The loop owns the rest: AdamW with warm-up and cosine decay,
checkpoints that carry config, step, seed, metrics and a sha256 of the weights, exact resume
(batches depend only on (seed, step, rank), and the optimiser state is saved), a progress
bar and a log file, and torchrun (gloo on CPU, NCCL on GPU; only rank 0 writes). Gradients are averaged across
processes with an all-reduce after backward, as DistributedDataParallel does, because some
losses (the tracer's) call the model several times per step, which DDP's wrapper forbids.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..backbones.checkpoint import CHECKPOINT_FORMAT, file_sha256
from ..errors import CheckpointError, IVSegError
from .model_card import write_card
from .prefetch import batch_source
from .tasks import json_values


class TrainingTask(Protocol):
    engine: str
    epoch_samples: int          # samples in one pass over the data (for --epochs)

    def build_model(self) -> torch.nn.Module: ...
    def model_config(self) -> dict: ...
    def batch(self, step: int, rank: int, world: int) -> dict: ...
    def loss(self, model, batch) -> tuple[torch.Tensor, dict]: ...
    def evaluate(self, model) -> dict: ...
    def checkpoint_extras(self) -> dict: ...
    # Optional: `lr_scale(step) -> float` multiplies the schedule's learning rate at that
    # step (a phase that trains a fresh head faster than the phase before).


@dataclass
class TrainSettings:
    out: str
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    seed: int = 0
    device: str = "cpu"
    resume: str | None = None
    init: str | None = None            # weights of the same engine and config to start from
    stop_after: int | None = None      # stop at this step, keeping the schedule of `steps`
    log_every: int = 20
    checkpoint_every: int = 500
    evaluate: bool = True
    command: str = ""
    workers: int = 0                   # processes drawing batches ahead (prefetch.py)


def weights_sha256(state_dict: dict) -> str:
    """sha256 over the tensors in key order (dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def schedule(warmup: int, total: int):
    """Linear warm-up, then cosine decay to 0 (the paper's schedule, in steps)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes, as torchrun sets them (0, 1 alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self, device: str):
        self.rank, self.world = rank_and_world()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            use_cuda = device.startswith("cuda")
            if use_cuda:
                self.device = f"cuda:{self.local_rank}"
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group("nccl" if use_cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, model) -> None:
        """Every process starts from rank 0's weights."""
        if self.world > 1:
            for tensor in model.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)

    def average_gradients(self, parameters) -> None:
        """Every trained parameter takes part, with zeros where this rank's batch gave it
        no gradient (e.g. an embedding used only in some batches): all ranks must issue the
        same sequence of collectives."""
        if self.world > 1:
            for parameter in parameters:
                if not parameter.requires_grad:     # frozen for this step (every rank alike)
                    continue
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad /= self.world

    def close(self):
        if self.world > 1:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def resume_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".resume")


def train(task: TrainingTask, settings: TrainSettings, progress: bool = True) -> dict:
    if settings.stop_after is not None and settings.stop_after < 1:
        raise IVSegError(f"--stop-after must be a step >= 1, not {settings.stop_after}")
    end = min(settings.steps, settings.stop_after or settings.steps)
    # Workers fork before CUDA or the process group start, and end with training, however
    # it ends.
    draw = batch_source(task, settings.workers, *rank_and_world(), end)
    try:
        return _train(task, settings, progress, Distributed(settings.device), draw, end)
    finally:
        draw.close()


def _train(task, settings: TrainSettings, progress: bool, dist, draw, end: int) -> dict:
    torch.manual_seed(settings.seed)
    model = task.build_model().to(dist.device)
    # What the task froze (a pretrained encoder) stays out of the optimiser, weight decay
    # included.
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    factor = schedule(settings.warmup_steps, settings.steps)
    scale = getattr(task, "lr_scale", None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, factor if scale is None else (lambda step: factor(step) * scale(step)))
    start, earlier_wall = 0, 0.0
    if settings.init and not settings.resume:      # (a resumed run holds its own weights)
        _initialise(settings.init, model, task)
    # Hashed once: every checkpoint names the file the run started from as it was then.
    started_from = {"initial_weights": initial_weights(settings.init)} if settings.init else {}
    if settings.resume:
        start, earlier_wall = _restore(settings.resume, model, optimiser, scheduler, task.engine,
                                       dist.device)
        if settings.stop_after is not None and end <= start:
            raise IVSegError(f"--stop-after {settings.stop_after} is not past step {start}, "
                             f"where {Path(settings.resume).name} stopped")
    dist.broadcast(model)
    log = _open_log(settings, start) if dist.main else None
    bar = None
    if dist.main and progress:
        from tqdm import tqdm
        bar = tqdm(total=settings.steps, initial=start, desc=f"train {task.engine}",
                   dynamic_ncols=True)
    history, started, samples = [], time.perf_counter(), 0
    last = {}
    for step in range(start, end):
        batch = {k: v.to(dist.device) if torch.is_tensor(v) else v for k, v in draw(step).items()}
        loss, parts = task.loss(model, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(trained)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimiser.step()
        scheduler.step()
        samples += settings.batch_size * dist.world
        last = {"step": step + 1, **parts}
        history.append(parts["loss"])
        if dist.main:
            rate = samples / max(time.perf_counter() - started, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.4f}", samples_s=f"{rate:.1f}")
            if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
                log.write(json.dumps({**last, "lr": scheduler.get_last_lr()[0],
                                      "samples_per_s": rate}) + "\n")
                log.flush()
            if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                _save_resume(settings, task, model, optimiser, scheduler, step + 1,
                             earlier_wall + time.perf_counter() - started, dist.device,
                             started_from)
    if bar is not None:
        bar.close()
    result = {"steps": settings.steps, "last": last, "losses": history}
    wall = earlier_wall + time.perf_counter() - started     # over every part of the run
    if dist.main and end < settings.steps:          # paused: only the resume checkpoint
        _save_resume(settings, task, model, optimiser, scheduler, end, wall, dist.device,
                     started_from)
        log.close()
    elif dist.main:
        metrics = task.evaluate(model) if settings.evaluate else {}
        _save_resume(settings, task, model, optimiser, scheduler, settings.steps, wall,
                     dist.device, started_from)
        meta = _save_final(settings, task, model, metrics, wall, started_from)
        result.update(meta)
        log.write(json.dumps({"final": meta}) + "\n")
        log.close()
    dist.close()
    return result


def _checkpoint(settings, task, model, step, started_from: dict) -> dict:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "engine": task.engine, "config": task.model_config(),
            "model": state, "step": step, "seed": settings.seed,
            "weights_sha256": weights_sha256(state), **started_from, **task.checkpoint_extras()}


def initial_weights(path) -> dict:
    """What a fine-tuning run started from, as its checkpoints and card name it."""
    return {"file": Path(path).name, "sha256": file_sha256(path)}


def _initialise(path, model, task) -> None:
    """Fine-tuning (`--init`): the model starts from another run's weights of the same
    engine and model config, loaded strictly; the optimiser and schedule start afresh."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--init weights not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("engine") != task.engine or "model" not in checkpoint:
        raise CheckpointError(f"{path.name} is not a {task.engine} weights file")
    if json_values(checkpoint.get("config")) != json_values(task.model_config()):
        raise CheckpointError(f"{path.name} was trained with another model config than this "
                              "run's: fine-tuning starts from the same architecture")
    model.load_state_dict(checkpoint["model"], strict=True)


def _save_resume(settings, task, model, optimiser, scheduler, step, wall, device,
                 started_from: dict):
    checkpoint = _checkpoint(settings, task, model, step, started_from)
    # The random state too: dropout draws from it, and a resumed run must go on exactly as
    # the uninterrupted one would.
    checkpoint.update(optimizer=optimiser.state_dict(), scheduler=scheduler.state_dict(),
                      settings=asdict(settings), rng=torch.get_rng_state(),
                      wall_seconds=round(wall, 1))
    if str(device).startswith("cuda"):
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state(torch.device(device))
    _atomic_save(checkpoint, resume_path(settings.out))


def _save_final(settings, task, model, metrics, wall, started_from: dict) -> dict:
    checkpoint = _checkpoint(settings, task, model, settings.steps, started_from)
    meta = {"metrics": metrics, "wall_seconds": round(wall, 1), "hardware": hardware(),
            "command": settings.command, "torch": str(torch.__version__)}
    checkpoint.update(meta)
    _atomic_save(checkpoint, settings.out)
    write_card(settings.out)
    return {**meta, "weights_sha256": checkpoint["weights_sha256"]}


def _atomic_save(obj, path):
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    temporary.replace(path)


def _restore(path, model, optimiser, scheduler, engine, device) -> tuple[int, float]:
    """Load a resume checkpoint: (its step, the wall seconds of the run so far)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("engine") != engine or "optimizer" not in checkpoint:
        raise CheckpointError(f"{path.name} is not a resumable {engine} checkpoint")
    model.load_state_dict(checkpoint["model"], strict=True)
    optimiser.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if "rng" in checkpoint:
        torch.set_rng_state(checkpoint["rng"])
    else:
        warnings.warn(f"{path.name} keeps no random state (an older checkpoint): what draws "
                      "from it (dropout) goes on differently from an uninterrupted run")
    if "cuda_rng" in checkpoint and str(device).startswith("cuda"):
        torch.cuda.set_rng_state(checkpoint["cuda_rng"], torch.device(device))
    return int(checkpoint["step"]), float(checkpoint.get("wall_seconds", 0.0))


def _open_log(settings: TrainSettings, start: int):
    """A fresh run starts its own log (not after an older run's); a resumed run continues
    it from its checkpoint's step, dropping what a run stopped later than that had logged."""
    path = Path(settings.out).with_suffix(".log")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not settings.resume:
        return open(path, "w")
    kept = [line for line in (path.read_text().splitlines() if path.is_file() else [])
            if _logged_step(line) <= start]
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    temporary.replace(path)
    return open(path, "a")


def _logged_step(line: str) -> float:
    """The step a log line reports; infinity for anything else (the final record, a line
    a killed run left half-written)."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return math.inf
    step = entry.get("step") if isinstance(entry, dict) else None
    return step if isinstance(step, int) else math.inf
