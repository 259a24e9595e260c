"""Stand-ins for official checkpoints (a randomly initialised model saved in the official key
layout) and a short fine-tuning run from one, shared by the paper-backbone tests."""
import torch

from PromptEngines.data.datasets import SyntheticVessels
from PromptEngines.tracer3d.train import Tracer3DTask, TrainOptions
from PromptEngines.training.trainer import TrainSettings, train


def save_random(tmp_path_factory, build, file_name: str):
    """`build()` from torch seed 0, its state dict saved as `file_name`: (path, module)."""
    torch.manual_seed(0)
    module = build()
    path = tmp_path_factory.mktemp("official") / file_name
    torch.save(module.state_dict(), path)
    return path, module


def with_renamed_key(path, old: str, new: str, out):
    """A copy of the state dict at `path` with one key renamed: a file with wrong keys."""
    state = torch.load(path, weights_only=True)
    state[new] = state.pop(old)
    torch.save(state, out)
    return out


def fine_tune(model_config: dict, crop: int, jitter: float, out, batch_size: int = 1):
    """Two training steps from the official weights `model_config` names: the task, and the
    parts of the model (see `_part`) the steps changed."""
    task = Tracer3DTask(SyntheticVessels(1), TrainOptions(crop=crop, jitter=jitter),
                        model=model_config, batch_size=batch_size)
    before = task.build_model().state_dict()
    train(task, TrainSettings(out=str(out), steps=2, batch_size=batch_size, lr=1e-3,
                              warmup_steps=1, evaluate=False), progress=False)
    after = torch.load(out, weights_only=False)["model"]
    assert after.keys() == before.keys()
    return task, {_part(key) for key in before if not torch.equal(before[key], after[key])}


def _part(key: str) -> str:
    """offset_head.mlp.1.weight -> offset_head; sam.mask_decoder.x -> sam.mask_decoder."""
    head, *rest = key.split(".")
    return head if head == "offset_head" else f"{head}.{rest[0]}"
